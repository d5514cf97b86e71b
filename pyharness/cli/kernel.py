"""`pyharness kernel`: the running kernel's patching under stress. A
command of its own: it changes global kernel state (and restores it), so it
never runs by accident."""
import os
import sys

from ..cpus import check_cpus, parse_cpu_list, usable_cpus
from ..errors import EXIT_PASS, EXIT_VIOLATIONS


def kernel_main(args):
    from ..kernel import run as krun
    if args.restore:
        doc = krun.restore_pending()
        print("kernel: nothing to restore" if doc is None else
              f"kernel: restored {len(doc['entries'])} change(s) of the run of pid {doc.get('pid')}")
        return EXIT_PASS
    targets = krun.choose(args.targets)
    if args.dry_run:
        for line in krun.dry_run(targets):
            print(line)
        return EXIT_PASS
    cpus = parse_cpu_list(args.cpus) if args.cpus else usable_cpus()
    check_cpus(cpus)
    if args.json:
        from ..outputs import check_output_path
        check_output_path(args.json)
    from ..history.recording import open_for_writing
    store, tags = open_for_writing(args.store, args.tag)
    if store is not None and "kernel" not in tags:
        tags["kernel"] = os.uname().release      # `pyharness history --by kernel`
    from ._tty import Progress
    progress = Progress(args.quiet)
    doc = krun.run(targets, cpus, args.duration, progress=progress)
    progress.clear()
    out = sys.stderr if args.json == "-" else sys.stdout
    print(summary(doc), file=out)
    from ._tty import deliver
    return deliver(doc, args, "kernel", EXIT_VIOLATIONS if doc["violations"] else EXIT_PASS, store, tags)


def summary(doc):
    lines = [f"pyharness kernel: {doc['verdict'].upper()} in {doc['elapsed_s']:.1f} s"
             + (" (interrupted)" if doc["interrupted"] else "")
             + f"; every change restored: {'yes' if doc['restored'] else 'NO'}"]
    head = (f"  {'target':12s} {'item':34s} {'flips':>5s} {'p50 us':>9s} {'p99 us':>9s} {'max us':>9s} "
            f"{'IPIs':>6s} {'TLB':>5s}  evidence")
    lines.append(head)
    for name, t in doc["targets"].items():
        for it in t["items"]:
            lat = it["latency_us"] or {}
            ipis = f"{it['ipis_per_flip']:g}" if it["ipis_per_flip"] is not None else "-"
            tlb = it.get("tlb_shootdowns_per_flip")
            tlb = f"{tlb:g}" if tlb is not None else "-"
            ev = f"{it['evidence_ok']}/{it['flips']}: {it['evidence_last'] or '-'}"
            lines.append(f"  {name:12s} {it['name']:34s} {it['flips']:>5d} {lat.get('p50', 0):>9.0f} "
                         f"{lat.get('p99', 0):>9.0f} {lat.get('max', 0):>9.0f} {ipis:>6s} {tlb:>5s}  {ev}")
    for name, t in doc["targets"].items():
        if t.get("executions") is not None:
            lines.append(f"  {name}: {t['executions']} runs of its program by the executors on every CPU, "
                         "each return value checked")
    for x in doc["not_available"]:
        lines.append(f"  {x['target']:12s} {x['item']:34s} not available: {x['reason']}")
    ops = {}
    for d in doc["drivers"]:
        for k, v in d["ops"].items():
            ops[k] = ops.get(k, 0) + v
    lines.append("  drivers: " + ", ".join(f"{k} {v}" for k, v in ops.items())
                 + f" on {len(doc['drivers'])} CPUs, results checked")
    for v in doc["violations"]:
        lines.append(f"  VIOLATION {v['invariant']}: {v['detail']}")
    lines.append(f"  replay: {doc['replay']}")
    return "\n".join(lines)
