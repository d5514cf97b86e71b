"""`pyharness report`: the arguments become keywords here, at the boundary."""
import os

from ..errors import UsageError
from ..viz import plots
from ..viz.html import build_report


def report_main(args):
    from ..outputs import check_output_path, write_output
    check_output_path(args.out, "--out")
    if args.store and args.store.endswith(".json") and os.path.isfile(args.store):
        # `--store b.json ...`: --store takes an optional URL, and this is a
        # result file; the default store it is (write --store=URL to name one).
        args.files.insert(0, args.store)
        args.store = ""
    docs = [(p, plots._load(p)) for p in args.files]
    hist = fleet = None
    by = getattr(args, "by", None) or "time"
    if args.store is not None:
        from ..history.series import build_history, parse_tags
        from ..history.store import open_store
        hist = build_history(open_store(args.store, create=False), figure=args.figure,
                             machine=args.machine, tags=parse_tags(args.tag), by=by)
        from ..fleet.merge import merge_store
        fleet = merge_store(args.store, machine=args.machine)
    if not docs and hist is None:
        raise UsageError("nothing to report: give bench or run JSON files, or --store")
    plt = plots.matplotlib_or_none()
    text = build_report(docs, hist, plt, by=by, fleet=fleet)
    if not write_output(args.out, text, "--out", "report", ".html"):
        return 3
    charts = text.count('<figure class="chart"')
    live = text.count('class="interactive"')
    print(f"wrote {args.out} ({len(text) // 1024} KiB, {charts} charts, {live} interactive"
          + ("" if plt else "; no charts: matplotlib is not installed") + ")")
    return 0
