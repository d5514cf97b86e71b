"""Running litmus tests: each in a worker process of its own (worker.py),
its counts in a memfd this process maps too, so that a worker killed by
its own wild jump, or hung, still leaves what it counted, and its death is
an outcome of the test (`crashed`), not pyharness's."""
import json
import mmap
import os
import signal
import subprocess
import sys
import time

from .._ffi import ffi, lib
from .spec import OUTCOME_NAMES

GRACE_S = 10.0


def _result(buf):
    r = ffi.cast("struct ph_lit_result *", ffi.from_buffer(buf))
    if r.magic == 0:            # the worker died before it began
        return None
    counts = {w: {OUTCOME_NAMES[i]: int(r.counts[k][i]) for i in range(lib.PH_LIT_NOUT)
                  if r.counts[k][i]} for k, w in ((1, "window"), (0, "outside"))}
    first = None
    if r.first_signo:
        signo = int(ffi.cast("int64_t", r.first_signo))
        first = {"signal": ("none (a value)" if signo < 0 else signal.Signals(signo).name),
                 "rip": hex(r.first_rip) if r.first_rip else None,
                 "value": hex(r.first_value),
                 "bytes": bytes(r.first_bytes).hex(" ") if any(r.first_bytes) else None}
    return {"done": bool(r.done), "trials": int(r.trials), "elapsed_s": r.elapsed_ns / 1e9,
            "counts": counts, "traps_handled": int(r.traps_handled), "stale_int3": int(r.stale_int3),
            "stuck_signals": int(r.stuck_sent), "first": first,
            "floor": {"trials": int(r.floor_trials), "elapsed_s": r.floor_elapsed_ns / 1e9,
                      "torn": int(r.floor_torn)}}


def run_one(test, writer, execs, seconds, stuck=1.0, floor=0.2):
    """One test on one placement: a dict of what was counted, or of why
    nothing could be ({"unavailable": reason})."""
    size = ffi.sizeof("struct ph_lit_result")
    fd = os.memfd_create("pyharness-litmus-result")
    try:
        os.ftruncate(fd, size)
        req = {"toml": test.text, "path": test.path, "fd": fd, "writer": writer,
               "execs": list(execs), "seconds": seconds, "stuck": stuck, "floor": floor}
        t0 = time.monotonic()
        from ..spawn import worker_env
        child = subprocess.Popen([sys.executable, "-m", "pyharness.litmus.worker"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, pass_fds=(fd,), text=True, **worker_env())
        hung = False
        try:
            out, err = child.communicate(json.dumps(req), timeout=seconds + floor + GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            out, err = child.communicate()
            hung = True
        wall = time.monotonic() - t0
        with mmap.mmap(fd, size) as mm:
            res = _result(mm) or {"done": False, "counts": {"window": {}, "outside": {}}}
    finally:
        os.close(fd)
    reply = {}
    for line in (out or "").splitlines():
        try:
            reply = json.loads(line)
        except ValueError:
            continue
    if reply.get("unavailable"):
        return {"unavailable": reply["unavailable"]}
    if reply.get("error"):
        return {"error": reply["error"]}
    rc = child.returncode
    res["wall_s"] = round(wall, 3)
    if hung or (rc is not None and rc < 0) or not res.get("done"):
        # The worker's death is the test's outcome: a landing outside the
        # region, or a hang nobody left.
        why = "hung (killed after its time and grace)" if hung else \
            f"killed by {signal.Signals(-rc).name}" if rc and rc < 0 else f"exited {rc}"
        res["crashed"] = why
        res["counts"].setdefault("window", {})
        res["counts"]["window"]["crashed"] = 1
        if err and not hung:
            res["stderr"] = err[-500:]
    return res
