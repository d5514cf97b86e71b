"""`pyharness compare OLD.json NEW.json`: which figures changed, whether
the change is significant, and whether it is a regression worth failing on.

    text, code = compare(old, new, fail_above=0.10)

For every figure both runs have: the ratio new/old of the medians, and a
two-sided Mann-Whitney U test over the per-run samples (each sample is one
run of the figure, or one timed batch of a primitive).  A figure regressed
when it is slower by more than ``fail_above`` AND p < 0.01: both, so that
neither a tiny significant shift nor a large noisy one fails a build.

What is compared (``basis``):
- raw: the time per site / per operation;
- normalized: a protocol figure's time divided by its floor, computed per
  run from primitives measured in the same round and a hand-off timed on
  the run's CPUs just before and after it.  It cancels what the machine did
  to every figure at once (a VM's host moving the vCPUs apart tripled the
  cross-CPU cost on ours, within one run), and keeps what the protocol code
  did.  The floor's own noise moves it by +-10% between runs of one build,
  so a figure counts as slower on this basis only when its time is slower
  as well (both beyond the threshold, both with p < 0.01);
- auto (default): normalized under a hypervisor (where primitives do not
  gate either: CPUID and IPIs exit to the host and move by +-25% between
  runs of one build), raw on bare metal.
When a figure's floor moved by more than FLOOR_MOVED between the runs (the
host put the vCPUs 5x further apart on ours), the figure's overhead over
the floor shifts too (IRET sites: 1.3x the floor near, 1.1x far); it still
gates, on the same rule (slower only when both its raw time and its ratio
are), and the line says the floor moved: a tripled raw time beside a moved
floor was once left ungated, the largest regression of its history.
Both ratios are printed whatever gates, so a slower kernel or CPU (raw
slower, normalized not) is told apart from slower protocol code (both).
"""

from .errors import UsageError
from .stats import mann_whitney_u, summary

ALPHA = 0.01
BASES = ("auto", "raw", "normalized")
FLOOR_MOVED = 1.5     # floors this far apart: the machine, not the code, changed


def load(path):
    """Read a bench JSON file; UsageError if it is not one."""
    from . import documents
    return documents.load(path, ("bench",))


def _test(old, new):
    """(ratio of medians new/old, p) over two lists of samples."""
    if not old or not new:
        return None, 1.0
    mo, mn = summary(old)["median"], summary(new)["median"]
    _, p = mann_whitney_u(old, new)
    return (mn / mo if mo else None), p


def _verdict(ratio, p, fail_above):
    if ratio is None:
        return "n/a"
    if p < ALPHA and ratio > 1 + fail_above:
        return "slower"
    if p < ALPHA and ratio < 1 / (1 + fail_above):
        return "faster"
    if p < ALPHA:
        return "changed<thr"
    return "same"


def judge_figure(fo, fn, fail_above=0.10, basis="auto", virtual=False):
    """One figure, old against new: fo and fn hold its per-run "samples"
    (raw), and for a protocol figure "ratio_to_floor_samples" and
    "floor_samples".  The one judgement `compare` and a young history's
    gate (pyharness/history/series.py) share.  Returns the row."""
    protocol = bool(fo.get("ratio_to_floor_samples")) and bool(fn.get("ratio_to_floor_samples"))
    raw_ratio, raw_p = _test(fo["samples"], fn["samples"])
    norm_ratio, norm_p = (_test(fo["ratio_to_floor_samples"], fn["ratio_to_floor_samples"])
                          if protocol else (None, 1.0))
    if protocol:
        use = "normalized" if basis == "normalized" or (basis == "auto" and virtual) else "raw"
        gates = True
    else:
        use = "raw"
        gates = basis == "raw" or not virtual
    ratio, p = (norm_ratio, norm_p) if use == "normalized" else (raw_ratio, raw_p)
    floor_moved = None
    if use == "normalized":
        fo_med = summary(fo.get("floor_samples") or []).get("median")
        fn_med = summary(fn.get("floor_samples") or []).get("median")
        if fo_med and fn_med and max(fn_med / fo_med, fo_med / fn_med) > FLOOR_MOVED:
            # The machine moved the floor: the overhead over it shifts too,
            # so the figure is judged on its raw time as well -- it is
            # slower only when both its time and its ratio are (below),
            # never vetoed: a tripled time beside a moved floor is the
            # largest regression there is.
            floor_moved = fn_med / fo_med
    verdict = _verdict(ratio, p, fail_above)
    if use == "normalized" and verdict == "slower" and \
            _verdict(raw_ratio, raw_p, fail_above) != "slower":
        # Slower relative to the floor only: the floor's hand-off was
        # timed faster this time while the protocol took as long (seen
        # on our VM: +-10% between runs of one build).  A regression of
        # the code makes the time longer too.
        verdict = "changed<thr"
    if verdict == "slower" and gates:
        verdict = "REGRESSED"
    why = None
    if protocol and _verdict(raw_ratio, raw_p, fail_above) == "slower":
        why = ("the protocol, relative to its floor" if
               _verdict(norm_ratio, norm_p, fail_above) == "slower"
               else "the primitives (machine, kernel, hypervisor): not relative to the floor")
    return {"old_median": (fo.get("summary") or summary(fo["samples"])).get("median"),
            "new_median": (fn.get("summary") or summary(fn["samples"])).get("median"),
            "raw_ratio": raw_ratio, "raw_p": raw_p,
            "normalized_ratio": norm_ratio, "normalized_p": norm_p if protocol else None,
            "basis": use, "ratio": ratio, "p": p, "gates": gates,
            "verdict": verdict, "slower_in": why, "floor_moved": floor_moved}


def compare_figures(old, new, fail_above=0.10, basis="auto"):
    """The decision, as data: (rows, summary dict, exit code)."""
    if basis not in BASES:
        raise UsageError(f"--basis must be one of {', '.join(BASES)}")
    if not fail_above >= 0:
        raise UsageError("--fail-above must not be negative")
    virtual = bool((old.get("machine") or {}).get("hypervisor") or
                   (new.get("machine") or {}).get("hypervisor"))
    rows = []
    for name, fo in old["figures"].items():
        fn = new["figures"].get(name)
        if fn is None:
            continue
        rows.append({"figure": name, **judge_figure(fo, fn, fail_above, basis, virtual)})
    regressed = [r["figure"] for r in rows if r["verdict"] == "REGRESSED"]
    summ = {"figures": len(rows), "regressed": regressed,
            "slower": [r["figure"] for r in rows if r["verdict"] in ("slower", "REGRESSED")],
            "faster": [r["figure"] for r in rows if r["verdict"] == "faster"],
            "only_old": sorted(set(old["figures"]) - set(new["figures"])),
            "only_new": sorted(set(new["figures"]) - set(old["figures"])),
            "basis": basis, "hypervisor": virtual, "fail_above": fail_above, "alpha": ALPHA,
            "inject_delay_ns": [old.get("inject_delay_ns"), new.get("inject_delay_ns")]}
    return rows, summ, 1 if regressed else 0


def _ns(v):
    if v is None:
        return "-"
    return f"{v / 1000:.2f}us" if v >= 999.5 else f"{v:.0f}ns"


def _r(v):
    return "-" if v is None else f"{v:.3f}"


def format_report(rows, summ, old=None, new=None):
    lines = []
    for tag, d in (("old", old), ("new", new)):
        if d:
            m = d.get("machine") or {}
            lines.append(f"{tag}: {m.get('hostname', '?')} {m.get('cpu_model', '?')}, kernel "
                         f"{m.get('kernel', '?')}, CPUs {d.get('cpus')}, "
                         f"{'quick' if d.get('quick') else 'full'}, {d.get('started', '')}"
                         + (f", inject {d['inject_delay_ns']} ns" if d.get("inject_delay_ns") else "")
                         + (f", INTERRUPTED in round {d['interrupted_in_round']} (fewer samples)"
                            if d.get("interrupted_in_round") is not None else ""))
    lines.append(f"{'figure':44s} {'old':>9s} {'new':>9s} {'raw':>6s} {'norm':>6s} {'p':>8s}  verdict")
    for r in rows:
        note = "" if r["gates"] else " (not gating)"
        if r["floor_moved"]:
            note = f" (floor moved {r['floor_moved']:.2f}x: slower only if the raw time is too)"
        lines.append(f"{r['figure']:44s} {_ns(r['old_median']):>9s} {_ns(r['new_median']):>9s} "
                     f"{_r(r['raw_ratio']):>6s} {_r(r['normalized_ratio']):>6s} {r['p']:>8.1e}  "
                     f"{r['verdict']}{note}" + (" [normalized]" if r["basis"] == "normalized" else ""))
        if r["slower_in"] and r["verdict"] in ("slower", "REGRESSED"):
            lines.append(f"{'':44s}   slower in {r['slower_in']}")
    for key, what in (("only_old", "only in old"), ("only_new", "only in new")):
        if summ[key]:
            lines.append(f"{what}: {', '.join(summ[key])}")
    gate = ("normalized (time / floor) for protocol figures; primitives do not gate"
            if summ["basis"] == "normalized" or (summ["basis"] == "auto" and summ["hypervisor"])
            else "raw time")
    lines.append(f"{len(summ['slower'])} slower ({len(summ['regressed'])} of them gating: regressed), "
                 f"{len(summ['faster'])} faster of {summ['figures']} figures "
                 f"(slower means > {summ['fail_above']:.0%} with p < {summ['alpha']}; gating on "
                 f"{gate}{', hypervisor' if summ['hypervisor'] else ''})")
    lines.append("result: " + ("REGRESSED: " + ", ".join(summ["regressed"]) if summ["regressed"]
                               else "no significant regression"))
    return "\n".join(lines)


def compare(old, new, fail_above=0.10, basis="auto"):
    """Compare two bench results (dicts).  Returns (report_text, exit_code):
    exit code 1 when a gating figure regressed significantly by more than
    fail_above, else 0."""
    rows, summ, code = compare_figures(old, new, fail_above, basis)
    return format_report(rows, summ, old, new), code
