"""`pyharness report`: one self-contained HTML file that tells the story.

    pyharness report --store [URL] [FILE.json ...] --out report.html [--by build]

In the order a reader needs it:
1. a summary: what the history found (every change point, regressions
   first, with the figure, machine, where, before -> after, magnitude and
   significance), the verdict of each run, each bench in a line;
2. a table of contents: every section, chart and table has an anchor;
3. the history: its table, then each figure's chart (cost relative to the
   floor above the raw time, each point's spread over its runs, segment
   medians over their segments, change points where they are);
4. each bench: its curves, histograms and CDFs, and the figures' table;
5. each run: verdict, replay, health and the kernel log's status, retest
   and localization, the diagnosis and its findings, violations grouped
   by invariant with counts and the first examples, latencies.

Self-contained: the style is inline, the history charts are interactive
(Bokeh, its script inlined once from the installed package: hover, zoom,
pan) with the static chart (matplotlib SVG, text as text) inside
<noscript> for readers without scripts; every other chart is static SVG.
Nothing is fetched.  Without matplotlib or Bokeh the page says what is
missing and keeps its tables.
"""
import datetime as dt
import html
import io
import json
import os
import re

from .. import __version__
from ..report import as_dict, finite
from . import interactive, plots
from .chartdata import DRAW_LIMIT

SIZE_BUDGET = 5 * 1024 * 1024      # the report of a store of benches and a few runs
MAX_CHARTS = 16                    # history charts drawn at most (regressions first)

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em;color:#222;max-width:1200px}
h1{font-size:1.5em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b00020;font-weight:bold} .ok{color:#1b7f3b;font-weight:bold} .dim{color:#777}
.good{color:#1b7f3b}
.note{background:#fff7d6;border:1px solid #e6c200;padding:.6em;margin:1em 0}
figure.chart{margin:1em 0} figure.chart svg{max-width:100%;height:auto}
figcaption{font-size:.85em;color:#555} code{font-size:.9em}
nav#contents{font-size:.85em;columns:2} nav#contents ul{margin:.2em 0}
section.summary{background:#f7f9fc;border:1px solid #d5deea;padding:.5em 1em}
"""


def _e(v):
    return html.escape("" if v is None else str(v))


def slug(*parts):
    return re.sub(r"[^A-Za-z0-9]+", "-", "-".join(str(p) for p in parts)).strip("-").lower()


def _svg(plt, fig):
    buf = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none"}):     # text as <text>: the browser can find it
        fig.savefig(buf, format="svg", metadata={"Creator": None, "Date": None, "Format": None,
                                                 "Type": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]          # drop the XML prolog and DOCTYPE


class Page:
    """The parts of the page, the table of contents and the interactive
    charts waiting for their one embed."""

    def __init__(self, plt, bokeh):
        self.plt, self.bokeh = plt, bokeh
        self.max_charts = MAX_CHARTS
        self.toc = []                  # (level, anchor, text)
        self.models = []               # (placeholder, bokeh model)

    def heading(self, level, anchor, text):
        self.toc.append((level, anchor, text))
        return f'<h{level} id="{anchor}">{_e(text)}</h{level}>'

    def chart(self, made, kind, anchor, extra="", model=None, key=""):
        name, title, fig = made
        self.toc.append((4, anchor, title))
        static = _svg(self.plt, fig)
        if model is not None:
            ph = f"@@bokeh-{len(self.models)}@@"
            self.models.append((ph, model))
            body = (f'<div class="interactive" data-chart="{_e(name)}">{ph}</div>'
                    f"<noscript>{static}</noscript>")
        else:
            body = static
        return (f'<figure class="chart" id="{anchor}" data-chart="{_e(name)}" data-kind="{kind}"'
                f'{extra}>{body}<figcaption>{_e(title)}{". " + _e(key) if key else ""}'
                f'</figcaption></figure>')

    def contents(self):
        out = ['<nav id="contents"><h2>Contents</h2><ul>']
        for level, anchor, text in self.toc:
            pad = "&nbsp;" * 3 * max(0, level - 2)
            out.append(f'<li>{pad}<a href="#{anchor}">{_e(text)}</a></li>')
        out.append("</ul></nav>")
        return "".join(out)


def _ns(v):
    if v is None:
        return "-"
    return f"{v / 1000:.2f} us" if v >= 999.5 else f"{v:.0f} ns"


def _table(headers, rows, num=(), anchor=None):
    ident = f' id="{anchor}"' if anchor else ""
    out = [f"<table{ident}><tr>" + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(
            f'<td class="num">{_e(c)}</td>' if i in num else f"<td>{c}</td>"
            for i, c in enumerate(r)) + "</tr>")
    out.append("</table>")
    return "".join(out)


# -- the summary ----------------------------------------------------------------------

def changes(hist):
    """Every change point of the history as a row, regressions of gating
    figures first (largest first), then improvements, then host phases."""
    from ..history.formats import _val
    rows = []
    for s in hist["series"] if hist else []:
        y = s.get("young")
        if s["regressed"] and y and not any(c.get("index") == len(s["points"]) - 1
                                            for c in s["change_points"]):
            # a young history's gate (`compare`'s): the newest result itself
            new = s["points"][-1]
            cp = {"at": new["label"], "newest": True, "magnitude": y["ratio"] - 1,
                  "raw_ratio": y["raw_ratio"], "p": y["p"], "direction": "slower"}
            rows.append((0, -abs(cp["magnitude"]), {
                "series": s, "cp": cp, "slower": True, "gates": True,
                "before": _val(s, s["points"][-2]["value"]), "after": _val(s, new["value"]),
                "gate": "REGRESSED"}))
        for c in s["change_points"]:
            slower = c.get("direction") == "slower"
            rank = (0 if s["gates"] and slower else 1 if s["gates"] else 2)
            rows.append((rank, -abs(c.get("magnitude") or 0), {
                "series": s, "cp": c, "slower": slower, "gates": s["gates"],
                "before": _val(s, c.get("before_median")), "after": _val(s, c.get("after_median")),
                "gate": c.get("gate") or ("REGRESSED" if s["regressed"] and c is s["change_points"][-1]
                                          else "not gating" if not s["gates"] else "ok")}))
    return [r for _, _, r in sorted(rows, key=lambda t: (t[0], t[1]))]


def unjudged_moves(hist):
    """Gating series whose newest point moved beyond the threshold from the
    median of its segment before it, where no change point says so: what
    the data shows although the gate cannot tell it from noise yet."""
    from ..stats import summary
    out = []
    for s in hist["series"] if hist else []:
        pts = s["points"]
        if not s["gates"] or len(pts) < 2 or (s["change_points"] and
                                             s["change_points"][-1]["index"] == len(pts) - 1):
            continue
        start = s["change_points"][-1]["index"] if s["change_points"] else 0
        before = [p["value"] for p in pts[start:-1]]
        if not before:
            continue
        med = summary(before)["median"]
        ratio = pts[-1]["value"] / med if med else None
        if ratio and (ratio > 1 + hist["threshold"] or ratio < 1 / (1 + hist["threshold"])):
            out.append((s, med, pts[-1]["value"], ratio))
    return sorted(out, key=lambda t: -abs(t[3] - 1))


def summary_section(page, hist, docs):
    parts = [page.heading(2, "summary", "Summary")]
    if hist is not None:
        found = changes(hist)
        reg = [c for c in found if c["slower"] and c["gates"]]
        imp = [c for c in found if not c["slower"] and c["gates"]]
        parts.append(f"<p>History: {hist['results']} result(s), {len(hist['series'])} series; "
                     f'<span class="{"bad" if reg else "ok"}">{len(reg)} regression(s)</span>, '
                     f"{len(imp)} improvement(s)"
                     + (f", {len(found) - len(reg) - len(imp)} host phase(s) in figures that do "
                        "not gate" if len(found) > len(reg) + len(imp) else "") + ".</p>")
        rows = []
        for c in found:
            s, cp = c["series"], c["cp"]
            what = ('<span class="bad">slower</span>' if c["slower"] else
                    '<span class="good">faster</span>')
            raw = f"{cp['raw_ratio'] - 1:+.1%}" if finite(cp.get("raw_ratio")) else "-"
            rows.append([what, f'<a href="#{slug("h", s["figure"], s.get("series_key"))}">'
                               f"<code>{_e(s['figure'])}</code></a>",
                         _e(s["machine"]["hostname"]), _e(cp.get("at")) +
                         (" (newest point)" if cp.get("newest") else ""),
                         f"{_e(c['before'])} → {_e(c['after'])}",
                         f"{cp.get('magnitude', 0):+.1%}", raw, f"{cp.get('p', 1):.1e}",
                         f'<span class="bad">{c["gate"]}</span>' if c["gate"] == "REGRESSED"
                         else _e(c["gate"])])
        if rows:
            parts.append(_table(["change", "figure", "machine", "where", "before → after",
                                 "magnitude", "raw time", "p", "gate"], rows, num=(5, 6, 7),
                                anchor="summary-changes"))
        moves = unjudged_moves(hist)
        if moves:
            from ..history.formats import _val
            parts.append("<p>The newest point moved beyond the threshold, but the history "
                         "cannot tell it from noise yet (no verdict; more results will):</p>")
            parts.append(_table(["figure", "machine", "before → newest", "move", "points"], [
                [f'<a href="#{slug("h", s["figure"], s.get("series_key"))}"><code>'
                 f"{_e(s['figure'])}</code></a>", _e(s["machine"]["hostname"]),
                 f"{_e(_val(s, a))} → {_e(_val(s, b))}", f"{r - 1:+.1%}", len(s["points"])]
                for s, a, b, r in moves], num=(3, 4), anchor="summary-moves"))
        from ..history.series import young_line
        line = young_line(hist)
        if line:
            parts.append(f'<p class="dim">{_e(line)}</p>')
    runs = [(p, d) for p, d in docs if d.get("schema", "").startswith("pyharness.run/")]
    if runs:
        rows = []
        for path, d in runs:
            v = str(d.get("verdict"))
            counts = as_dict(d.get("violation_counts"))
            rows.append([f'<a href="#{slug("run", path)}">{_e(os.path.basename(path))}</a>',
                         f"<code>{_e(d.get('scenario'))}</code>",
                         f'<span class="{"ok" if v == "pass" else "bad"}">{_e(v.upper())}</span>',
                         _e(d.get("status")), sum(n for n in counts.values() if finite(n)),
                         _e(", ".join(sorted(counts)[:4]) or "-")])
        parts.append("<p>Runs:</p>" + _table(["run", "scenario", "verdict", "status",
                                              "violations", "invariants"], rows, num=(4,),
                                             anchor="summary-runs"))
    benches = [(p, d) for p, d in docs if d.get("schema", "").startswith("pyharness.bench/")]
    if benches:
        rows = []
        for path, d in benches:
            ts = d.get("targets") if isinstance(d.get("targets"), list) else []
            met = sum(1 for t in ts if isinstance(t, dict) and t.get("pass"))
            rows.append([f'<a href="#{slug("bench", path)}">{_e(os.path.basename(path))}</a>',
                         _e(as_dict(d.get("machine")).get("hostname")),
                         f"{met} of {len(ts)}",
                         f"<b>{_e(d['inject_delay_ns'])} ns</b>" if d.get("inject_delay_ns") else "-",
                         len(d.get("warnings") or [])])
        parts.append("<p>Benches:</p>" + _table(["bench", "machine", "speed targets met",
                                                 "injected delay", "warnings"], rows,
                                                num=(4,), anchor="summary-benches"))
    return '<section class="summary">' + "".join(parts) + "</section>"


# -- the history ----------------------------------------------------------------------

def history_section(page, hist, by="time"):
    from ..history.formats import _cp_text, _val, _verdict
    parts = [page.heading(2, "history", "History"),
             f"<p>{hist['results']} results from <code>{_e(hist['store'])}</code>, "
             f"ordered by {_e(hist['by'])}; a change is beyond {hist['threshold']:.0%} with "
             f"p &lt; {hist['alpha']} between results and within them "
             f"(basis {_e(hist['basis'])}). {hist['change_points']} change point(s)"
             + (f"; {hist['host_phases']} host phase(s) in primitives, not judged"
                if hist.get("host_phases") else "") + ".</p>"]
    rows = []
    moved = {id(s): r for s, _, _, r in unjudged_moves(hist)}
    ordered = sorted(hist["series"], key=lambda s: (not s["regressed"], id(s) not in moved,
                                                   not s["gates"], not s["change_points"],
                                                   s["figure"]))
    for s in ordered:
        v = _verdict(s)
        cls = "bad" if v == "REGRESSED" else ("ok" if v == "ok" else "")
        if id(s) in moved and v == "ok":    # what the data shows, whatever the gate says
            v, cls = f"newest {moved[id(s)] - 1:+.1%}: not significant yet", ""
        cps = "<br>".join(_e(_cp_text(s, c)) for c in s["change_points"]) or "none"
        rows.append([f'<a href="#{slug("h", s["figure"], s.get("series_key"))}"><code>'
                     f"{_e(s['figure'])}</code></a>", _e(s["machine"]["hostname"]), _e(s["basis"]),
                     len(s["points"]), _e(_val(s, s["points"][-1]["value"])), cps,
                     f'<span class="{cls}">{_e(v)}</span>'])
    parts.append(page.heading(3, "history-table", "Every figure's history"))
    parts.append(_table(["figure", "machine", "basis", "points", "latest", "change points",
                         "verdict"], rows, num=(3,)))
    # Charts for the figures that changed (a change point, a regression, a
    # newest point that moved) or that the user named (--figure); every
    # other figure is its one row above, whatever the store holds.
    asked = bool((hist.get("filters") or {}).get("figure"))
    changed = [s for s in ordered if asked or s["regressed"] or s["change_points"] or id(s) in moved]
    charted = changed[:page.max_charts]
    if page.plt:
        parts.append(page.heading(3, "history-charts", "History charts"))
        if len(charted) < len(ordered):
            parts.append(f'<p class="dim">Charts of {len(charted)} figure(s)'
                         + (f" (the first {len(charted)} of the {len(changed)} that changed, "
                            "regressions first: the page keeps to its size budget)"
                            if len(charted) < len(changed) else " that changed")
                         + f"; the other {len(ordered) - len(charted)} are a row each above (name "
                         "one with <code>--figure</code> to draw it). A chart draws at most "
                         f"{DRAW_LIMIT} points of a series (the newest, every change point, and "
                         "each stretch's highest and lowest); every point is judged.</p>")
        for s in charted:     # regressed first, then judged with change points, then the rest
            anchor = slug("h", s["figure"], s.get("series_key"))
            model = interactive.history_model(s, anchor, by) if page.bokeh else None
            parts.append(page.chart(plots.history_plot(page.plt, s, by), "history", anchor,
                                    f' data-change-points="{len(s["change_points"])}"'
                                    f' data-figure="{_e(s["figure"])}"', model,
                                    key=interactive.LEGEND if model is not None else ""))
    return "".join(parts)


# -- a bench --------------------------------------------------------------------------

def bench_section(page, path, data):
    from ..cpus import describe_cpus
    m = as_dict(data.get("machine"))
    b = as_dict(as_dict(data.get("evidence")).get("build"))
    anchor = slug("bench", path)
    cpus = data.get("cpus") if isinstance(data.get("cpus"), list) else []
    parts = [page.heading(2, anchor, f"Bench: {os.path.basename(path)}"),
             f"<p>{_e(m.get('hostname'))}: {_e(m.get('cpu_model'))}, kernel {_e(m.get('kernel'))}, "
             f"CPUs {_e(describe_cpus(cpus) if cpus else '-')}, "
             f"{'quick' if data.get('quick') else 'full'}, "
             f"started {_e(data.get('started'))}, build {_e((b.get('git_commit') or '?')[:12])}"
             + (" (dirty)" if b.get("git_dirty") else "")
             + (f", <b>inject {_e(data['inject_delay_ns'])} ns</b>" if data.get("inject_delay_ns")
                else "")
             + "</p>"]
    if data.get("warnings"):
        ws = data["warnings"] if isinstance(data["warnings"], list) else [data["warnings"]]
        parts.append('<div class="note">' + "<br>".join(_e(w) for w in ws) + "</div>")
    if page.plt:
        for made in plots.bench_plots(page.plt, data):
            parts.append(page.chart(made, "bench", slug(anchor, made[0])))
    rows = []
    for name, f in plots.figures(data).items():
        rows.append([f"<code>{_e(name)}</code>", _e(f.get("kind")),
                     _ns(finite((f.get("summary") or {}).get("median"))),
                     _ns(finite(f.get("floor_ns"))),
                     "-" if finite(f.get("ratio_to_floor")) is None
                     else f"{f['ratio_to_floor']:.3f}",
                     len(f.get("samples") or [])])
    parts.append(page.heading(3, slug(anchor, "figures"), "Figures"))
    parts.append(_table(["figure", "kind", "median", "floor", "ratio to floor", "runs"], rows,
                        num=(2, 3, 4, 5)))
    return "".join(parts)


# -- a run ----------------------------------------------------------------------------

EXAMPLES = 3        # violations shown in full per invariant


def _health(data):
    h = as_dict(data.get("health"))
    logs = [as_dict(h.get("kernel_log"))] if "kernel_log" in h else \
        [as_dict(as_dict(x).get("kernel_log")) for x in h.get("segments") or [] if x]
    out = []
    for kl in logs:
        if not kl:
            continue
        if not kl.get("checked"):
            out.append(f'<span class="bad">kernel log: NOT CHECKED</span> ({_e(kl.get("reason"))})')
        else:
            ms = kl.get("matches") or []
            out.append(f"kernel log: checked, {kl.get('records_read', 0)} record(s) read, "
                       + (f'<span class="bad">{len(ms)} error line(s)</span>: ' + "; ".join(
                           _e(as_dict(x).get("line")) for x in ms[:5]) if ms else "clean"))
    irq = as_dict(as_dict(h.get("interrupts")).get("deltas"))
    moved = [f"{_e(k)} +{sum(v for v in as_dict(d.get('per_cpu')).values() if finite(v))}"
             for k, d in irq.items() if isinstance(d, dict) and
             sum(v for v in as_dict(d.get("per_cpu")).values() if finite(v))]
    if irq:
        out.append("interrupts during the run: " + (", ".join(moved) if moved else
                                                     "none of the machine-health lines moved"))
    return out


def run_section(page, path, data):
    verdict = str(data.get("verdict"))
    cls = "ok" if verdict == "pass" else "bad"
    anchor = slug("run", path)
    parts = [page.heading(2, anchor, f"Run: {os.path.basename(path)}"),
             f'<p>scenario <code>{_e(data.get("scenario"))}</code>: '
             f'<span class="{cls}">{_e(verdict.upper())}</span> ({_e(data.get("status"))}) '
             f"in {finite(data.get('elapsed_s')) or 0:.1f} s; sites patched "
             f"{_e(as_dict(data.get('totals')).get('sites_patched'))}</p>"]
    if data.get("replay"):
        parts.append(f"<p>replay: <code>{_e(data['replay'])}</code></p>")
    health = _health(data)
    if health:
        parts.append(page.heading(3, slug(anchor, "health"), "Health"))
        parts.append("<ul>" + "".join(f"<li>{x}</li>" for x in health) + "</ul>")
    ov = data.get("overloaded")
    if isinstance(ov, dict):
        parts.append(f'<p class="note">overloaded: {_e(ov.get("note"))} '
                     f"({finite(ov.get('extra_s')) or 0:.1f} s past its limit)</p>")
    rt = as_dict(data.get("retest"))
    if rt:
        r, loc = as_dict(rt.get("reproduction")), as_dict(rt.get("localization"))
        parts.append(page.heading(3, slug(anchor, "retest"), "Retest and localization"))
        times = ", ".join(f"{t:.2f}" for t in (r.get("times_to_failure_s") or [])[:8]
                          if finite(t) is not None)
        parts.append(f"<p>reproduction: {_e(r.get('rate'))} (times to failure, s: {_e(times)})"
                     f"<br>localization: <b>{_e(loc.get('verdict'))}</b></p>")
        runs = [x for x in loc.get("runs") or [] if isinstance(x, dict)]
        if runs:
            parts.append(_table(["move", "CPUs", "result"], [
                [_e(x.get("move")), _e(x.get("cpus")),
                 (f'<span class="bad">FAIL {_e(",".join(x.get("invariants") or []))}</span>'
                  if x.get("failed") else "pass")] for x in runs]))
    dg = as_dict(data.get("diagnosis"))
    if dg:
        parts.append(page.heading(3, slug(anchor, "diagnosis"), "Diagnosis"))
        for f in dg.get("findings") or []:
            f = as_dict(f)
            parts.append(f"<p><b>finding {_e(f.get('id'))}</b>: {_e(f.get('evidence'))}<br>"
                         f"<span class=\"dim\">from the RFC's step: {_e(f.get('rfc_step'))}</span></p>")
        pub = as_dict(dg.get("published"))
        if pub:
            parts.append(f"<p>at the end: {_e(pub.get('state'))} of seq {_e(pub.get('seq'))} "
                         "published" + (f"; ack map {_e(dg.get('map'))} ({_e(dg.get('map_weight'))}"
                                        f" of num_acks {_e(dg.get('num_acks'))})"
                                        if dg.get("map") is not None else "") + "</p>")
        ths = [as_dict(w) for w in dg.get("threads") or []][:16]
        if ths:
            parts.append(_table(["thread", "role", "cpu", "where", "last saw"], [
                [_e(w.get("thread")), _e(w.get("role")), _e(w.get("cpu")), _e(w.get("where")),
                 _e(f"{as_dict(w.get('last_seen')).get('state')} of seq "
                    f"{as_dict(w.get('last_seen')).get('seq')}")] for w in ths]))
    counts = as_dict(data.get("violation_counts"))
    invs = as_dict(data.get("invariants"))
    if counts:
        parts.append(page.heading(3, slug(anchor, "violations"), "Violations, by invariant"))
        vs = [v for v in data.get("violations") or [] if isinstance(v, dict)]
        rows = []
        for k, n in sorted(counts.items(), key=lambda kv: -(finite(kv[1]) or 0)):
            ex = [v for v in vs if v.get("invariant") == k][:EXAMPLES]
            rows.append([f"<code>{_e(k)}</code>", _e(n),
                         _e(as_dict(invs.get(k)).get("description")),
                         "<br>".join(_e(f"{v.get('detail')} [thread {v.get('thread')} cpu "
                                        f"{v.get('cpu')} site {v.get('site')}]") for v in ex)])
        parts.append(_table(["invariant", "count", "description", f"first {EXAMPLES} examples"],
                            rows, num=(1,)))
    stuck = data.get("stuck_threads") or []
    if stuck:
        parts.append("<p>stuck threads: " + "<br>".join(_e(x) for x in stuck[:10])
                     + (f"<br>... and {len(stuck) - 10} more" if len(stuck) > 10 else "") + "</p>")
    crash = data.get("crash")
    if crash:
        parts.append(page.heading(3, slug(anchor, "crash"), "Crash"))
        parts.append(f"<pre>{_e(json.dumps(crash, indent=1)[:4000])}</pre>")
    if page.plt:
        for made in plots.run_plots(page.plt, data):
            parts.append(page.chart(made, "run", slug(anchor, made[0])))
    rows = [[_e(n), v["count"], _ns(v["min"]), _ns(v["p50"]), _ns(v["p99"]), _ns(v["max"])]
            for n, v in plots._dist_rows(data)]
    if rows:
        parts.append(page.heading(3, slug(anchor, "latencies"), "Latencies"))
        parts.append(_table(["latency", "count", "min", "p50", "p99", "max"], rows,
                            num=(1, 2, 3, 4, 5)))
    return "".join(parts)


# -- the page -------------------------------------------------------------------------

def litmus_section(page, path, data):
    """A litmus document: its controls, and each verdict with the histogram
    of what the raced executions came to (bars on a log scale; forbidden
    outcomes marked)."""
    import math
    anchor = slug("litmus", path)
    ctl = as_dict(data.get("controls"))
    parts = [page.heading(2, anchor, f"Litmus: {os.path.basename(path)}"),
             f"<p>controls: negative {_e(ctl.get('negative'))}, positive {_e(ctl.get('positive'))}"
             + (f" ({_e(ctl['why'])})" if ctl.get("why") else "") + "</p>"]
    for v in data.get("verdicts") or []:
        if not isinstance(v, dict):
            continue
        va = slug(anchor, v.get("test"), v.get("placement"))
        if "observation" not in v:
            parts.append(f'<p id="{va}"><b>{_e(v.get("test"))}</b> on {_e(v.get("placement"))}: '
                         f"not available: {_e(v.get('unavailable'))}</p>")
            continue
        obs = str(v.get("observation"))
        cls = "ok" if not v.get("validated") or v.get("control") == "negative" else "bad"
        parts.append(page.heading(3, va, f"{v.get('test')} on {v.get('placement')}"))
        parts.append(f'<p>Observation <span class="{cls}">{_e(obs)}</span> '
                     f"{_e(v.get('positive'))} {_e(v.get('negative'))}; {_e(v.get('raced'))} raced "
                     f"executions; {finite(v.get('trials_per_s')) or 0:.0f} trials/s against a floor of "
                     f"{finite(v.get('floor_trials_per_s')) or 0:.0f}; Hash={_e(v.get('hash'))}</p>")
        hist = dict(as_dict(v.get("histogram")))
        for o, n in as_dict(v.get("outside")).items():
            hist[f"{o} (after the write)"] = n
        top = max([x for x in hist.values() if isinstance(x, int)] or [1])
        rows = []
        marks = as_dict(v.get("marks"))
        for o, n in hist.items():
            base = o.split(" ")[0]
            forb = as_dict(marks.get(base)).get("protocol") == "forbidden"
            width = 100 * math.log10(1 + n) / math.log10(1 + top) if top else 0
            bar = (f'<span class="bar{" bad" if forb else ""}" style="display:inline-block;'
                   f'width:{width:.0f}%;background:{"#c33" if forb else "#48a"};height:0.8em"></span>')
            rows.append([("*&gt; " if forb else "") + _e(o), str(n), bar])
        parts.append(_table(["outcome", "count", "log scale"], rows, num=(1,)))
        if v.get("replay"):
            parts.append(f"<p>replay: <code>{_e(v['replay'])}</code></p>")
    return "".join(parts)


def fleet_section(page, fleet):
    """The fleet view of a store: by CPU model, microcode and kernel, which
    boxes, how many results, how many failed, since when; the builds."""
    parts = [page.heading(2, "fleet", "Fleet")]
    rows = []
    for r in fleet.get("rows") or []:
        fails = r.get("failed_steps") or 0
        rows.append([_e(r["cpu_model"]), _e(r["microcode"]), _e(r["kernel"]), _e(", ".join(r["boxes"])),
                     _e(", ".join(r["failed_boxes"]) or "-"),
                     f'<span class="{"bad" if fails else "ok"}">{fails}/{r["steps"]}</span>',
                     _e(r.get("first_failure") or "-"), _e(r.get("last_failure") or "-")])
    parts.append(_table(["CPU model", "microcode", "kernel", "boxes", "failed boxes", "failed results",
                         "first failure", "last failure"], rows, anchor="fleet-table"))
    if len(fleet.get("builds") or {}) > 1:
        parts.append("<p>boxes ran different builds: " + "; ".join(
            f"<code>{_e(b[:12])}</code>: {_e(', '.join(h))}" for b, h in fleet["builds"].items()) + "</p>")
    return "".join(parts)


def build_report(docs, hist=None, plt=None, bokeh=None, by="time", fleet=None):
    """The HTML text.  docs: [(path, dict)]; hist: a history dict or None;
    bokeh: None means "if installed" (False: static charts only); fleet: the
    store's merge (fleet.merge.merge_store) or None."""
    if bokeh is None:
        bokeh = interactive.available()
    bokeh = bool(bokeh and plt)
    # Within the size budget whatever the store holds: as many history
    # charts as fit (regressions first), the rest a table row each.
    text = None
    for max_charts in (MAX_CHARTS, MAX_CHARTS // 2, MAX_CHARTS // 4, 0):
        text = _build(docs, hist, plt, bokeh, by, fleet, max_charts)
        if len(text.encode()) <= SIZE_BUDGET or hist is None:
            break
    return text


def _build(docs, hist, plt, bokeh, by, fleet, max_charts):
    page = Page(plt, bokeh)
    page.max_charts = max_charts
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [summary_section(page, hist, docs)]
    if fleet is not None:
        body.append(fleet_section(page, fleet))
    if hist is not None:
        body.append(history_section(page, hist, by))
    for path, data in docs:
        if data["schema"].startswith("pyharness.bench/"):
            body.append(bench_section(page, path, data))
        elif data["schema"].startswith("pyharness.litmus/"):
            body.append(litmus_section(page, path, data))
        else:
            body.append(run_section(page, path, data))
    text = "".join(body)
    script = ""
    if page.models:
        emb, divs = interactive.embed([m for _, m in page.models])
        for (ph, _), div in zip(page.models, divs):
            text = text.replace(ph, div, 1)
        script = interactive.script_tag() + emb
    notes = []
    if plt is None:
        notes.append(f'<div class="note" id="no-charts">Charts are missing: {_e(plots.MISSING)}, '
                     "then run <code>pyharness report</code> again.</div>")
    elif not bokeh:
        notes.append('<div class="note" id="no-interactive">The charts are static: install Bokeh '
                     "(pip install 'pyharness[plot]') for hover, zoom and pan.</div>")
    head = ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>pyharness report</title>"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<style>{CSS}</style>{script if page.models else ''}</head><body>"
            f"<h1>pyharness report</h1><p>generated {now} by pyharness {_e(__version__)}"
            f" from {len(docs)} file(s)" + (" and a results store" if hist else "") + "</p>")
    return head + "".join(notes) + _first_summary(text, page.contents()) + "</body></html>\n"


def _first_summary(text, contents):
    """The summary first, the contents right after it, then the detail."""
    end = text.index("</section>") + len("</section>")
    return text[:end] + contents + text[end:]
