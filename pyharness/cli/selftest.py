"""`pyharness selftest`: the arguments become keywords here, at the boundary."""
import sys

from ..selftest import (SelftestInterrupted, format_table, run_litmus_controls, run_selftest,
                        run_source_mutants)


def selftest_main(args):
    from ..errors import EXIT_INTERRUPTED, EXIT_UNSUPPORTED
    if args.json:
        from ..outputs import check_output_path
        check_output_path(args.json)
    quiet = getattr(args, "quiet", False)
    interrupted = False
    try:
        rows = run_selftest(seconds=args.seconds, cpus=args.cpus,
                            progress=sys.stderr.isatty() and not quiet)
        rows += run_source_mutants(cpus=args.cpus)
        rows += run_litmus_controls(cpus=args.cpus)
    except SelftestInterrupted as exc:
        rows, interrupted = exc.rows, True
    except KeyboardInterrupt:        # between runs, or in a source mutant's build
        rows, interrupted = [], True
    out = sys.stderr if args.json == "-" else sys.stdout
    if not quiet:
        print(format_table(rows), file=out)
        for r in rows:
            if r.get("skipped"):
                print(f"note: {r['mutant']} skipped: {r['skipped']}", file=out)
    ok = all(r["ok"] for r in rows) and not interrupted
    print("selftest: " + ("interrupted: no verdict (the runs above finished)" if interrupted else
                          "PASS: every mutant caught, the correct protocol clean" if ok else "FAIL"),
          file=out)
    code = EXIT_INTERRUPTED if interrupted else 0 if ok else 1
    if args.json:
        from .. import documents
        from ..cpus import parse_cpu_list, usable_cpus
        from ..platform import evidence
        cpus = parse_cpu_list(args.cpus) if args.cpus else usable_cpus()
        doc = {"schema": documents.KINDS["selftest"], "pass": ok, "interrupted": interrupted,
               "rows": rows, "evidence": evidence.finish(evidence.collect(cpus), cpus)}
        if not documents.write(doc, args.json, "--json", "selftest") and code == 0:
            code = EXIT_UNSUPPORTED
    return code
