"""Charts of pyharness results (matplotlib, an optional extra).

From bench JSON (`pyharness bench --json`): per-site latency histograms
and CDFs (RFC, upstream, batch), the scaling curve (per-site time and its
floor by number of secondaries), the batch curve, and each protocol
figure's ratio to its floor.  From run reports (`pyharness run --json`):
the latency CDFs and summaries of sites, acks and breakpoint handlers.
From a history (pyharness.history): each figure's series with its change
points and segment medians.

Each drawing function returns [(name, title, matplotlib Figure)]; `save`
writes them as files (`pyharness plot`), pyharness/viz/html.py inlines
them as SVG (`pyharness report`).

    pyharness plot b.json [more.json ...] [--out plots/] [--format svg]
    pip install 'pyharness[plot]'      # matplotlib is an optional extra
"""
import os
import re

from ..errors import UnsupportedError
from ..report import as_dict, finite


MISSING = ("matplotlib is not installed; install the optional extra with "
           "pip install 'pyharness[plot]' (or pip install matplotlib)")


def matplotlib_or_none():
    """pyplot with the Agg backend, or None when matplotlib is absent."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _t(text):
    """Text from a result (a figure name, a host, a tag) as a label: a '$'
    in it must not start TeX.  Matplotlib's own log-axis labels do use TeX,
    so parsing stays on and our text is escaped instead."""
    return str(text).replace("$", r"\$")


def figures(data):
    """A bench document's figures that are dicts with a numeric median."""
    return {str(n): f for n, f in as_dict(data.get("figures")).items()
            if isinstance(f, dict) and finite(as_dict(f.get("summary")).get("median")) is not None}


def need_matplotlib():
    plt = matplotlib_or_none()
    if plt is None:
        raise UnsupportedError(MISSING)
    return plt


def save(plt, fig, out, name):
    path = os.path.join(out, name)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _made(fig, name, title):
    fig.tight_layout()
    return (name, title, fig)


def _latency(plt, figs, title, name):
    """Histogram and CDF of the per-site samples of some figures."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    for label, f in figs.items():
        xs = sorted(x / 1000 for x in f["raw_samples"] if x > 0)
        if not xs:
            continue
        lo, hi = xs[0], max(xs[-1], xs[0] * 1.01)
        bins = [lo * (hi / lo) ** (i / 60) for i in range(61)]   # even on the log axis
        ax1.hist(xs, bins=bins, histtype="step", label=_t(label))
        ax2.plot(xs, [i / len(xs) for i in range(1, len(xs) + 1)], label=_t(label))
    ax1.set(xlabel="per-site time (us)", ylabel="sites", xscale="log", title=f"{title}: histogram")
    ax1.legend(fontsize=7)
    ax2.set(xlabel="per-site time (us)", ylabel="fraction of sites", xscale="log",
            title=f"{title}: CDF")
    ax2.legend(fontsize=7)
    return _made(fig, name, f"{title}: per-site latency")


def bench_plots(plt, data, stem=""):
    """The charts of one bench result."""
    figs, made = figures(data), []
    pre = f"{stem}-" if stem else ""
    for kind, title in (("rfc", "RFC protocol"), ("upstream", "upstream (membarrier)"),
                        ("batch", "batches")):
        sel = {n.split("/", 1)[-1]: f for n, f in figs.items()
               if f.get("kind") == kind and isinstance(f.get("raw_samples"), list)
               and all(finite(x) is not None for x in f["raw_samples"]) and f["raw_samples"]}
        if kind in ("rfc", "upstream"):   # one line per method: the fewest secondaries
            sel = {n: f for n, f in sel.items() if n.endswith("/secondaries=1")} or sel
        if sel:
            made.append(_latency(plt, sel, title, f"{pre}latency-{kind}"))

    curves = {}   # (protocol, method) -> [(secondaries, median us, floor us)]
    for name, f in figs.items():
        m = re.match(r"(rfc|upstream)/(\w+/\w+)/secondaries=(\d+)$", name)
        if m:
            curves.setdefault((m.group(1), m.group(2)), []).append(
                (int(m.group(3)), f["summary"]["median"] / 1000, (finite(f.get("floor_ns")) or 0) / 1000))
    if curves and len({p[0] for pts in curves.values() for p in pts}) > 1:
        # (one secondary only, as on 2 CPUs, is no curve: the figures table has it)
        fig, ax = plt.subplots(figsize=(8, 5.5))
        methods = sorted({method for _, method in curves})
        for (proto, method), pts in sorted(curves.items()):
            pts.sort()
            xs = [p[0] for p in pts]
            color = f"C{methods.index(method) % 10}"    # a colour per poke/sync method
            ax.plot(xs, [p[1] for p in pts], marker="o" if proto == "rfc" else "s",
                    linestyle="-" if proto == "rfc" else "--", color=color,
                    label=_t(f"{method} ({'RFC acks' if proto == 'rfc' else 'upstream membarrier'})"))
            ax.plot(xs, [p[2] for p in pts], linestyle=":", color=color, linewidth=1)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set(xlabel="secondaries", ylabel="per-site time (us); dotted: floor", yscale="log",
               title="scaling with secondaries: RFC acks (solid), upstream membarrier (dashed)")
        ax.legend(fontsize=7)
        made.append(_made(fig, f"{pre}scaling", "scaling with secondaries, with floors"))

    batch = sorted((int(k.rsplit("=", 1)[1]), v["summary"]["median"], finite(v.get("floor_ns")) or 0)
                   for k, v in figs.items()
                   if v.get("kind") == "batch" and re.search(r"=\d+$", k))
    if batch:
        fig, ax = plt.subplots(figsize=(7, 5))
        ax.plot([b[0] for b in batch], [b[1] / 1000 for b in batch], marker="o", label="measured")
        ax.plot([b[0] for b in batch], [b[2] / 1000 for b in batch], linestyle=":", label="floor")
        ax.set(xlabel="sites per batch", ylabel="per-site time (us)", xscale="log", yscale="log",
               title="batch amortization")
        ax.legend()
        made.append(_made(fig, f"{pre}batch", "batch curve, with its floor"))

    ratios = [(n, f["ratio_to_floor"]) for n, f in figs.items() if finite(f.get("ratio_to_floor"))]
    if ratios:
        fig, ax = plt.subplots(figsize=(8, 0.3 * len(ratios) + 1.5))
        ax.barh([_t(n) for n, _ in ratios], [r for _, r in ratios])
        ax.axvline(1.0, color="grey", linestyle=":")
        targets = data.get("targets") if isinstance(data.get("targets"), list) else []
        bound = next((finite(t.get("bound")) for t in targets
                      if isinstance(t, dict) and "floor" in str(t.get("target"))), None)
        if bound:
            ax.axvline(bound, color="C3", linestyle="--", label=f"target {bound:g}x")
            ax.legend()
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=7)
        ax.set(xlabel="measured / floor (median over runs)", title="distance to the floor")
        made.append(_made(fig, f"{pre}floor", "each protocol figure's ratio to its floor"))
    return made


def _dist_rows(data):
    d = as_dict(data.get("distributions"))
    rows = [("site", d.get("site_ns")), ("batch", d.get("batch_ns")),
            ("bp handler", d.get("bp_handler_ns"))]
    rows += [(f"ack {k}", v) for k, v in as_dict(d.get("ack_wait_ns")).items()]
    return [(n, v) for n, v in rows
            if isinstance(v, dict) and v.get("count") and
            all(finite(v.get(q)) is not None for q in ("min", "p50", "p99", "max"))]


def run_plots(plt, data, stem=""):
    """A run report's latencies: CDFs (from the report's quantiles) and the
    min / p50 / p99 / max of each distribution."""
    rows = _dist_rows(data)
    if not rows:
        return []
    pre = f"{stem}-" if stem else ""
    made = []
    cdfs = [(n, v["cdf"]) for n, v in rows if isinstance(v.get("cdf"), list) and v["cdf"] and all(
        isinstance(x, list) and len(x) == 2 and finite(x[0]) is not None and finite(x[1]) is not None
        for x in v["cdf"])]
    if cdfs:
        fig, ax = plt.subplots(figsize=(8, 5))
        for name, cdf in cdfs:
            xs = [max(x, 1) / 1000 for _, x in cdf]
            ax.plot(xs, [q for q, _ in cdf], marker=".", label=_t(name))
        ax.set(xscale="log", xlabel="us", ylabel="fraction", ylim=(0, 1.01),
               title=_t(f"{data.get('scenario')}: latency CDFs"))
        ax.legend(fontsize=7)
        made.append(_made(fig, f"{pre}cdf", "latency CDFs"))
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.5))
    for i, (name, v) in enumerate(rows):
        ax.plot([max(v["min"], 1), v["max"]], [i, i], color="lightgrey", linewidth=6)
        ax.plot([v["p50"]], [i], "o", color="C0", label="p50" if i == 0 else None)
        ax.plot([v["p99"]], [i], "s", color="C3", label="p99" if i == 0 else None)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([_t(f"{n} ({v['count']})") for n, v in rows])
    ax.set(xscale="log", xlabel="ns (bar: min to max)",
           title=_t(f"{data.get('scenario')}: {data.get('verdict')} ({data.get('status')})"))
    ax.legend()
    made.append(_made(fig, f"{pre}distributions", "latency summaries (min, p50, p99, max)"))
    return made


# A history chart of more points than this draws its data rasterized (an
# image inside the SVG; axes and text stay text): 400 points of error bars
# were 375 KB of SVG each.
RASTER_ABOVE = 80


def history_plot(plt, series, by="time"):
    """One figure's series, as the interactive chart draws it (viz/interactive.py):
    on the normalized basis the cost relative to the floor above the raw
    time, each point with its spread over its runs (p10-p90), each
    segment's median over that segment, a dashed line at each change point
    (red slower, green faster), a y-range at least 20% of the median wide,
    one unit per panel, the legend below the axes."""
    from .chartdata import MAX_TICKS, drawn, segments, short_label, time_unit, y_range
    series = drawn(series)
    pts = series["points"]
    n = series["n_points"]
    xs = [p["x"] for p in pts]
    div, unit = time_unit([p.get("raw_median") for p in pts])
    raw = [(p.get("raw_median") or 0) / div for p in pts]
    rsp = [p.get("raw_spread") or [None, None] for p in pts]
    panels = [("raw", raw, [(a or r * div) / div for (a, _), r in zip(rsp, raw)],
               [(b or r * div) / div for (_, b), r in zip(rsp, raw)], unit, "raw time")]
    if series["basis"] == "normalized":
        val = [p["value"] for p in pts]
        sp = [p.get("spread") or [None, None] for p in pts]
        panels.insert(0, ("ratio", val, [a or v for (a, _), v in zip(sp, val)],
                          [b or v for (_, b), v in zip(sp, val)], "x floor", "cost / floor"))
    cps = series["change_points"]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.4 * len(panels) + 1.2), sharex=True,
                             squeeze=False)
    handles = {}
    for ax, (name, ys, lo, hi, yunit, what) in zip(axes[:, 0], panels):
        h = ax.errorbar(xs, ys, yerr=[[y - a for y, a in zip(ys, lo)], [b - y for y, b in zip(ys, hi)]],
                        marker="o", markersize=3, linewidth=0.8, color="C0", ecolor="C0",
                        elinewidth=0.8, capsize=2)
        if len(xs) > RASTER_ABOVE:      # many points: the data as an image, the text as text
            for art in [h.lines[0], *h.lines[1], *h.lines[2]]:
                art.set_rasterized(True)
        handles["median of the runs, p10-p90"] = h
        for a, b, med in segments(ys, cps, xs, n):
            handles["segment median"] = ax.hlines(med, a - 0.4, b + 0.4, colors="C1", linewidth=2.5)
        for c in cps:
            color = "C3" if c["direction"] == "slower" else "C2"
            handles["change point (red slower, green faster)"] = ax.axvline(
                c["index"] - 0.5, color=color, linestyle="--")
            if name == panels[0][0]:
                ax.annotate(f"{c['magnitude']:+.0%}", (c["index"] - 0.45, 0.02),
                            xycoords=("data", "axes fraction"), color=color, fontsize=7)
        ax.set_ylim(*y_range(lo, hi, ys))
        ax.set_ylabel(_t(yunit))
        ax.set_title(_t(f"{series['figure']} on {series['machine']['hostname']}: {what} ({yunit})"),
                     fontsize=9)
    step = max(1, -(-len(xs) // MAX_TICKS))
    axes[-1, 0].set_xticks(xs[::step])
    axes[-1, 0].set_xticklabels([_t(short_label(p["x"], p, by)) for p in pts][::step],
                                rotation=20, ha="right", fontsize=6)
    axes[-1, 0].set_xlim(-0.6, n - 0.4)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=len(handles),
               fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return ("history-" + re.sub(r"[^\w.=-]+", "_", series["figure"]), f"{series['figure']}: history",
            fig)


def _load(path):
    from .. import documents
    return documents.load(path, ("bench", "run", "litmus"))
