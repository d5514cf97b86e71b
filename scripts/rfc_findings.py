#!/usr/bin/env python3
"""Measure what the RFC as posted does, condition by condition, against
pyharness's fixed protocol on the same seeds and the same time.

    scripts/rfc_findings.py --runs 5 --seconds 5 --json f.json --md f.md

For each condition (the RFC selftest's, one at a time, then all together)
it runs `pyharness run --protocol rfc-as-posted ... --stop-on-violation`
once per seed, and `--protocol rfc` with the same options and seeds for the
full time; it prints, per condition, how many posted runs failed, which
findings were diagnosed (pyharness/diagnose.py) and how soon, and whether
the fixed protocol stayed clean.  Exit 0 when every fixed run was clean.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CONDITIONS = [
    ("plain: no NMIs, no aim", ["--nmi-rate", "0", "--aim", "none"]),
    ("NMIs 1000/s and aimed (rfc-native)", []),
    ("NMI mode", ["--nmi-mode"]),
    ("neighbour NMIs", ["--stress", "neighbour-nmi"]),
    ("sync-loop execution", ["--stress", "sync-loop-exec"]),
    ("primary execution after SYNC_0", ["--stress", "primary-exec"]),
    ("NMI lock held 1 us, paired sites, NMI mode",
     ["--stress", "paired", "--nmi-level", "3", "--batch", "2", "--nmi-mode"]),
    # Pairs outside NMI mode: a NMI that ran the lock before a round and traps
    # on the unlock helps the round finish and runs the new unlock -- any
    # native-breakpoint protocol, ours too (why the RFC's selftest uses NMI
    # mode).  Its fixed-protocol column is expected to fail (pair-matched).
    ("20 sessions per run", ["--sessions", "20"]),
    ("all together (rfc-selftest)", ["--scenario", "rfc-selftest"]),
]


def run(args, seconds, seed, stop):
    fd, out = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    cmd = [sys.executable, "-m", "pyharness", "run", "--duration", f"{seconds:g}",
           "--seed", str(seed), "--quiet", "--json", out] + args
    if stop:
        cmd += ["--stop-on-violation", "--deadline", "1", "--grace", "3"]
    try:
        subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
        with open(out) as f:
            rep = json.load(f)
    except (subprocess.TimeoutExpired, OSError, ValueError):
        rep = None
    finally:
        os.unlink(out)
    return rep


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--md", default=None)
    ap.add_argument("--only", default=None, help="comma list of condition numbers (1-based)")
    a = ap.parse_args()
    picked = CONDITIONS if not a.only else [CONDITIONS[int(k) - 1] for k in a.only.split(",")]
    rows = []
    for name, args in picked:
        posted, fixed = [], []
        for seed in range(1, a.runs + 1):
            rep = run(["--protocol", "rfc-as-posted"] + args, a.seconds, seed, stop=True)
            ids = sorted({f["id"] for f in (rep or {}).get("diagnosis", {}).get("findings", [])})
            posted.append({"seed": seed, "failed": bool(rep and rep["verdict"] == "fail"),
                           "findings": ids, "status": rep and rep["status"],
                           "first_s": rep and rep.get("first_evidence_s"),
                           "invariants": sorted((rep or {}).get("violation_counts", {})),
                           "replay": rep and rep.get("replay")})
            rep = run(["--protocol", "rfc"] + args, a.seconds, seed, stop=False)
            fixed.append({"seed": seed, "clean": bool(rep and rep["verdict"] == "pass"),
                          "sites": rep and rep["totals"].get("sites_patched"),
                          "invariants": sorted((rep or {}).get("violation_counts", {}))})
            sys.stderr.write(f"\r{name}: seed {seed}/{a.runs}".ljust(80))
        firsts = [p["first_s"] for p in posted if p["failed"] and p["first_s"] is not None]
        count = {}
        for p in posted:
            for f in p["findings"]:
                count[f] = count.get(f, 0) + 1
        rows.append({"condition": name, "args": args, "posted_failed": sum(p["failed"] for p in posted),
                     "runs": a.runs, "findings": count,
                     "first_s_median": statistics.median(firsts) if firsts else None,
                     "first_s_max": max(firsts) if firsts else None,
                     "fixed_clean": sum(f["clean"] for f in fixed),
                     "fixed_sites": sum(f["sites"] or 0 for f in fixed),
                     "posted": posted, "fixed": fixed})
    sys.stderr.write("\r" + " " * 80 + "\r")
    lines = ["| condition | RFC as posted: runs failed | findings (runs) | first evidence, median / max | "
             "fixed protocol: clean runs (sites) |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        f = ", ".join(f"{k} ({v})" for k, v in sorted(r["findings"].items())) or "-"
        t = (f"{r['first_s_median']:.2f} / {r['first_s_max']:.2f} s" if r["first_s_median"] is not None
             else "-")
        lines.append(f"| {r['condition']} | {r['posted_failed']}/{r['runs']} | {f} | {t} | "
                     f"{r['fixed_clean']}/{r['runs']} ({r['fixed_sites']}) |")
    table = "\n".join(lines)
    print(table)
    print(f"each run at most {a.seconds:g} s; seeds 1..{a.runs}; the posted runs stop at the first "
          f"evidence (deadline 1 s)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"schema": "pyharness.rfc-findings/1", "runs": a.runs, "seconds": a.seconds,
                       "rows": rows}, f, indent=1)
    if a.md:
        with open(a.md, "w") as f:
            f.write(table + "\n")
    return 0 if all(r["fixed_clean"] == r["runs"] for r in rows if "expected:" not in r["condition"]) \
        else 1


if __name__ == "__main__":
    sys.exit(main())
