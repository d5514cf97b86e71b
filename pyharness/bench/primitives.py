"""The primitives a floor is made of, timed in C on pinned threads."""

from .._ffi import lib
from ..engine import SYNCS, Config, Engine, available_syncs
from ..errors import UnsupportedError, check
from .constants import POKES
from .pinning import _Spinner, _handoff, _ns_per_op, _on_cpus, _pingpong


# ---------------------------------------------------------------------------
# Primitives: one sample of each per round

class _Primitives:
    def __init__(self, cpus, plan, shared_cpu):
        self.c0 = cpus[0]
        self.c1 = cpus[1] if len(cpus) > 1 and cpus[1] != cpus[0] else None
        self.cpus = cpus
        self.shared_cpu = shared_cpu
        self.plan = plan
        self.syncs = available_syncs()
        self.membarrier = bool(lib.ph_membarrier_sync_core_supported())
        self.pokes = []
        self.skipped = {}             # what is not measured here -> why
        for sync in SYNCS:
            if sync not in self.syncs:
                self.skipped[f"sync {sync}"] = "this CPU lacks it (probed with CPUID)"
        if not self.membarrier:
            self.skipped["membarrier SYNC_CORE (upstream style)"] = \
                "this kernel does not offer MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE"
        for poke in POKES:            # which poke methods this process may use
            try:
                with Engine(Config(cpus=[self.c0], sites=16, poke=poke, trace_len=0)):
                    self.pokes.append(poke)
            except UnsupportedError as exc:
                self.skipped[f"poke {poke}"] = str(exc)

    def names(self):
        out = [f"sync_{s}" for s in self.syncs]
        if self.membarrier:
            out.append("membarrier_sync_core")
        out += ["mprotect_pair", "alias_write"] + [f"poke_{p}" for p in self.pokes]
        out += ["int3_round_trip", "cacheline_round_trip", "handoff_round_trip"]
        return out

    def measure(self, progress):
        """One sample (ns/op) of every primitive."""
        s, c0 = {}, self.c0
        progress("primitives: sync_one")
        for sync in self.syncs:
            iters = 200 if sync == "cpuid" else 5000
            s[f"sync_{sync}"] = _on_cpus([c0], lambda i, sy=sync: _ns_per_op(
                lambda it, ns: lib.ph_bench_sync(SYNCS[sy], it, ns), iters, "ph_bench_sync"))[0]
        progress("primitives: membarrier, mprotect, poke (another thread running)")
        with _Spinner([] if self.c1 is None else [self.c1]):
            if self.membarrier:
                s["membarrier_sync_core"] = _on_cpus([c0], lambda i: _ns_per_op(
                    lib.ph_bench_membarrier, 100, "ph_bench_membarrier"))[0]
            s["mprotect_pair"] = _on_cpus([c0], lambda i: _ns_per_op(
                lib.ph_bench_mprotect, 100, "ph_bench_mprotect"))[0]
            for poke in self.pokes:
                with Engine(Config(cpus=[c0], sites=self.plan.layout, poke=poke,
                                   trace_len=0)) as e:
                    iters = 100 if poke == "mprotect" else 4000
                    s[f"poke_{poke}"] = _on_cpus([c0], lambda i: _ns_per_op(
                        lambda it, ns: lib.ph_bench_poke(e._e, it, ns), iters, "ph_bench_poke"))[0]
        s["alias_write"] = _on_cpus([c0], lambda i: _ns_per_op(
            lib.ph_bench_alias_write, 20000, "ph_bench_alias_write"))[0]
        progress("primitives: INT3 round trip")
        with Engine(Config(cpus=[c0], sites=64, poke="rwx" if "rwx" in self.pokes else "alias",
                           bp="native", trace_len=0)) as e:
            def trap(i):
                check(lib.ph_thread_register(e._e, 0, lib.PH_ROLE_PRIMARY), "ph_thread_register")
                try:
                    return _ns_per_op(lambda it, ns: lib.ph_bench_trap(e._e, it, ns), 200,
                                      "ph_bench_trap")
                finally:
                    lib.ph_thread_unregister(e._e, 0)
            s["int3_round_trip"] = _on_cpus([c0], trap)[0]
        progress("primitives: cross-CPU round trips")
        a, b = self.cpus[0], self.cpus[1] if len(self.cpus) > 1 else self.cpus[0]
        iters = 50 if self.shared_cpu else 5000
        s["cacheline_round_trip"] = _pingpong(a, b, iters)
        s["handoff_round_trip"] = _handoff([a, b], iters // 10)
        return s
