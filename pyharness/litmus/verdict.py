"""Verdicts in litmus7's convention, and what the controls let a run say.

For each test and placement: the histogram of what the executions that
raced a write came to (forbidden outcomes marked `*>`), Positive (the
executions with a forbidden outcome, raced or not: a torn run after the
write is forbidden all the more) and Negative (the raced executions with
an allowed one), `Observation NAME Never|Sometimes|Always P N`, whether
the condition (a forbidden outcome exists) `is validated`, Hash= of the
definition and the time.  Each outcome is marked forbidden or allowed by
the protocol's own assumption (the test's `forbidden`) and by each
vendor's rule (spec.LitmusTest.vendor_rules).

The controls: the positive control must stay Never over at least
POSITIVE_MIN raced executions; the negative control must see a forbidden
outcome, or the run could not see tearing and none of its Never verdicts
is trusted ("inconclusive").
"""
from .spec import OUTCOMES

POSITIVE_MIN = 10 ** 8           # raced executions the positive control's Never rests on


def cpu_vendor():
    """"intel", "amd", or None: whose rule this CPU answers to."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    v = line.split(":", 1)[1].strip()
                    return {"GenuineIntel": "intel", "AuthenticAMD": "amd", "HygonGenuine": "amd"}.get(v)
    except OSError:
        pass
    return None


def judge(test, res, vendor=None):
    """The verdict dict of one test's result on one placement.  vendor:
    whose rule this CPU answers to (its breaking is vendor_rule_broken)."""
    win = res["counts"].get("window", {})
    out = res["counts"].get("outside", {})
    forb = set(test.forbidden) | {"crashed"}
    positive = sum(n for o, n in win.items() if o in forb) + sum(n for o, n in out.items() if o in forb)
    negative = sum(n for o, n in win.items() if o not in forb)
    observation = "Never" if positive == 0 else "Always" if negative == 0 else "Sometimes"
    rules = test.vendor_rules()
    marks = {o: {"protocol": "forbidden" if o in forb else "allowed",
                 **{v: r.get(o, "allowed") for v, r in rules.items()}}
             for o in list(OUTCOMES) + ["crashed"]}
    el = res.get("elapsed_s") or 0.0
    fl = res.get("floor") or {}
    rate = res.get("trials", 0) / el if el else 0.0
    floor_rate = fl.get("trials", 0) / fl["elapsed_s"] if fl.get("elapsed_s") else 0.0
    broke = sorted({o for o in set(win) | set(out)
                    if (win.get(o) or out.get(o)) and o in forb and vendor in rules
                    and marks.get(o, {}).get(vendor) == "forbidden"})
    return {"test": test.name, "hash": test.hash, "control": test.control,
            "condition": "exists (" + r" \/ ".join(f"outcome={o}" for o in sorted(forb)) + ")",
            "positive": positive, "negative": negative, "observation": observation,
            "validated": positive > 0, "raced": sum(win.values()),
            "histogram": {o: n for o, n in sorted(win.items(), key=lambda kv: -kv[1])},
            "outside": out, "marks": {o: m for o, m in marks.items() if o in win or o in out},
            "vendor_rule_broken": broke,
            "trials": res.get("trials", 0), "trials_per_s": round(rate, 1),
            "floor_trials_per_s": round(floor_rate, 1),
            "floor_ratio": round(rate / floor_rate, 3) if floor_rate else None,
            "time_s": round(res.get("wall_s", el), 3), "first": res.get("first"),
            "traps_handled": res.get("traps_handled", 0), "stale_int3": res.get("stale_int3", 0),
            "crashed": res.get("crashed")}


def controls(verdicts):
    """What the controls let the run say: {"negative": seen | not seen |
    not run, "positive": clean | failed | too few | not run, "trusted":
    whether a Never of this run is trusted, "why"}."""
    neg = [v for v in verdicts if v["control"] == "negative"]
    pos = [v for v in verdicts if v["control"] == "positive"]
    out = {"negative": "not run", "positive": "not run", "trusted": False}
    if neg:
        out["negative"] = "seen" if all(v["positive"] > 0 for v in neg) else "not seen"
    if pos:
        if any(v["positive"] for v in pos):
            out["positive"] = "failed"
        elif min(v["raced"] for v in pos) < POSITIVE_MIN:
            out["positive"] = "too few"
        else:
            out["positive"] = "clean"
    out["trusted"] = out["negative"] == "seen"
    if out["negative"] == "not seen":
        out["why"] = ("the negative control showed no torn outcome in its budget: this run could "
                      "not see tearing (a loaded box may hide it), so no Never is trusted")
    elif out["negative"] == "not run":
        out["why"] = "the negative control did not run: no Never is trusted"
    return out


def litmus7(v, place):
    """One verdict as litmus7 prints a test's result."""
    lines = [f"Test {v['test']} Allowed  (on {place})",
             f"Histogram ({len(v['histogram'])} states)"]
    forb = {o for o, m in v["marks"].items() if m["protocol"] == "forbidden"}
    for o, n in v["histogram"].items():
        mark = "*>" if o in forb else ":>"
        lines.append(f"{n:<12d}{mark}outcome={o};")
    for o, n in sorted(v["outside"].items()):
        mark = "*>" if o in forb else ":>"
        lines.append(f"{n:<12d}{mark}outcome={o}; (after the write: raced nothing)")
    lines.append("Ok" if v["validated"] else "No")
    lines.append("")
    lines.append("Witnesses")
    lines.append(f"Positive: {v['positive']}, Negative: {v['negative']}")
    lines.append(f"Condition {v['condition']} is {'' if v['validated'] else 'NOT '}validated")
    lines.append(f"Hash={v['hash']}")
    lines.append(f"Observation {v['test']} {v['observation']} {v['positive']} {v['negative']}")
    lines.append(f"Time {v['test']} {v['time_s']:.2f}")
    if v.get("crashed"):
        lines.append(f"# the worker {v['crashed']}: counted as one crashed outcome")
    return "\n".join(lines)
