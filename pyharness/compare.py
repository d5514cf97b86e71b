"""`pyharness compare OLD.json NEW.json`: which figures changed, whether
the change is significant, and whether it is a regression worth failing on.

Significance: a two-sided Mann-Whitney U test over the figure's samples
(per-site samples for protocol figures, per-repeat ns/op for primitives).
A figure regressed when its median grew by more than --fail-above AND the
test says p < 0.01.  Basis ("auto"): raw time.  Under a hypervisor the
primitives (CPUID, IPIs exit to it) move by +-25% between runs of one
build, so there they are reported but do not gate; on bare metal every
figure gates.  --basis normalized gates protocol figures on their cost
relative to the floor measured in the same run instead (it inherits the
primitives' noise: measured worse than raw on our VM).
"""
import json

from .errors import UsageError
from .stats import mann_whitney_u, summary

ALPHA = 0.01


def load(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise UsageError(f"{path} is not JSON") from None
    if not str(data.get("schema", "")).startswith("pyharness.bench/"):
        raise UsageError(f"{path} is not a pyharness bench result (schema {data.get('schema')!r})")
    return data


def _samples(fig, normalized):
    if normalized and fig.get("floor_ns"):
        base = fig.get("raw_samples") or fig["samples"]
        return [x / fig["floor_ns"] for x in base]
    return fig.get("raw_samples") or fig["samples"]


def compare(old, new, fail_above=0.10, basis="auto"):
    """Returns (rows, summary dict, exit code)."""
    if basis not in ("auto", "raw", "normalized"):
        raise UsageError("--basis must be auto, raw or normalized")
    virtual = bool(old["machine"].get("hypervisor") or new["machine"].get("hypervisor"))
    rows = []
    for name in old["figures"]:
        if name not in new["figures"]:
            continue
        fo, fn = old["figures"][name], new["figures"][name]
        protocol = "floor_ns" in fo and "floor_ns" in fn
        use_norm = protocol and basis == "normalized"
        gates = protocol or basis == "raw" or (basis == "auto" and not virtual)
        so, sn = _samples(fo, use_norm), _samples(fn, use_norm)
        mo, mn = summary(so)["median"], summary(sn)["median"]
        ratio = mn / mo if mo else None
        _, p = mann_whitney_u(so, sn)
        raw_ratio = fn["summary"]["median"] / fo["summary"]["median"] if fo["summary"]["median"] else None
        significant = p < ALPHA
        if ratio is None:
            verdict = "n/a"
        elif significant and ratio > 1 + fail_above:
            verdict = "REGRESSED" if gates else "slower"
        elif significant and ratio < 1 - fail_above:
            verdict = "improved"
        elif significant:
            verdict = "changed<thr"
        else:
            verdict = "same"
        rows.append({"figure": name, "old_median": fo["summary"]["median"],
                     "new_median": fn["summary"]["median"], "raw_ratio": raw_ratio,
                     "basis": "normalized" if use_norm else "raw", "ratio": ratio, "p": p,
                     "gates": gates, "verdict": verdict})
    unstable = [w for d in (old, new) for w in d.get("warnings", [])
                if w.startswith("machine state changed during the run")]
    if unstable:
        # The machine moved under one of the runs: report, but do not gate.
        for r in rows:
            if r["verdict"] == "REGRESSED":
                r["verdict"] = "slower (unstable run)"
    regressed = [r for r in rows if r["verdict"] == "REGRESSED"]
    slower_prims = [r["figure"] for r in rows if r["figure"].startswith("primitive/")
                    and r["verdict"] in ("REGRESSED", "slower")]
    for r in regressed:
        r["why"] = slower_prims
    summ = {"figures": len(rows), "regressed": len(regressed),
            "improved": sum(r["verdict"] == "improved" for r in rows),
            "basis": basis, "hypervisor": virtual, "fail_above": fail_above,
            "inject_delay_ns": [old.get("inject_delay_ns"), new.get("inject_delay_ns")],
            "unstable": unstable}
    return rows, summ, 1 if regressed else 0


def format_rows(rows, summ):
    def ns(v):
        return "-" if v is None else (f"{v / 1000:.2f}us" if v >= 1000 else f"{v:.0f}ns")
    lines = [f"{'figure':44s} {'old':>9s} {'new':>9s} {'raw':>6s} {'basis':>10s} {'ratio':>6s} "
             f"{'p':>8s}  verdict"]
    for r in rows:
        lines.append(f"{r['figure']:44s} {ns(r['old_median']):>9s} {ns(r['new_median']):>9s} "
                     f"{r['raw_ratio']:>6.3f} {r['basis']:>10s} {r['ratio']:>6.3f} {r['p']:>8.1e}  "
                     f"{r['verdict']}{'' if r['gates'] else ' (not gating)'}")
        if r.get("why"):
            lines.append(f"{'':44s}   slower primitives: {', '.join(r['why'])}")
    for w in summ.get("unstable", []):
        lines.append(f"warning: {w}")
    lines.append(f"{summ['regressed']} regressed, {summ['improved']} improved of {summ['figures']} "
                 f"figures (fail above {summ['fail_above']:.0%}, p < {ALPHA}; basis {summ['basis']}"
                 f"{', hypervisor' if summ['hypervisor'] else ''})")
    return "\n".join(lines)


def compare_main(args):
    old, new = load(args.old), load(args.new)
    rows, summ, code = compare(old, new, args.fail_above, getattr(args, "basis", "auto"))
    print(format_rows(rows, summ))
    return code
