#!/usr/bin/env python3
"""The scale benchmark of the results store (issue 27): at N results
(scripts/gen_history.py), the time and peak memory of `store import` of one
more result, `history`, `history --check` and `report --store`, each run as
a user runs it (a fresh process, imports included).

    scripts/bench_history.py --results 500 10000 --json b.json [--store S]

Targets on our 2-vCPU VM: at 10,000 results `history` and `history --check`
within 5 s, `store import` of one result within 1 s, `report --store`
within 60 s and a page of at most 5 MB; at 500 results each within 2 s.
The result is a `pyharness.bench/1` document whose figures are these
timings (kind "tool"), so `--store S` (or `pyharness store import b.json`)
tracks the tool's own speed in its history like any other figure.
Exit 1 when a target is missed.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TARGETS = {500: {"import": 2.0, "history": 2.0, "check": 2.0, "report": 2.0},
           10000: {"import": 1.0, "history": 5.0, "check": 5.0, "report": 60.0}}
PAGE_BUDGET = 5 * 1024 * 1024


def timed(argv):
    """(seconds, peak RSS in MiB, return code) of one command."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace")
    if p.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(argv)}: exit {p.returncode}: {err.strip()[-300:]}")
    return time.monotonic() - t0, ru.ru_maxrss / 1024.0, p.returncode


def measure(n, work, repeat=3, keep=None):
    """{command: {"seconds": [...], "peak_mib": max, ...}} at n results."""
    store = keep or os.path.join(work, f"h{n}.db")
    if not os.path.exists(store):
        subprocess.run([sys.executable, os.path.join(HERE, "gen_history.py"), "--results", str(n),
                        "--store", store, "--truth", store + ".truth.json"], check=True,
                       stdout=subprocess.DEVNULL)
    one = os.path.join(work, "one")
    subprocess.run([sys.executable, os.path.join(HERE, "gen_history.py"), "--results", "1",
                    "--seed", "99", "--out-dir", one, "--step", "0:1.0"], check=True,
                   stdout=subprocess.DEVNULL)
    ph = [sys.executable, "-m", "pyharness"]
    out = {}
    page = os.path.join(work, f"report{n}.html")
    cmds = {"history": ph + ["history", "--store", store],
            "check": ph + ["history", "--store", store, "--check"],
            "report": ph + ["report", "--store", store, "--out", page]}
    for _ in range(repeat):
        scratch = os.path.join(work, "scratch.db")
        shutil.copyfile(store, scratch)       # each import into the same N results
        s, mib, _ = timed(ph + ["store", "import", "--store", scratch,
                                os.path.join(one, "r00000.json")])
        out.setdefault("import", {"seconds": [], "peak_mib": 0.0})
        out["import"]["seconds"].append(s)
        out["import"]["peak_mib"] = max(out["import"]["peak_mib"], mib)
        os.unlink(scratch)
        for name, argv in cmds.items():
            s, mib, _ = timed(argv)
            out.setdefault(name, {"seconds": [], "peak_mib": 0.0})
            out[name]["seconds"].append(s)
            out[name]["peak_mib"] = max(out[name]["peak_mib"], mib)
    out["report"]["page_bytes"] = os.path.getsize(page)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=int, nargs="+", default=[500, 10000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", help="where the generated stores are kept (default: a temporary "
                                   "directory; name one to reuse them)")
    ap.add_argument("--json", help="write the pyharness.bench/1 document here")
    ap.add_argument("--store", help="and record it in this results store")
    a = ap.parse_args(argv)
    work = a.work or tempfile.mkdtemp(prefix="ph-bench-history-")
    os.makedirs(work, exist_ok=True)
    figures, missed = {}, []
    print(f"{'results':>8s} {'command':10s} {'median s':>9s} {'max s':>7s} {'peak MiB':>9s} "
          f"{'target s':>9s}  page")
    for n in a.results:
        m = measure(n, work, a.repeat)
        for name, r in m.items():
            med = statistics.median(r["seconds"])
            target = TARGETS.get(n, {}).get(name)
            ok = target is None or med <= target
            page = r.get("page_bytes")
            if page is not None and page > PAGE_BUDGET:
                ok = False
            if not ok:
                missed.append(f"{name} at {n}")
            print(f"{n:8d} {name:10s} {med:9.2f} {max(r['seconds']):7.2f} {r['peak_mib']:9.0f} "
                  f"{target if target else '-':>9}  "
                  + (f"{page / 2 ** 20:.2f} MiB" if page is not None else "") + ("" if ok else "  MISSED"))
            figures[f"tool/{name}/results={n}"] = {
                "kind": "tool", "unit": "s", "samples": r["seconds"],
                "config": {"results": n, "peak_mib": r["peak_mib"], "target_s": target,
                           **({"page_bytes": page} if page is not None else {})}}
    doc = {"schema": "pyharness.bench/1", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "quick": False, "figures": figures, "warnings": [],
           "machine": {"hostname": os.uname().nodename}}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1)
    if a.store:
        from pyharness.history.store import open_store
        with open_store(a.store) as st:
            st.add(doc, tags={"benchmark": "history-scale"})
    print("targets: " + ("all met" if not missed else "MISSED: " + ", ".join(missed)))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
