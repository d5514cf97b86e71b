#!/usr/bin/env python3
"""Draw pyharness results as PNG or SVG.

From bench JSON (`pyharness bench --json`): per-site latency histograms
and CDFs (RFC, upstream, batch), the scaling curve (per-site time and its
floor by number of secondaries), the batch curve, and each protocol
figure's ratio to its floor.  From run reports (`pyharness run --json`):
the latency summaries (min, p50, p99, max) of sites, acks and breakpoint
handlers.

    python scripts/plot.py b.json [more.json ...] [--out plots/] [--format svg]
    pip install 'pyharness[plot]'      # matplotlib is an optional extra

Exit codes: 0 drawn, 2 bad input, 3 matplotlib missing.
"""
import argparse
import json
import os
import re
import sys


def need_matplotlib():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.stderr.write("plot.py: matplotlib is not installed; install the optional extra with "
                         "pip install 'pyharness[plot]' (or pip install matplotlib)\n")
        sys.exit(3)
    return plt


def save(plt, fig, out, name):
    path = os.path.join(out, name)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _latency(plt, figs, title, out, name):
    """Histogram and CDF of the per-site samples of some figures."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    for label, f in figs.items():
        xs = sorted(x / 1000 for x in f["raw_samples"] if x > 0)
        if not xs:
            continue
        lo, hi = xs[0], max(xs[-1], xs[0] * 1.01)
        bins = [lo * (hi / lo) ** (i / 60) for i in range(61)]   # even on the log axis
        ax1.hist(xs, bins=bins, histtype="step", label=label)
        ax2.plot(xs, [i / len(xs) for i in range(1, len(xs) + 1)], label=label)
    ax1.set(xlabel="per-site time (us)", ylabel="sites", xscale="log", title=f"{title}: histogram")
    ax2.set(xlabel="per-site time (us)", ylabel="fraction of sites", xscale="log",
            title=f"{title}: CDF")
    ax2.legend(fontsize=7)
    return save(plt, fig, out, name)


def bench_plots(plt, data, stem, out, fmt):
    figs, made = data["figures"], []
    for kind, title in (("rfc", "RFC protocol"), ("upstream", "upstream (membarrier)"),
                        ("batch", "batches")):
        sel = {n.split("/", 1)[1]: f for n, f in figs.items()
               if f.get("kind") == kind and f.get("raw_samples")}
        if kind in ("rfc", "upstream"):   # one line per method: the fewest secondaries
            sel = {n: f for n, f in sel.items() if n.endswith("/secondaries=1")} or sel
        if sel:
            made.append(_latency(plt, sel, title, out, f"{stem}-latency-{kind}.{fmt}"))

    curves = {}   # (protocol, method) -> [(secondaries, median us, floor us)]
    for name, f in figs.items():
        m = re.match(r"(rfc|upstream)/(\w+/\w+)/secondaries=(\d+)$", name)
        if m:
            curves.setdefault((m.group(1), m.group(2)), []).append(
                (int(m.group(3)), f["summary"]["median"] / 1000, (f.get("floor_ns") or 0) / 1000))
    if curves:
        fig, ax = plt.subplots(figsize=(8, 5.5))
        methods = sorted({method for _, method in curves})
        for (proto, method), pts in sorted(curves.items()):
            pts.sort()
            xs = [p[0] for p in pts]
            color = f"C{methods.index(method) % 10}"    # a colour per poke/sync method
            ax.plot(xs, [p[1] for p in pts], marker="o" if proto == "rfc" else "s",
                    linestyle="-" if proto == "rfc" else "--", color=color,
                    label=f"{method} ({'RFC acks' if proto == 'rfc' else 'upstream membarrier'})")
            ax.plot(xs, [p[2] for p in pts], linestyle=":", color=color, linewidth=1)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set(xlabel="secondaries", ylabel="per-site time (us); dotted: floor", yscale="log",
               title="scaling with secondaries: RFC acks (solid), upstream membarrier (dashed)")
        ax.legend(fontsize=7)
        made.append(save(plt, fig, out, f"{stem}-scaling.{fmt}"))

    batch = sorted((int(k.rsplit("=", 1)[1]), v["summary"]["median"], v.get("floor_ns"))
                   for k, v in figs.items() if v.get("kind") == "batch")
    if batch:
        fig, ax = plt.subplots(figsize=(7, 5))
        ax.plot([b[0] for b in batch], [b[1] for b in batch], marker="o", label="measured")
        ax.plot([b[0] for b in batch], [b[2] for b in batch], linestyle=":", label="floor")
        ax.set(xlabel="sites per batch", ylabel="per-site time (ns)", xscale="log", yscale="log",
               title="batch amortization")
        ax.legend()
        made.append(save(plt, fig, out, f"{stem}-batch.{fmt}"))

    ratios = [(n, f["ratio_to_floor"]) for n, f in figs.items() if f.get("ratio_to_floor")]
    if ratios:
        fig, ax = plt.subplots(figsize=(8, 0.3 * len(ratios) + 1.5))
        ax.barh([n for n, _ in ratios], [r for _, r in ratios])
        ax.axvline(1.0, color="grey", linestyle=":")
        bound = next((t["bound"] for t in data.get("targets", []) if "floor" in t["target"]), None)
        if bound:
            ax.axvline(bound, color="C3", linestyle="--", label=f"target {bound:g}x")
            ax.legend()
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=7)
        ax.set(xlabel="measured / floor (median over runs)", title="distance to the floor")
        made.append(save(plt, fig, out, f"{stem}-floor.{fmt}"))
    return made


def run_plots(plt, data, stem, out, fmt):
    d = data.get("distributions") or {}
    rows = [("site", d.get("site_ns")), ("batch", d.get("batch_ns")),
            ("bp handler", d.get("bp_handler_ns"))]
    rows += [(f"ack {k}", v) for k, v in (d.get("ack_wait_ns") or {}).items()]
    rows = [(n, v) for n, v in rows if v and v.get("count")]
    if not rows:
        return []
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.5))
    for i, (name, v) in enumerate(rows):
        ax.plot([max(v["min"], 1), v["max"]], [i, i], color="lightgrey", linewidth=6)
        ax.plot([v["p50"]], [i], "o", color="C0", label="p50" if i == 0 else None)
        ax.plot([v["p99"]], [i], "s", color="C3", label="p99" if i == 0 else None)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{n} ({v['count']})" for n, v in rows])
    ax.set(xscale="log", xlabel="ns (bar: min to max)",
           title=f"{data.get('scenario')}: {data.get('verdict')} ({data.get('status')})")
    ax.legend()
    return [save(plt, fig, out, f"{stem}-distributions.{fmt}")]


def main(argv=None):
    ap = argparse.ArgumentParser(description="Draw pyharness bench JSON and run reports.")
    ap.add_argument("files", nargs="+", help="bench JSON or run report JSON")
    ap.add_argument("--out", default=".", help="directory for the images (created)")
    ap.add_argument("--format", default="png", choices=["png", "svg"])
    args = ap.parse_args(argv)
    docs = []
    for path in args.files:
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            sys.stderr.write(f"plot.py: cannot read {path}: {exc}\n")
            return 2
        schema = str(data.get("schema", "")) if isinstance(data, dict) else ""
        if not schema.startswith(("pyharness.bench/", "pyharness.run/")):
            sys.stderr.write(f"plot.py: {path} is neither a bench result nor a run report "
                             f"(schema {schema!r})\n")
            return 2
        docs.append((path, schema, data))
    plt = need_matplotlib()
    os.makedirs(args.out, exist_ok=True)
    for path, schema, data in docs:
        stem = os.path.splitext(os.path.basename(path))[0]
        draw = bench_plots if schema.startswith("pyharness.bench/") else run_plots
        for made in draw(plt, data, stem, args.out, args.format):
            print(made)
    return 0


if __name__ == "__main__":
    sys.exit(main())
