"""The mixed scenario: its component scenarios in turn, in segments of the
duration, merged into one report."""
from ..scenarios import SCENARIOS
from .spec import resolve


def run_mixed(opts, scenario, progress, log=None):
    """Segments of the component scenarios, in turn, until the duration is used."""
    from ..runner import run_stress
    segs = SCENARIOS[scenario]["segments"]
    total = opts.duration if opts.duration is not None else 3.0 * len(segs)
    per = max(total / (2 * len(segs)), 0.5)
    parts, spent, k = [], 0.0, 0
    while spent < total - 1e-9:
        name = segs[k % len(segs)]
        d = min(per, total - spent)
        spec = resolve(name, opts, duration=d)
        spec.config.seed = opts.seed + k
        spec.stop_on_violation = opts.stop_on_violation
        rep = run_stress(spec, progress=progress, log=log)
        rep["segment"] = k
        parts.append(rep)
        spent += d
        k += 1
        if rep["status"] in ("interrupted", "hung", "crashed") or (
                spec.stop_on_violation and rep["verdict"] == "fail"):
            break
    return merge_reports(parts, scenario, opts)


def merge_reports(parts, scenario, opts):
    """One report of a mixed run's segments (opts: its RunOptions)."""
    first = parts[0]
    violations = [dict(v, segment=p["segment"], segment_scenario=p["scenario"])
                  for p in parts for v in p["violations"]]
    counts = {}
    for p in parts:
        for name, n in p["violation_counts"].items():
            counts[name] = counts.get(name, 0) + n
    totals = {"sites_patched": sum(p["totals"].get("sites_patched", 0) for p in parts),
              "exec": [sum(p["totals"].get("exec", [0, 0])[i] for p in parts) for i in (0, 1)],
              "nmis": sum(p["totals"].get("nmis", 0) for p in parts),
              "violations": sum(counts.values()),
              "bp_hits": {}}
    for p in parts:
        for k, v in p["totals"].get("bp_hits", {}).items():
            totals["bp_hits"][k] = totals["bp_hits"].get(k, 0) + v
    evidence = {}
    for p in parts:    # evidence adds up across segments; costs are per engine
        for k, v in p.get("checks", {}).get("evidence", {}).items():
            if isinstance(v, int) and not k.endswith("_ns"):
                evidence[k] = evidence.get(k, 0) + v
            else:
                evidence.setdefault(k, v)
    gaps = []
    for p in parts:
        gaps += [g for g in p.get("checks", {}).get("not_observable", []) if g not in gaps]
    statuses = [p["status"] for p in parts]
    status = next((s for s in ("crashed", "hung", "interrupted", "aborted") if s in statuses), "complete")
    codes = [p["exit_code"] for p in parts]
    exit_code = 130 if 130 in codes else max(codes)
    from ..report import invariant_table
    rep = dict(first)
    verdict = "fail" if violations or exit_code not in (0, 130) else (
        "incomplete" if status == "interrupted" else "pass")
    rep.update({"scenario": scenario, "verdict": verdict,
                "status": status, "exit_code": exit_code, "violations": violations,
                "violation_counts": counts, "invariants": invariant_table(counts),
                "totals": totals, "elapsed_s": sum(p["elapsed_s"] for p in parts),
                "checks": {"evidence": evidence, "not_observable": gaps},
                "health": {"segments": [p.get("health") for p in parts]},
                # the first segment's coverage stays; what the box reduced, in any segment
                "stress_reduced": [dict(r, name=f"segment {p['segment']} ({p['scenario']}): {r['name']}")
                                   for p in parts for r in p.get("stress_reduced") or []],
                "segments": [{k: p[k] for k in ("scenario", "verdict", "status", "exit_code", "totals",
                                                 "distributions", "config", "replay", "elapsed_s")}
                             for p in parts],
                "replay": "pyharness run " + " ".join(
                    ["--scenario", scenario, "--seed", str(opts.seed)] +
                    (["--protocol", opts.protocol] if opts.protocol != "rfc" else []) +
                    (["--duration", f"{opts.duration:g}"] if opts.duration is not None else []) +
                    (["--cpus", opts.cpus] if opts.cpus else []))})
    return rep
