"""A litmus run: tests x placements, each in its worker (run.py), judged
(verdict.py), with the controls always in, into one document
("pyharness.litmus/1", published schema litmus.schema.json)."""
import os
import time

from .. import errors
from ..machine import machine_info
from ..platform import evidence
from ..platform.placement import _int
from . import run, spec, verdict

SCHEMA = "pyharness.litmus/1"


def _where(c):
    base = f"/sys/devices/system/cpu/cpu{c}/topology"
    return (_int(os.path.join(base, "physical_package_id")), _int(os.path.join(base, "die_id")),
            _int(os.path.join(base, "core_id")))


def relation(a, b):
    """How CPU b sits from CPU a: smt, same-die, cross-die, cross-package."""
    pa, da, ca = _where(a)
    pb, db, cb = _where(b)
    if pa != pb:
        return "cross-package"
    if da is not None and db is not None and da != db:
        return "cross-die"
    if ca is not None and ca == cb:
        return "smt"
    return "same-die"


def placements(cpus):
    """[(name, writer, [executor])]: the writer on the first CPU, one
    executor per relation this box has (the first CPU in each)."""
    w = cpus[0]
    seen = {}
    for c in cpus[1:]:
        seen.setdefault(relation(w, c), c)
    order = ("smt", "same-die", "cross-die", "cross-package")
    return [(r, w, [seen[r]]) for r in order if r in seen]


def replay(test, pair, seconds):
    src = f"--only {test.name}" if test.path and test.path.startswith(spec.SHIPPED_DIR) \
        else f"--test {test.path}"
    return f"pyharness litmus {src} --cpus {','.join(str(c) for c in pair)} --time {seconds:g}"


def run_suite(tests, cpus, seconds, positive_min=verdict.POSITIVE_MIN, positive_cap=150.0,
              progress=None):
    """Every test on every placement.  The positive control runs until
    positive_min raced executions, or positive_cap seconds."""
    places = placements(cpus)
    if not places and all(t.side != "same-thread" for t in tests):
        raise errors.UnsupportedError("litmus tests need two CPUs (a writer and an executor): "
                                      f"only CPU {cpus[0]} is usable here")
    rows, t0 = [], time.monotonic()
    vendor = verdict.cpu_vendor()
    for test in tests:
        where = [("same-thread", cpus[0], [])] if test.side == "same-thread" else places
        if not where:
            rows.append({"test": test.name, "placement": "-", "cpus": [cpus[0]],
                         "replay": replay(test, [cpus[0]], seconds),
                         "unavailable": "needs two CPUs (a writer and an executor)"})
        for name, w, execs in where:
            if progress:
                progress(f"litmus {test.name} on {name} (CPUs {w}{''.join(',' + str(e) for e in execs)})")
            res = run.run_one(test, w, execs, seconds)
            if test.control == "positive" and "counts" in res:
                res = _extend(test, w, execs, seconds, res, positive_min, positive_cap)
            row = {"test": test.name, "placement": name, "cpus": [w] + list(execs),
                   "replay": replay(test, [w] + list(execs), seconds)}
            if "unavailable" in res or "error" in res:
                row["unavailable"] = res.get("unavailable") or res.get("error")
            else:
                row.update(verdict.judge(test, res, vendor))
            rows.append(row)
    judged = [r for r in rows if "observation" in r]
    ctl = verdict.controls(judged)
    for r in judged:
        r["trusted"] = r["observation"] != "Never" or ctl["trusted"]
    return {"schema": SCHEMA, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "vendor": vendor,
            "seconds_per_test": seconds, "elapsed_s": round(time.monotonic() - t0, 3),
            "placements": [{"name": n, "cpus": [w] + e} for n, w, e in places],
            "tests": [{"name": t.name, "title": t.doc.get("title"), "relies_on": t.doc.get("relies_on"),
                       "control": t.control, "shape": t.describe(), "hash": t.hash,
                       "file": t.path} for t in tests],
            "controls": ctl, "verdicts": rows, "evidence": evidence.collect(cpus),
            "machine": machine_info()}


def _merge(a, b):
    out = dict(b)
    out["counts"] = {}
    for w in ("window", "outside"):
        d = dict(a["counts"].get(w, {}))
        for o, n in b["counts"].get(w, {}).items():
            d[o] = d.get(o, 0) + n
        out["counts"][w] = d
    for k in ("trials", "traps_handled", "stale_int3", "stuck_signals"):
        out[k] = a.get(k, 0) + b.get(k, 0)
    out["elapsed_s"] = a.get("elapsed_s", 0) + b.get("elapsed_s", 0)
    out["wall_s"] = a.get("wall_s", 0) + b.get("wall_s", 0)
    out["first"] = a.get("first") or b.get("first")
    out["crashed"] = a.get("crashed") or b.get("crashed")
    return out


def _extend(test, w, execs, seconds, res, want, cap):
    """More of the positive control until its Never rests on `want` raced
    executions (or the cap): one more worker, sized by the rate so far."""
    spent = res.get("elapsed_s", 0.0)
    while True:
        raced = sum(res["counts"].get("window", {}).values())
        if raced >= want or spent >= cap or res.get("crashed"):
            return res
        rate = raced / max(spent, 1e-3)
        more = min(cap - spent, max(1.0, 1.1 * (want - raced) / max(rate, 1.0)))
        nxt = run.run_one(test, w, execs, more)
        if "counts" not in nxt:
            return res
        res = _merge(res, nxt)
        spent += nxt.get("elapsed_s", more)
