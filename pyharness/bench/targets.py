"""The speed targets and the warnings (pyperf-style: say when the machine is
too noisy to trust a figure)."""

from ..stats import summary
from .constants import (BATCH_GAIN_BOUND, DRIFT_WARN, FLOOR_RATIO_BOUND, PYTHON_SHARE_BOUND,
                        SPREAD_WARN)


# ---------------------------------------------------------------------------
# Targets and warnings

def targets(result):
    """The speed targets (issue 4), each with its measured value and bound."""
    figs, out = result["figures"], []
    share = (result.get("python") or {}).get("share") or {}
    if share.get("median") is not None:
        py = result["python"]
        out.append({"target": f"Python's share of a run's patching time "
                              f"({py['sites']} sites, {py['config']['poke']}/{py['config']['sync']})",
                    "measured": share["median"], "bound": PYTHON_SHARE_BOUND, "op": "<",
                    "pass": share["median"] < PYTHON_SHARE_BOUND})
    for name, f in figs.items():
        if f.get("kind") == "rfc" and f.get("ratio_to_floor") is not None:
            out.append({"target": f"{name} within {FLOOR_RATIO_BOUND}x of its floor",
                        "measured": f["ratio_to_floor"], "bound": FLOOR_RATIO_BOUND, "op": "<=",
                        "pass": f["ratio_to_floor"] <= FLOOR_RATIO_BOUND})
    b1 = next((f for n, f in figs.items() if f.get("kind") == "batch" and n.endswith("batch=1")), None)
    b256 = next((f for n, f in figs.items() if f.get("kind") == "batch" and n.endswith("batch=256")),
                None)
    if b1 and b256 and b256["summary"].get("median"):
        gain = b1["summary"]["median"] / b256["summary"]["median"]
        out.append({"target": f"batch=256 at least {BATCH_GAIN_BOUND:g}x cheaper per site than batch=1",
                    "measured": gain, "bound": BATCH_GAIN_BOUND, "op": ">=",
                    "pass": gain >= BATCH_GAIN_BOUND})
    return out


def warnings(result):
    """pyperf-style: say when the machine is too noisy to trust a figure."""
    out, m = [], result["machine"]
    if m.get("hypervisor"):
        out.append("running under a hypervisor: CPUID and IPIs exit to it, and the host may move "
                   "the vCPUs (cross-CPU costs change between runs): compare runs of one machine")
    gov = m.get("governor")
    if gov is not None and gov != "performance":
        out.append(f"CPU frequency governor is '{gov}', not 'performance': clocks may change "
                   "under load")
    ncpu = len(m.get("affinity") or result["cpus"]) or 1
    load = (m.get("loadavg") or [0.0])[0]
    if load > 0.5 * ncpu:
        out.append(f"load average {load:.2f} before the run is high for {ncpu} CPUs: other "
                   "work competes with the pinned threads")
    if result.get("oversubscribed"):
        out.append("only one usable CPU: primary and secondary share it (oversubscribed): each "
                   "hand-off is a pair of context switches and the threads take turns at "
                   "sync_one; these figures do not compare with runs on distinct CPUs")
    st = result.get("stability") or {}
    # p90/p10, not max/min: one slow hand-off is noise, a tenth of them is a phase
    if (st.get("p90_over_p10") or 0) > DRIFT_WARN:
        h = st["handoff_ns"]
        out.append(f"the machine changed during the run: the cross-CPU hand-off ranged "
                   f"{h['p10']:.0f}-{h['p90']:.0f} ns (p10-p90); figures are normalized per run, "
                   "raw times are not comparable")
    noisy = []
    for name, f in result["figures"].items():
        sp = f["summary"].get("spread")
        if sp is not None and sp > SPREAD_WARN:
            norm = summary(f.get("ratio_to_floor_samples") or []).get("spread")
            noisy.append(f"{name} ({sp:.0%}" + (f", {norm:.0%})" if norm is not None else ")"))
    if noisy:
        out.append(f"spread (p90-p10)/median above {SPREAD_WARN:.0%}, do not trust these to "
                   f"{SPREAD_WARN:.0%} (raw, and relative to the floor):\n    "
                   + "\n    ".join(noisy))
    late = {n: f["late_runs"] for n, f in result["figures"].items() if f.get("late_runs")}
    if late:
        out.append("runs repeated because a secondary joined late (nobody waits for it in the "
                   "upstream style): " + ", ".join(f"{n} {k} time(s)" for n, k in sorted(late.items())))
    for what, why in (result.get("skipped") or {}).items():
        out.append(f"not measured: {what}: {why}")
    if result.get("interrupted_in_round") is not None:
        out.insert(0, f"INTERRUPTED in round {result['interrupted_in_round']} of "
                      f"{result['repeats']} (0: the warm-up): figures have fewer samples, and "
                      "those with none are left out")
    return out
