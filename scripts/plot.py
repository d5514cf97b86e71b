#!/usr/bin/env python3
"""Draw pyharness results: per-site latency histograms and CDFs, the
scaling curve (per-site time by number of secondaries) and the batch curve
from bench JSON; the latency summaries (p50/p99/max) of run reports.

    python scripts/plot.py bench.json [more.json ...] --out plots/
    pip install '.[plot]'      # matplotlib is an optional extra
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
        return plt
    except ImportError:
        sys.stderr.write("plot.py: matplotlib is not installed; pip install 'pyharness[plot]' "
                         "(or pip install matplotlib)\n")
        sys.exit(3)


def bench_plots(plt, data, stem, out, fmt):
    figs = data["figures"]
    made = []
    protocol = {k: v for k, v in figs.items() if v.get("raw_samples")}
    if protocol:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
        for name, f in protocol.items():
            xs = sorted(x / 1000 for x in f["raw_samples"])
            ax1.hist(xs, bins=60, histtype="step", label=name)
            ax2.plot(xs, [i / len(xs) for i in range(1, len(xs) + 1)], label=name)
        ax1.set(xlabel="per-site time (us)", ylabel="samples", xscale="log", title="histogram")
        ax2.set(xlabel="per-site time (us)", ylabel="fraction", xscale="log", title="CDF")
        ax2.legend(fontsize=6)
        made.append(save(plt, fig, out, f"{stem}-latency.{fmt}"))
    curves = {}
    for name, f in figs.items():
        m = re.match(r"rfc/(\w+)/(\w+)/secondaries=(\d+)$", name)
        if m:
            curves.setdefault(f"{m.group(1)}/{m.group(2)}", []).append(
                (int(m.group(3)), f["summary"]["median"] / 1000, f.get("floor_ns", 0) / 1000))
    if curves:
        fig, ax = plt.subplots(figsize=(7, 5))
        for label, pts in sorted(curves.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
            ax.plot([p[0] for p in pts], [p[2] for p in pts], linestyle=":", color="grey")
        ax.set(xlabel="secondaries", ylabel="per-site time (us), dotted: floor", yscale="log",
               title="RFC protocol scaling")
        ax.legend(fontsize=7)
        made.append(save(plt, fig, out, f"{stem}-scaling.{fmt}"))
    batch = sorted((int(k.split("=")[1]), v["summary"]["median"], v.get("floor_ns"))
                   for k, v in figs.items() if k.startswith("batch/"))
    if batch:
        fig, ax = plt.subplots(figsize=(7, 5))
        ax.plot([b[0] for b in batch], [b[1] for b in batch], marker="o", label="measured")
        ax.plot([b[0] for b in batch], [b[2] for b in batch], linestyle=":", label="floor")
        ax.set(xlabel="sites per batch", ylabel="per-site time (ns)", xscale="log", yscale="log",
               title="batch amortization")
        ax.legend()
        made.append(save(plt, fig, out, f"{stem}-batch.{fmt}"))
    return made


def run_plots(plt, data, stem, out, fmt):
    d = data.get("distributions") or {}
    rows = [("site", d.get("site_ns")), ("bp handler", d.get("bp_handler_ns"))]
    rows += [(f"ack {k}", v) for k, v in (d.get("ack_wait_ns") or {}).items()]
    rows = [(n, v) for n, v in rows if v and v.get("count")]
    if not rows:
        return []
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, (name, v) in enumerate(rows):
        ax.plot([v["min"], v["max"]], [i, i], color="lightgrey", linewidth=6)
        ax.plot([v["p50"]], [i], "o", color="C0")
        ax.plot([v["p99"]], [i], "s", color="C3")
    ax.set_yticks(range(len(rows)), [n for n, _ in rows])
    ax.set(xscale="log", xlabel="ns (bar: min-max, circle: p50, square: p99)",
           title=f"{data.get('scenario')} {data.get('verdict')}")
    return [save(plt, fig, out, f"{stem}-distributions.{fmt}")]


def save(plt, fig, out, name):
    path = os.path.join(out, name)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--out", default=".")
    ap.add_argument("--format", default="png", choices=["png", "svg"])
    args = ap.parse_args()
    plt = need_matplotlib()
    os.makedirs(args.out, exist_ok=True)
    for path in args.files:
        with open(path) as f:
            data = json.load(f)
        stem = os.path.splitext(os.path.basename(path))[0]
        schema = str(data.get("schema", ""))
        made = (bench_plots if schema.startswith("pyharness.bench/") else run_plots)(
            plt, data, stem, args.out, args.format)
        for m in made:
            print(m)


if __name__ == "__main__":
    main()
