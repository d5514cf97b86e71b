"""`pyharness mutate`: the arguments become keywords here, at the boundary."""
import os
import shutil
import sys

from ..errors import UnsupportedError, UsageError
from ..mutate import MutateInterrupted, SCHEMA, default_mutants_dir, evaluate, format_table, load_mutants, score, source_root


def mutate_main(args):
    if not args.seconds > 0:
        raise UsageError("--seconds must be more than 0")
    if not shutil.which("patch"):
        raise UnsupportedError("`pyharness mutate` applies the mutants with patch(1), which is not "
                               "installed (apt-get install patch)")
    root = source_root(args.source)
    if args.source and root is None:
        raise UsageError(f"--source {args.source}: not a pyharness source tree (no csrc/build_ffi.py)")
    directory = os.path.abspath(args.mutants) if args.mutants else default_mutants_dir(root)
    mutants = load_mutants(directory, args.only)
    if args.keep:
        args.keep = os.path.abspath(args.keep)
    if args.json:
        from ..outputs import check_output_path
        check_output_path(args.json)
    quiet = getattr(args, "quiet", False)
    from ._tty import Progress
    progress = Progress(quiet)
    interrupted = False
    try:
        rows = evaluate(mutants, runs=args.runs, seconds=args.seconds, cpus=args.cpus,
                        progress=progress, keep=args.keep, root=root)
    except MutateInterrupted as exc:     # keep and show what was measured
        rows, interrupted = exc.rows, True
    progress.clear()
    out = sys.stderr if args.json == "-" else sys.stdout
    got, total = score(rows)
    if not quiet:
        print(format_table(rows), file=out)
    print(f"mutate: {got} of {total} non-equivalent mutants caught"
          + (" (interrupted)" if interrupted else ""), file=out)
    code = 0 if got == total else 1
    if args.json:
        from .. import documents
        from ..machine import machine_info
        doc = {"schema": SCHEMA, "score": {"caught": got, "scored": total},
               "interrupted": interrupted, "runs": args.runs, "seconds": args.seconds,
               "rows": rows, "machine": machine_info()}
        if not documents.write(doc, args.json, "--json", "mutate") and code == 0:
            code = 3
    if interrupted:
        from ..errors import EXIT_INTERRUPTED
        return EXIT_INTERRUPTED
    return code
