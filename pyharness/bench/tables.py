"""The bench's tables, as `pyharness bench` prints them."""

from ..stats import summary
from .rounds import _Plan


# ---------------------------------------------------------------------------
# Output

def _fmt_ns(v):
    if v is None:
        return "-"
    if v >= 999995:
        return f"{v / 1e6:.2f} ms"
    return f"{v / 1000:.2f} us" if v >= 999.5 else f"{v:.0f} ns"


def _cpu_text(cpus):
    from ..cpus import describe_cpus
    return describe_cpus(cpus) if cpus else "-"


def format_tables(result):
    m = result["machine"]
    lines = [f"pyharness bench ({'quick' if result['quick'] else 'full'}): {m.get('cpu_model')}, "
             f"kernel {m.get('kernel')}, CPUs {_cpu_text(result['cpus'])}"
             f"{', hypervisor' if m.get('hypervisor') else ''}, {result['repeats']} repeats, "
             f"{result['elapsed_s']:.0f} s"
             + (f", inject {result['inject_delay_ns']} ns/round" if result["inject_delay_ns"] else "")]
    head = (f"{'figure':40s} {'median':>9s} {'p10':>9s} {'p90':>9s} {'spread':>6s} "
            f"{'wall':>9s} {'floor':>9s} {'ratio':>5s}")
    groups = [("primitives (ns per operation)", "primitive"), ("RFC protocol (per site)", "rfc"),
              ("upstream style: membarrier SYNC_CORE instead of acks (per site)", "upstream"),
              ("batches (amortized per site)", "batch")]
    for title, kind in groups:
        rows = [(n, f) for n, f in result["figures"].items() if f.get("kind") == kind]
        if not rows:
            continue
        lines += ["", title, head]
        for name, f in rows:
            s, r = f["summary"], f.get("ratio_to_floor")
            short = name.split("/", 1)[1] if "/" in name else name
            lines.append(
                f"{short:40s} {_fmt_ns(s.get('median')):>9s} {_fmt_ns(s.get('p10')):>9s} "
                f"{_fmt_ns(s.get('p90')):>9s} {(s.get('spread') or 0):>6.0%} "
                f"{_fmt_ns((f.get('wall') or {}).get('median')):>9s} "
                f"{_fmt_ns(f.get('floor_ns')):>9s} {('%.2f' % r) if r else '-':>5s}")
    py = result.get("python") or {}
    if (py.get("overhead_ms") or {}).get("median") is not None:
        lines += ["", f"Python per run: {py['overhead_ms']['median']:.2f} ms "
                      f"(thread start, registration, join) against "
                      f"{summary(py['patching_ms_samples'])['median']:.1f} ms of patching "
                      f"({py['sites']} sites); over every run of this bench "
                      f"(~{_Plan(result['quick']).run_ns / 1e6:.0f} ms each) "
                      f"{py['all_runs_share']['median']:.1%} median, "
                      f"{py['all_runs_share']['max']:.1%} max"]
    lines += ["", "targets:"]
    for t in result["targets"]:
        lines.append(f"  [{'pass' if t['pass'] else 'FAIL'}] {t['target']}: measured "
                     f"{t['measured']:.3g} ({t['op']} {t['bound']:g})")
    if result["warnings"]:
        lines.append("")
    for w in result["warnings"]:
        lines.append(f"warning: {w}")
    return "\n".join(lines)
