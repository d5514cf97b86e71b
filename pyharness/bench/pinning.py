"""Running C loops on pinned threads: the harness of every measurement."""

import os
import threading

from .._ffi import ffi, lib
from ..engine import ctrl_c_deferred, spin_pauses_for
from ..errors import check
from ..stats import summary


# ---------------------------------------------------------------------------
# Running C loops on pinned threads

def _on_cpus(cpus, fn):
    """Run fn(index) on one thread per CPU in cpus, each pinned; return the
    results in order.  The threads spend their time in C (GIL released):
    bounded loops, so Ctrl-C waits for them (ctrl_c_deferred)."""
    out, errs = [None] * len(cpus), []

    def body(i):
        try:
            os.sched_setaffinity(0, {cpus[i]})
            out[i] = fn(i)
        except BaseException as exc:  # re-raised in the caller's thread
            errs.append(exc)
    ts = [threading.Thread(target=body, args=(i,), name=f"bench-{i}") for i in range(len(cpus))]
    with ctrl_c_deferred():
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    if errs:
        raise errs[0]
    return out


def _ns_per_op(cfn, iters, what):
    ns = ffi.new("uint64_t *")
    check(cfn(iters, ns), what)
    return ns[0] / iters


class _Spinner:
    """Threads of ours busy on other CPUs (one per CPU in `cpus`) while a primitive is timed, as the secondaries are during
    the protocol: mprotect then pays its TLB shootdown IPIs and membarrier
    its SYNC_CORE IPIs, one per CPU that runs our mm."""

    token = 0

    def __init__(self, cpus):
        self.cpus = list(cpus)

    def __enter__(self):
        _Spinner.token += 1
        self.tok = _Spinner.token

        def spin(cpu):
            os.sched_setaffinity(0, {cpu})
            lib.ph_bench_spin(self.tok)
        self.ts = [threading.Thread(target=spin, args=(c,), name=f"bench-spinner-{c}")
                   for c in self.cpus]
        try:
            with ctrl_c_deferred():
                for t in self.ts:
                    t.start()
        except KeyboardInterrupt:   # __exit__ runs only if __enter__ returns
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        lib.ph_bench_spin_stop(self.tok)     # every spinner waits for this token
        with ctrl_c_deferred():
            for t in self.ts:
                t.join()


def _membarrier(cpus, iters=40):
    """ns per membarrier SYNC_CORE from cpus[0] while threads of ours run on
    the other CPUs of `cpus` (what the upstream style pays per sync)."""
    others = sorted(set(cpus[1:]) - {cpus[0]})
    with _Spinner(others):
        return _on_cpus([cpus[0]], lambda i: _ns_per_op(
            lib.ph_bench_membarrier, iters, "ph_bench_membarrier"))[0]


def _handoff(cpus, iters, chunks=9):
    """One state hand-off as the protocol has it (leader's line out, one ack
    line per follower back), from cpus[0] to the followers on cpus[1:]:
    ns per round trip to the slowest follower, the median of `chunks`
    timed chunks of `iters` round trips."""
    lib.ph_bench_handoff_reset()
    lib.ph_bench_set_spin_pauses(spin_pauses_for(cpus))
    n = len(cpus) - 1

    def side(i):
        ns = ffi.new("uint64_t[]", chunks)
        check(lib.ph_bench_handoff(i, n, -1, iters, chunks, ns), "ph_bench_handoff")
        return [ns[k] / iters for k in range(chunks)]
    return summary(_on_cpus(cpus, side)[0])["median"]


def _pingpong(a, b, iters):
    lib.ph_bench_pingpong_reset()
    lib.ph_bench_set_spin_pauses(spin_pauses_for([a, b]))
    return _on_cpus([a, b], lambda i: _ns_per_op(
        lambda it, ns: lib.ph_bench_pingpong(i, it, ns), iters, "ph_bench_pingpong"))[0]
