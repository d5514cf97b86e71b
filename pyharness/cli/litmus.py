"""`pyharness litmus`: the shipped cross-modifying-code tests (and any
TOML test a user writes) on this CPU, with both controls, as litmus7-style
verdicts."""
import sys

from ..cpus import check_cpus, format_cpu_list, parse_cpu_list, usable_cpus
from ..errors import EXIT_PASS, EXIT_UNSUPPORTED, EXIT_VIOLATIONS, UsageError


def _tests(args):
    from ..litmus import spec
    shipped = spec.shipped()
    by_name = {t.name: t for t in shipped}
    controls = [t for t in shipped if t.control]
    if args.only is None and not args.test:
        return shipped
    chosen = []
    for name in (args.only.split(",") if args.only else []):
        name = name.strip()
        if name not in by_name:
            raise UsageError(f"--only: no shipped litmus test {name!r} (pyharness litmus --list)")
        chosen.append(by_name[name])
    for path in args.test or []:
        chosen.append(spec.load(path))
    names = [t.name for t in chosen]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UsageError(f"two tests named {dup[0]!r}")
    # the controls always run: they say what this run can see
    return [c for c in controls if c.name not in names] + chosen


def litmus_main(args):
    from ..litmus import spec, suite, verdict
    if args.list:
        for t in spec.shipped():
            tag = f" [{t.control} control]" if t.control else ""
            print(f"{t.name:28s} {t.doc.get('title', '')}{tag}")
        return EXIT_PASS
    if not args.time > 0:
        raise UsageError("--time must be more than 0")
    tests = _tests(args)
    cpus = parse_cpu_list(args.cpus) if args.cpus else usable_cpus()
    check_cpus(cpus)
    if args.json:
        from ..outputs import check_output_path
        check_output_path(args.json)
    from ..history.recording import open_for_writing
    store, tags = open_for_writing(args.store, args.tag)
    quiet = args.quiet
    from ._tty import Progress
    progress = Progress(quiet)
    doc = suite.run_suite(tests, cpus, args.time, positive_min=args.positive_executions,
                          positive_cap=args.positive_cap, progress=progress)
    progress.clear()
    out = sys.stderr if args.json == "-" else sys.stdout
    rows = doc["verdicts"]
    if not quiet:
        for r in rows:
            if "observation" in r:
                print(verdict.litmus7(r, f"{r['placement']}, CPUs {format_cpu_list(r['cpus'])}"), file=out)
                print(f"# replay: {r['replay']}", file=out)
                print("", file=out)
        print(summary(doc), file=out)
    from ._tty import deliver
    return deliver(doc, args, "litmus", exit_code(doc), store, tags)


def exit_code(doc):
    """1 when this CPU broke its vendor's documented rule (a forbidden
    outcome where the vendor's rule forbids it) or the positive control
    failed: the box, or the full protocol, is broken.  A forbidden outcome
    of a shape that relies on what no vendor promises is a finding about
    that shape, reported, not the box's failure.  3 when nothing could run."""
    rows = doc["verdicts"]
    judged = [r for r in rows if "observation" in r]
    if not judged:
        return EXIT_UNSUPPORTED
    if any(r["vendor_rule_broken"] and r.get("control") != "negative" for r in judged):
        return EXIT_VIOLATIONS
    if any(r["validated"] for r in judged if r.get("control") == "positive"):
        return EXIT_VIOLATIONS
    return EXIT_PASS


def summary(doc):
    rows = doc["verdicts"]
    ctl = doc["controls"]
    w = max([len("test")] + [len(r["test"]) for r in rows])
    lines = [f"{'test':{w}s}  {'placement':13s} {'observation':11s} {'positive':>9s} {'raced':>11s} "
             f"{'trials/s':>10s} {'floor/s':>10s} {'ratio':>6s}  vendor rule broken"]
    for r in rows:
        if "observation" not in r:
            lines.append(f"{r['test']:{w}s}  {r['placement']:13s} not available: {r['unavailable']}")
            continue
        obs = r["observation"] + ("" if r["trusted"] else "?")
        ratio = f"{r['floor_ratio']:.2f}" if r["floor_ratio"] is not None else "-"
        lines.append(f"{r['test']:{w}s}  {r['placement']:13s} {obs:11s} {r['positive']:>9d} "
                     f"{r['raced']:>11d} {r['trials_per_s']:>10.0f} {r['floor_trials_per_s']:>10.0f} "
                     f"{ratio:>6s}  {', '.join(r['vendor_rule_broken']) or '-'}")
    lines.append(f"controls: negative {ctl['negative']}, positive {ctl['positive']}"
                 + (f" ({ctl['why']})" if ctl.get("why") else "")
                 + ("" if ctl["trusted"] else "; '?': a Never this run cannot vouch for"))
    seen = [r["test"] for r in rows if r.get("validated") and r.get("control") != "negative"]
    broke = [r["test"] for r in rows if r.get("vendor_rule_broken") and r.get("control") != "negative"]
    vendor = doc.get("vendor") or "this CPU's vendor"
    lines.append("litmus: " + (f"forbidden outcomes seen in {', '.join(sorted(set(seen)))}" if seen
                               else "no forbidden outcome outside the negative control")
                 + (f"; {vendor}'s documented rule broken by {', '.join(sorted(set(broke)))}" if broke
                    else f"; none that {vendor}'s documented rules forbid"))
    return "\n".join(lines)
