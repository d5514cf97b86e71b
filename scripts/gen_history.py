#!/usr/bin/env python3
"""Generate a realistic results history at the size a fleet produces, with
steps whose positions are known: for the scale benchmark of the store,
`history`, `history --check` and `report --store` (issue 27), and for the
peer check of the change points (scripts/otava_peer.py).

    scripts/gen_history.py --results 10000 --store /tmp/h10k.db --truth /tmp/h10k.json
    scripts/gen_history.py --results 500 --out-dir /tmp/h500     # files for `store import`

Each result is a real `bench --quick` result (tests/data/bench-vm-30.json.gz,
one of the 30 of one build on our VM, or all of them in turn with --cycle,
whose own spread between runs is then part of the noise) with every
figure's samples scaled
by one factor per result and figure: lognormal noise (--noise, 3%), times
the steps in force (--step INDEX:FACTOR, default a +15% step of every
protocol figure 20 results before the end; primitives never step).  Results
are an hour apart.  The truth file lists each step's index, factor and the
figures it moved.
"""
import argparse
import copy
import datetime as dt
import gzip
import json
import math
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "tests", "data", "bench-vm-30.json.gz")


def steps_in_force(steps, i):
    f = 1.0
    for at, factor in steps:
        if i >= at:
            f *= factor
    return f


def make(base, i, t0, noise, steps, rng):
    d = copy.deepcopy(base)
    d["started"] = (t0 + dt.timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%S+0000")
    step = steps_in_force(steps, i)
    for name, f in d["figures"].items():
        k = math.exp(rng.gauss(0.0, noise)) * (1.0 if name.startswith("primitive/") else step)
        f["samples"] = [x * k for x in f["samples"]]
        if f.get("ratio_to_floor_samples"):
            f["ratio_to_floor_samples"] = [x * k for x in f["ratio_to_floor_samples"]]
            if f.get("ratio_to_floor") is not None:
                f["ratio_to_floor"] *= k
        s = f.get("summary") or {}
        for q in ("median", "mean", "min", "max", "p10", "p90"):
            if isinstance(s.get(q), (int, float)):
                s[q] *= k
    d["generated"] = {"index": i, "step_factor": step}
    return d


def parse_step(text):
    at, _, factor = text.partition(":")
    return int(at), float(factor)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=int, default=500)
    ap.add_argument("--store", help="write into this store (a path or URL)")
    ap.add_argument("--out-dir", help="write one JSON file per result here")
    ap.add_argument("--truth", help="write the steps' positions here (JSON)")
    ap.add_argument("--noise", type=float, default=0.03, help="lognormal sigma between results")
    ap.add_argument("--step", action="append", type=parse_step, default=None,
                    metavar="INDEX:FACTOR", help="a step from result INDEX on (repeatable)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cycle", action="store_true",
                    help="take the 30 real results in turn (their own spread added to the noise)")
    ap.add_argument("--data", default=DATA, help="the real bench results to start from")
    a = ap.parse_args(argv)
    steps = a.step if a.step is not None else [(a.results - 20, 1.15)]
    with gzip.open(a.data, "rt") as f:
        real = json.load(f)["results"]
    rng = random.Random(a.seed)
    t0 = dt.datetime(2026, 1, 1)
    store = None
    if a.store:
        from pyharness.history.store import open_store
        store = open_store(a.store, announce=False)
    if a.out_dir:
        os.makedirs(a.out_dir, exist_ok=True)
    docs = []
    for i in range(a.results):
        d = make(real[i % len(real)] if a.cycle else real[0], i, t0, a.noise, steps, rng)
        if a.out_dir:
            with open(os.path.join(a.out_dir, f"r{i:05d}.json"), "w") as f:
                json.dump(d, f)
        if store is not None:
            docs.append(d)
            if len(docs) == 200 or i == a.results - 1:
                store.add_many(docs)
                docs = []
        if sys.stderr.isatty() and i % 100 == 0:
            sys.stderr.write(f"\r{i + 1}/{a.results}")
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    protocol = sorted(n for n in real[0]["figures"] if not n.startswith("primitive/"))
    truth = {"results": a.results, "noise": a.noise, "seed": a.seed,
             "steps": [{"index": at, "factor": fa, "figures": protocol} for at, fa in steps]}
    if a.truth:
        with open(a.truth, "w") as f:
            json.dump(truth, f, indent=1)
    print(json.dumps({k: truth[k] for k in ("results", "noise", "steps")})[:300])


if __name__ == "__main__":
    main()
