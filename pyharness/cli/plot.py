"""`pyharness plot`: the arguments become keywords here, at the boundary."""
import os

from ..errors import UsageError
from ..viz.plots import _load, bench_plots, need_matplotlib, run_plots, save


def plot_main(args):
    """`pyharness plot FILE... [--out DIR] [--format png|svg]`: one image per
    chart; exit 3 without matplotlib."""
    docs = [(p, _load(p)) for p in args.files]
    plt = need_matplotlib()
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {args.out}: {exc.strerror}") from None
    for path, data in docs:
        stem = os.path.splitext(os.path.basename(path))[0]
        draw = bench_plots if data["schema"].startswith("pyharness.bench/") else run_plots
        for name, _, fig in draw(plt, data, stem):
            print(save(plt, fig, args.out, f"{name}.{args.format}"))
    return 0
