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
    if getattr(args, "false_positives", False):
        return _false_positives(args, quiet)
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


def _false_positives(args, quiet):
    from ..errors import EXIT_INTERRUPTED, EXIT_UNSUPPORTED
    from ..selftest import format_matrix, matrix_configs, run_matrix
    out = sys.stderr if args.json == "-" else sys.stdout
    total = len(matrix_configs(args.subset)) * args.seeds
    tty = sys.stderr.isatty() and not quiet
    done = []

    def on_row(row):
        done.append(row)
        if tty:
            sys.stderr.write(f"\r{len(done)}/{total} runs, {sum(r['verdict'] != 'pass' for r in done)} FAIL: "
                             f"{row['config'][:50]:50s}")
            sys.stderr.flush()
    interrupted = False
    try:
        rows = run_matrix(seeds=args.seeds, seconds=args.seconds, cpus=args.cpus, subset=args.subset,
                          on_row=on_row)
    except (SelftestInterrupted, KeyboardInterrupt):
        rows, interrupted = list(done), True
    if tty:
        sys.stderr.write("\n")
    if not quiet:
        print(format_matrix(rows), file=out)
    fails = [r for r in rows if r["verdict"] != "pass"]
    print("selftest --false-positives: " + ("interrupted: no verdict (the runs above finished)"
                                            if interrupted else "FAIL" if fails else
                                            "PASS: no FAIL of a correct protocol"), file=out)
    code = EXIT_INTERRUPTED if interrupted else 1 if fails else 0
    if args.json:
        from .. import documents
        from ..cpus import parse_cpu_list, usable_cpus
        from ..platform import evidence
        cpus = parse_cpu_list(args.cpus) if args.cpus else usable_cpus()
        doc = {"schema": documents.KINDS["selftest"], "pass": not fails and not interrupted,
               "interrupted": interrupted, "rows": [], "matrix": rows,
               "evidence": evidence.finish(evidence.collect(cpus), cpus)}
        if not documents.write(doc, args.json, "--json", "selftest") and code == 0:
            code = EXIT_UNSUPPORTED
    return code
