"""`pyharness bench`: the arguments become keywords here, at the boundary."""
import sys

from ..errors import EXIT_INTERRUPTED, EXIT_UNSUPPORTED
from ..bench import format_tables, run_bench


def bench_main(args):
    """`pyharness bench`: tables on stdout, progress on stderr if a TTY."""
    if args.json:                      # checked before any work
        from ..outputs import check_output_path
        check_output_path(args.json)
    from ..history.recording import open_for_writing, record
    store, tags = open_for_writing(args.store, args.tag)   # so is the store: opened first
    quiet = getattr(args, "quiet", False)
    result = run_bench(quick=args.quick, cpus=args.cpus, out_json=args.json,
                       inject_delay_ns=args.inject_delay_ns or 0,
                       progress=sys.stderr.isatty() and not quiet)
    written = result.pop("_written", True)
    out = sys.stderr if args.json == "-" else sys.stdout
    if not quiet:
        print(format_tables(result), file=out)
    missed = [t["target"] for t in result["targets"] if not t["pass"]]
    print(f"pyharness bench: {len(result['figures'])} figures, "
          f"{len(result['targets']) - len(missed)} of {len(result['targets'])} speed targets met",
          file=out)
    if result["interrupted_in_round"] != 0:  # a warm-up cut short measured nothing
        if not record(store, result, tags, "pyharness bench"):
            return EXIT_UNSUPPORTED           # the environment (the store), not the code
    if not written:
        return EXIT_UNSUPPORTED
    if result["interrupted_in_round"] is not None:
        sys.stderr.write("pyharness bench: interrupted; what was measured is above"
                         + (f" and in {args.json}" if args.json else "") + "\n")
        return EXIT_INTERRUPTED
    if missed and args.check_targets:
        sys.stderr.write(f"pyharness bench: {len(missed)} speed target(s) missed: "
                         f"{'; '.join(missed)}\n")
        return 1
    return 0
