"""Interactive history charts for `pyharness report` (Bokeh).

    if interactive.available():
        head = interactive.script_tag()                 # Bokeh's own script, inlined once
        script, divs = interactive.embed([interactive.history_model(s, "h-rfc-alias")])

Bokeh rather than code of ours: a maintained charting library whose
BokehJS ships inside the Python package, so the report inlines it (about
1.3 MB, the core component only) and fetches nothing.  Each chart: the
cost relative to the floor and the raw time in two panels sharing the x
axis (zoom or pan one, both follow), every point's spread over its runs
(p10-p90), each segment's median drawn over that segment only, the change
points where they are, a hover that names the point's value, spread,
commit and tags; the key is the figure's caption, so nothing covers data.
The static matplotlib chart stays in the page for readers without scripts.
"""
from .chartdata import MAX_TICKS, segments, short_label, time_unit, y_range


def available():
    try:
        import bokeh.plotting  # noqa: F401 - present, and importable
    except ImportError:
        return False
    return True


def script_tag():
    """BokehJS (the core component), inline: the page fetches nothing."""
    from bokeh.resources import Resources
    js = "".join(Resources(mode="inline", components=["bokeh"]).js_raw)
    return "<script>" + js.replace("</script", "<\\/script") + "</script>"


def embed(models):
    """(one <script> with every chart's data, [one <div> per model])."""
    from bokeh.embed import components
    script, divs = components(models)
    return script, list(divs)


def _fmt(v, unit):
    if v is None:
        return "-"
    return f"{v:.3f}x" if unit == "x floor" else f"{v:.3g} {unit}"


LEGEND = ("blue: each result's median over its runs, with its p10-p90; orange: the median of "
          "each segment between changes; dashed: a change point (red slower, green faster)")


def history_model(series, anchor, by="time", width=1050):
    """The Bokeh layout of one figure's history: ratio and raw panels
    (normalized basis) or the raw panel alone."""
    from bokeh.layouts import column
    from bokeh.models import (ColumnDataSource, FixedTicker, HoverTool, Label, Range1d, Span,
                              Whisker)
    from bokeh.plotting import figure

    from .chartdata import drawn
    series = drawn(series)
    pts = series["points"]
    n = series["n_points"]
    xs = [p["x"] for p in pts]
    div, unit = time_unit([p.get("raw_median") for p in pts])
    raw = [p.get("raw_median") / div if p.get("raw_median") else None for p in pts]
    raw_lo = [(p.get("raw_spread") or [None, None])[0] for p in pts]
    raw_hi = [(p.get("raw_spread") or [None, None])[1] for p in pts]
    raw_lo = [v / div if v else r for v, r in zip(raw_lo, raw)]
    raw_hi = [v / div if v else r for v, r in zip(raw_hi, raw)]
    labels = {p["x"]: short_label(p["x"], p, by) for p in pts}
    data = dict(
        x=xs, raw=raw, raw_lo=raw_lo, raw_hi=raw_hi, label=[p.get("label") or "" for p in pts],
        commit=[((p.get("commit") or "")[:12] + ("+dirty" if p.get("dirty") else "")) or "-"
                for p in pts],
        tags=[", ".join(f"{k}={v}" for k, v in sorted((p.get("tags") or {}).items())) or "-"
              for p in pts],
        started=[p.get("started") or "-" for p in pts],
        rtext=[_fmt(r, unit) + f" (p10-p90 {_fmt(a, unit)} to {_fmt(b, unit)})"
               for r, a, b in zip(raw, raw_lo, raw_hi)])
    normalized = series.get("basis") == "normalized"
    if normalized:
        val = [p["value"] for p in pts]
        lo = [(p.get("spread") or [None, None])[0] or v for p, v in zip(pts, val)]
        hi = [(p.get("spread") or [None, None])[1] or v for p, v in zip(pts, val)]
        data.update(val=val, lo=lo, hi=hi,
                    vtext=[_fmt(v, "x floor") + f" (p10-p90 {_fmt(a, 'x floor')} to "
                           f"{_fmt(b, 'x floor')})" for v, a, b in zip(val, lo, hi)])
    src = ColumnDataSource(data)
    cps = series.get("change_points") or []
    tools = "xpan,xwheel_zoom,box_zoom,reset"
    panels = []
    host = (series.get("machine") or {}).get("hostname") or "?"
    specs = ([("ratio", "val", "lo", "hi", "x floor", "cost / floor")] if normalized else []) + \
        [("raw", "raw", "raw_lo", "raw_hi", unit, "raw time")]
    x_range = Range1d(-0.6, n - 0.4, bounds=(-1, n))
    for k, (name, y, ylo, yhi, yunit, what) in enumerate(specs):
        title = f"{series['figure']} on {host}: {what} ({yunit})"
        p = figure(width=width, height=250, x_range=x_range, tools=tools, toolbar_location="right",
                   title=title, name=f"{anchor}-{name}", output_backend="svg")
        p.yaxis.axis_label = yunit
        lo_v, hi_v = y_range(data[ylo], data[yhi], data[y])
        p.y_range = Range1d(lo_v, hi_v)
        w = Whisker(source=src, base="x", lower=ylo, upper=yhi, line_color="#1f77b4",
                    line_alpha=0.6)
        w.upper_head.size = w.lower_head.size = 6
        p.add_layout(w)
        p.line("x", y, source=src, line_width=1, color="#1f77b4")
        dots = p.scatter("x", y, source=src, size=7, color="#1f77b4", name=f"{anchor}-{name}-points")
        segs = segments(data[y], cps, xs, n)
        if segs:
            p.segment(x0=[a - 0.4 for a, _, _ in segs], x1=[b + 0.4 for _, b, _ in segs],
                      y0=[m for _, _, m in segs], y1=[m for _, _, m in segs],
                      line_width=3, color="#ff7f0e", alpha=0.8)
        for c in cps:
            color = "#d62728" if c.get("direction") == "slower" else "#2ca02c"
            p.add_layout(Span(location=c["index"] - 0.5, dimension="height", line_color=color,
                              line_dash="dashed", line_width=2))
            if k == 0:
                p.add_layout(Label(x=c["index"] - 0.45, y=4, y_units="screen",
                                   text=f"{c.get('magnitude', 0):+.0%}", text_color=color,
                                   text_font_size="9pt"))
        tips = [("point", "@label")] + ([("value", "@vtext")] if name == "ratio" else []) + [
            ("raw time", "@rtext"), ("commit", "@commit"), ("tags", "@tags"),
            ("started", "@started")]
        p.add_tools(HoverTool(renderers=[dots], tooltips=tips))
        step = max(1, -(-len(xs) // MAX_TICKS))
        p.xaxis.ticker = FixedTicker(ticks=xs[::step])
        p.xaxis.major_label_overrides = {i: labels[i] for i in xs}
        p.xaxis.major_label_orientation = 0.35
        p.xaxis.visible = k == len(specs) - 1
        # The key is the figure's caption (LEGEND), under the chart: nothing covers data.
        panels.append(p)
    return column(*panels, name=anchor)
