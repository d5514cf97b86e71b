#!/usr/bin/env python3
"""Peer check of the change points (issue 27): pyharness's (PELT, then the
significance tests of pyharness/history/changes.py) beside Apache Otava's
(E-Divisive means with a t-test, `otava.analysis.compute_change_points`) on
the same series, generated with steps at known results
(scripts/gen_history.py): for each, the steps found at the right index
(within --slack results), the false alarms, and the time.

    scripts/otava_peer.py --otava-python /tmp/otava-venv/bin/python

Otava is not a dependency of pyharness (it pins its own stack): it runs in
the interpreter named, which must `import otava` (pip install apache-otava
in a virtual environment of its own).  Both judge each figure's judged
value per result (under a hypervisor: the cost relative to the floor).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

OTAVA = r"""
import json, sys, time
from otava.analysis import compute_change_points
req = json.load(sys.stdin)
out = {}
t0 = time.monotonic()
for name, values in req["series"].items():
    cps, _ = compute_change_points(values, window_len=req["window"], max_pvalue=req["pvalue"],
                                   min_magnitude=req["magnitude"])
    out[name] = sorted(int(c.index) for c in cps)
json.dump({"cps": out, "seconds": time.monotonic() - t0}, sys.stdout)
"""


def tally(found, steps, slack):
    hit = sum(1 for s in steps if any(abs(c - s) <= slack for c in found))
    false = sum(1 for c in found if not any(abs(c - s) <= slack for s in steps))
    return hit, false


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--otava-python", default=sys.executable)
    ap.add_argument("--results", type=int, default=500)
    ap.add_argument("--step", action="append", default=None, metavar="INDEX:FACTOR")
    ap.add_argument("--slack", type=int, default=2, help="results off the true index still counted right")
    ap.add_argument("--seeds", type=int, default=3, help="generated histories (one noise draw each)")
    ap.add_argument("--json", help="write the table here")
    a = ap.parse_args(argv)
    steps = a.step or ["100:1.15", "250:0.88", "400:1.20", f"{a.results - 20}:1.15"]
    idx = [int(s.split(":")[0]) for s in steps]
    from pyharness.history.series import build_history
    from pyharness.history.store import open_store
    tot = {"pyharness": [0, 0, 0.0], "otava": [0, 0, 0.0]}
    nseries = 0
    for seed in range(1, a.seeds + 1):
        work = tempfile.mkdtemp(prefix="ph-peer-")
        db = os.path.join(work, "h.db")
        subprocess.run([sys.executable, os.path.join(HERE, "gen_history.py"), "--results", str(a.results),
                        "--store", db, "--seed", str(seed)] + [x for s in steps for x in ("--step", s)],
                       check=True, stdout=subprocess.DEVNULL)
        with open_store(db, announce=False) as st:
            t0 = time.monotonic()
            hist = build_history(st)
            ours_s = time.monotonic() - t0
        series = {s["figure"]: s for s in hist["series"] if s["gates"]}
        req = {"series": {n: [p["value"] for p in s["points"]] for n, s in series.items()},
               "window": 50, "pvalue": 0.001, "magnitude": 0.10}
        r = subprocess.run([a.otava_python, "-c", OTAVA], input=json.dumps(req), text=True,
                           capture_output=True)
        if r.returncode:
            raise SystemExit(f"otava: {r.stderr.strip()[-400:]}")
        theirs = json.loads(r.stdout)
        tot["pyharness"][2] += ours_s
        tot["otava"][2] += theirs["seconds"]
        for name, s in series.items():
            nseries += 1
            for who, found in (("pyharness", [c["index"] for c in s["change_points"]]),
                               ("otava", theirs["cps"][name])):
                h, f = tally(found, idx, a.slack)
                tot[who][0] += h
                tot[who][1] += f
    want = nseries * len(idx)
    rows = {who: {"steps_found": v[0], "steps": want, "false_alarms": v[1], "seconds": round(v[2], 2)}
            for who, v in tot.items()}
    print(f"{a.seeds} histories of {a.results} results, {nseries} judged series, steps at "
          f"{', '.join(steps)} (within {a.slack} results counted right)")
    print(f"{'':10s} {'steps found':>12s} {'false alarms':>13s} {'seconds':>8s}")
    for who, r_ in rows.items():
        print(f"{who:10s} {r_['steps_found']:>5d} of {r_['steps']:<5d} {r_['false_alarms']:>13d} "
              f"{r_['seconds']:>8.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"steps": steps, "results": a.results, "seeds": a.seeds, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
