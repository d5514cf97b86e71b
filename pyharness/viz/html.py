"""`pyharness report`: one self-contained HTML file.

    pyharness report --store [URL] [FILE.json ...] --out report.html

What it holds:
- from the results store: every judged figure's history with its change
  points and segment medians (charts), and the history table;
- per bench result: the scaling and batch curves with their floors, the
  distance of each protocol figure to its floor, per-site latency
  histograms and CDFs, and the figures' table;
- per run report: the verdict, the violations (by invariant, then the
  first ones in full), the invariants, and the latency CDFs.

Self-contained: charts are inline SVG (matplotlib, glyphs as paths), the
style is inline, there is no script and nothing is fetched, so the file
opens from a mail attachment or an air-gapped box.  Without matplotlib
the tables are still there, and the page says how to get the charts.
"""
import datetime as dt
import html
import io
import json
import os

from .. import __version__
from ..errors import UsageError
from ..report import as_dict, finite
from . import plots

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em;color:#222;max-width:1200px}
h1{font-size:1.5em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b00020;font-weight:bold} .ok{color:#1b7f3b;font-weight:bold}
.note{background:#fff7d6;border:1px solid #e6c200;padding:.6em;margin:1em 0}
figure.chart{margin:1em 0} figure.chart svg{max-width:100%;height:auto}
figcaption{font-size:.85em;color:#555} code{font-size:.9em}
"""


def _e(v):
    return html.escape("" if v is None else str(v))


def _svg(plt, fig):
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Creator": None, "Date": None, "Format": None,
                                             "Type": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]          # drop the XML prolog and DOCTYPE


def _chart(plt, made, kind, extra=""):
    name, title, fig = made
    return (f'<figure class="chart" data-chart="{_e(name)}" data-kind="{kind}"{extra}>'
            f'{_svg(plt, fig)}<figcaption>{_e(title)}</figcaption></figure>')


def _ns(v):
    if v is None:
        return "-"
    return f"{v / 1000:.2f} us" if v >= 999.5 else f"{v:.0f} ns"


def _table(headers, rows, num=()):
    out = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(
            f'<td class="num">{_e(c)}</td>' if i in num else f"<td>{c}</td>"
            for i, c in enumerate(r)) + "</tr>")
    out.append("</table>")
    return "".join(out)


def history_section(plt, hist):
    from ..history.formats import _cp_text, _val, _verdict
    parts = [f"<h2>History</h2><p>{hist['results']} results from <code>{_e(hist['store'])}</code>, "
             f"ordered by {_e(hist['by'])}; a change is beyond {hist['threshold']:.0%} with "
             f"p &lt; {hist['alpha']} between results and within them "
             f"(basis {_e(hist['basis'])}). {hist['change_points']} change point(s)"
             + (f"; {hist['host_phases']} host phase(s) in primitives, not judged"
                if hist.get("host_phases") else "") + ".</p>"]
    rows = []
    for s in hist["series"]:
        v = _verdict(s)
        cls = "bad" if v == "REGRESSED" else ("ok" if v == "ok" else "")
        cps = "<br>".join(_e(_cp_text(s, c)) for c in s["change_points"]) or "none"
        rows.append([f"<code>{_e(s['figure'])}</code>", _e(s["machine"]["hostname"]), _e(s["basis"]),
                     len(s["points"]), _e(_val(s, s["points"][-1]["value"])), cps,
                     f'<span class="{cls}">{_e(v)}</span>'])
    parts.append(_table(["figure", "machine", "basis", "points", "latest", "change points",
                         "verdict"], rows, num=(3,)))
    if plt:
        # Judged series first, those with change points first of all.
        for s in sorted(hist["series"], key=lambda s: (not s["gates"], not s["change_points"])):
            parts.append(_chart(plt, plots.history_plot(plt, s), "history",
                                f' data-change-points="{len(s["change_points"])}"'))
    return "".join(parts)


def bench_section(plt, path, data):
    m = data.get("machine") or {}
    b = (data.get("evidence") or {}).get("build") or {}
    parts = [f"<h2>Bench: {_e(os.path.basename(path))}</h2>"
             f"<p>{_e(m.get('hostname'))}: {_e(m.get('cpu_model'))}, kernel {_e(m.get('kernel'))}, "
             f"CPUs {_e(data.get('cpus'))}, {'quick' if data.get('quick') else 'full'}, "
             f"started {_e(data.get('started'))}, build {_e((b.get('git_commit') or '?')[:12])}"
             + (" (dirty)" if b.get("git_dirty") else "")
             + (f", <b>inject {_e(data['inject_delay_ns'])} ns</b>" if data.get("inject_delay_ns")
                else "")
             + "</p>"]
    if data.get("warnings"):
        ws = data["warnings"] if isinstance(data["warnings"], list) else [data["warnings"]]
        parts.append('<div class="note">' + "<br>".join(
            _e(w.get("text", w) if isinstance(w, dict) else w) for w in ws) + "</div>")
    if plt:
        parts += [_chart(plt, made, "bench") for made in plots.bench_plots(plt, data)]
    rows = []
    for name, f in plots.figures(data).items():
        rows.append([f"<code>{_e(name)}</code>", _e(f.get("kind")),
                     _ns(finite((f.get("summary") or {}).get("median"))),
                     _ns(finite(f.get("floor_ns"))),
                     "-" if finite(f.get("ratio_to_floor")) is None
                     else f"{f['ratio_to_floor']:.3f}",
                     len(f.get("samples") or []) if isinstance(f.get("samples"), list) else 0])
    parts.append(_table(["figure", "kind", "median", "floor", "ratio to floor", "runs"], rows,
                        num=(2, 3, 4, 5)))
    return "".join(parts)


def run_section(plt, path, data):
    verdict = data.get("verdict")
    cls = "ok" if verdict == "pass" else "bad"
    parts = [f"<h2>Run: {_e(os.path.basename(path))}</h2>"
             f'<p>scenario <code>{_e(data.get("scenario"))}</code>: '
             f'<span class="{cls}">{_e(str(verdict).upper())}</span> ({_e(data.get("status"))}) '
             f"in {finite(data.get('elapsed_s')) or 0:.1f} s; sites patched "
             f"{_e(as_dict(data.get('totals')).get('sites_patched'))}</p>"]
    if data.get("replay"):
        parts.append(f"<p>replay: <code>{_e(data['replay'])}</code></p>")
    counts = as_dict(data.get("violation_counts"))
    invs = as_dict(data.get("invariants"))
    if counts:
        parts.append("<h3>Violations</h3>" + _table(
            ["invariant", "count", "description"],
            [[f"<code>{_e(k)}</code>", _e(n), _e(as_dict(invs.get(k)).get("description"))]
             for k, n in sorted(counts.items(), key=lambda kv: -(finite(kv[1]) or 0))],
            num=(1,)))
        vs = data.get("violations") if isinstance(data.get("violations"), list) else []
        rows = [[f"<code>{_e(v.get('invariant'))}</code>", _e(v.get("role")), _e(v.get("cpu")),
                 _e(v.get("site")), _e(v.get("state")), _e(v.get("detail"))]
                for v in vs[:50] if isinstance(v, dict)]
        parts.append(_table(["invariant", "role", "cpu", "site", "state", "detail"], rows))
    crash = data.get("crash")
    if crash:
        parts.append(f"<h3>Crash</h3><pre>{_e(json.dumps(crash, indent=1)[:4000])}</pre>")
    if plt:
        parts += [_chart(plt, made, "run") for made in plots.run_plots(plt, data)]
    rows = [[_e(n), v["count"], _ns(v["min"]), _ns(v["p50"]), _ns(v["p99"]), _ns(v["max"])]
            for n, v in plots._dist_rows(data)]
    if rows:
        parts.append(_table(["latency", "count", "min", "p50", "p99", "max"], rows,
                            num=(1, 2, 3, 4, 5)))
    return "".join(parts)


def build_report(docs, hist=None, plt=None):
    """The HTML text.  docs: [(path, dict)]; hist: a history dict or None."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
             "<title>pyharness report</title>"
             "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
             f"<style>{CSS}</style></head><body>",
             f"<h1>pyharness report</h1><p>generated {now} by pyharness {_e(__version__)}"
             f" from {len(docs)} file(s)" + (" and a results store" if hist else "") + "</p>"]
    if plt is None:
        parts.append(f'<div class="note" id="no-charts">Charts are missing: {_e(plots.MISSING)}, '
                     "then run <code>pyharness report</code> again.</div>")
    if hist is not None:
        parts.append(history_section(plt, hist))
    for path, data in docs:
        if data["schema"].startswith("pyharness.bench/"):
            parts.append(bench_section(plt, path, data))
        else:
            parts.append(run_section(plt, path, data))
    parts.append("</body></html>\n")
    return "".join(parts)


def report_main(args):
    from ..outputs import check_output_path
    check_output_path(args.out, "--out")
    if args.store and args.store.endswith(".json") and os.path.isfile(args.store):
        # `--store b.json ...`: --store takes an optional URL, and this is a
        # result file; the default store it is (write --store=URL to name one).
        args.files.insert(0, args.store)
        args.store = ""
    docs = [(p, plots._load(p)) for p in args.files]
    hist = None
    if args.store is not None:
        from ..history.series import build_history, parse_tags
        from ..history.store import open_store
        hist = build_history(open_store(args.store, create=False), figure=args.figure,
                             machine=args.machine, tags=parse_tags(args.tag))
    if not docs and hist is None:
        raise UsageError("nothing to report: give bench or run JSON files, or --store")
    plt = plots.matplotlib_or_none()
    text = build_report(docs, hist, plt)
    tmp = args.out + ".tmp"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, args.out)
    except OSError as exc:
        raise UsageError(f"--out {args.out}: {exc.strerror}") from None
    charts = text.count('<figure class="chart"')
    print(f"wrote {args.out} ({len(text) // 1024} KiB, {charts} charts"
          + ("" if plt else "; no charts: matplotlib is not installed") + ")")
    return 0
