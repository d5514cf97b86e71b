"""The figure matrix (protocol x poke x sync x secondaries, batches) and each
figure's floor model."""

import collections
import time

from ..engine import Config, Engine
from ..errors import BenchRunError
from ..stats import summary
from .constants import RAW_PER_RUN, ROUNDS, SINGLE_INSN, UPSTREAM_SYNCS
from .pinning import _handoff, _membarrier


# ---------------------------------------------------------------------------
# Protocol figures

class _Figure:
    """One protocol configuration, measured once per round."""

    def __init__(self, name, kind, cfg, floor_text):
        self.name, self.kind, self.cfg, self.floor_text = name, kind, cfg, floor_text
        self.nsites = None           # per run, set by the warm-up
        self.runs = []
        self.late_runs = 0

    def floor(self, prim, handoff, membarrier):
        """ns per site from the primitives alone (prim: this round's;
        handoff and membarrier: timed on this run's CPUs around it)."""
        c = self.cfg
        sync = prim[f"sync_{c.sync}"]
        poke = prim.get(f"poke_{c.poke}", 0.0)
        if self.kind == "upstream":
            # 3 x (membarrier SYNC_CORE to the others + the primary's own sync_one)
            return UPSTREAM_SYNCS * (membarrier + sync) + poke
        # Every participant runs sync_one once per round, the primary too,
        # in parallel on distinct CPUs; threads sharing a CPU take turns.
        rounds = ROUNDS * (handoff + _stacked(c.cpus) * sync)
        if c.poke == "mprotect":          # one mprotect pair per batch: amortized
            return (rounds + poke) / c.batch
        return rounds / c.batch + poke    # writes: per site

    def run_args(self):
        """The `pyharness run` options of this figure's configuration."""
        c = self.cfg
        return (f"--cpus {','.join(map(str, c.cpus))} --poke {c.poke} --sync {c.sync} "
                f"--bp {c.bp} --secondary-sync {c.secondary_sync} --batch {c.batch} "
                f"--site-kinds {','.join(c.kinds)} --nmi-rate 0")

    def run(self, prim, inject, nsites, progress_text, progress, handoff_iters):
        """One run; a run that its secondaries joined late is run again
        (at most twice; counted in the JSON as late_runs)."""
        for attempt in range(3):
            out = self.run_once(prim, inject, nsites, progress_text, progress, handoff_iters)
            if out["joined"] >= 0.9:
                break
            self.late_runs += 1
        return out

    def run_once(self, prim, inject, nsites, progress_text, progress, handoff_iters):
        progress(progress_text)
        cpus = self.cfg.cpus
        before = _handoff(cpus, handoff_iters) if len(cpus) > 1 else 0.0
        upstream = self.kind == "upstream"
        mb_before = _membarrier(cpus) if upstream else None
        self.cfg.inject_delay_ns = inject
        with Engine(self.cfg) as e:
            t0 = time.perf_counter()
            o = e.run(sites=nsites, verify=False)
            wall = time.perf_counter() - t0
            if o.status == "interrupted":
                raise KeyboardInterrupt
            if o.status != "complete" or o.view.violations():
                v = o.view.violations()
                raise BenchRunError(
                    f"{self.name}: a benchmark run ended {o.status}"
                    + (f" with {len(v)} violation(s), first: {v[0]}" if v else "")
                    + f"; reproduce with pyharness run {self.run_args()}")
            per_site = o.view.series("site_ns")
            c_ns = o.view.sh.t_end - o.view.sh.t_start
            # Secondaries that joined late: in the upstream style nobody waits
            # for them, and membarrier skips a CPU where no thread of ours
            # runs, so such a run is cheaper than the protocol can be.
            batches = max(1, o.view.counters(0)["rounds"] // ROUNDS)
            joined = min((o.view.counters(i)["acks"][0] for i in range(1, len(cpus))
                          if cpus[i] != cpus[0]), default=batches) / batches
        # The hand-off is timed on the run's CPUs just before and just after
        # the run (the CPUs still warm from it): its floor uses the mean.
        after = _handoff(cpus, handoff_iters) if len(cpus) > 1 else 0.0
        handoff = (before + after) / 2
        # membarrier's IPIs go to every CPU running our mm: timed the same way.
        mb = (mb_before + _membarrier(cpus)) / 2 if upstream else None
        med = summary(per_site)["median"]
        fl = self.floor(prim, handoff, mb)
        step = max(1, len(per_site) // RAW_PER_RUN)
        return {"median_ns": med, "c_ns_per_site": c_ns / nsites, "wall_ns_per_site": wall * 1e9 / nsites,
                "python_overhead_ns": max(0.0, wall * 1e9 - c_ns), "c_ns": c_ns,
                "handoff_ns": handoff, "membarrier_ns": mb, "floor_ns": fl, "ratio": med / fl if fl else None,
                "raw": per_site[::step][:RAW_PER_RUN], "nsites": nsites, "joined": joined}


def _secondary_counts(n_secondaries, quick):
    if n_secondaries <= 1:
        return [1]
    if quick:
        return sorted({1, n_secondaries})
    if n_secondaries <= 8:
        return list(range(1, n_secondaries + 1))
    out, k = set(), 1
    while k < n_secondaries:
        out.add(k)
        k *= 2
    return sorted(out | {n_secondaries})


def _stacked(cpus):
    """The most threads on one CPU: they take turns at sync_one."""
    return max(collections.Counter(cpus).values())


def _stack(cpus):
    """'k x ' for the floor's formula when k threads share a CPU."""
    k = _stacked(cpus)
    return f"{k} x " if k > 1 else ""


def _figures(cpus, syncs, pokes, quick, plan, membarrier):
    """The protocol figures: name -> _Figure."""
    figs = {}
    nsec_max = len(cpus) - 1
    for poke in pokes:
        for sync in syncs:
            for nsec in _secondary_counts(nsec_max, quick):
                name = f"rfc/{poke}/{sync}/secondaries={nsec}"
                figs[name] = _Figure(name, "rfc", Config(cpus=cpus[:nsec + 1], sites=plan.layout,
                                                         poke=poke, sync=sync, trace_len=0),
                                     f"4 x (hand-off to {nsec} + {_stack(cpus[:nsec + 1])}sync_one {sync}) "
                                     f"+ poke {poke}")
    if membarrier:
        for poke in pokes:
            for sync in syncs:
                for nsec in _secondary_counts(nsec_max, quick):
                    name = f"upstream/{poke}/{sync}/secondaries={nsec}"
                    figs[name] = _Figure(
                        name, "upstream",
                        Config(cpus=cpus[:nsec + 1], sites=plan.layout, poke=poke, sync=sync,
                               bp="emulate", secondary_sync="membarrier", kinds=SINGLE_INSN,
                               trace_len=0),
                        f"3 x (membarrier SYNC_CORE to {nsec} + sync_one {sync}) + poke {poke}")
    bpoke = "alias" if "alias" in pokes else pokes[0]
    for b in plan.batches:
        name = f"batch/{bpoke}/cpuid/batch={b}"
        figs[name] = _Figure(name, "batch", Config(cpus=cpus[:2], sites=max(plan.layout, 8 * b),
                                                    poke=bpoke, sync="cpuid", batch=b, trace_len=0),
                             f"4 x (hand-off + {_stack(cpus[:2])}sync_one cpuid) / {b} "
                             f"+ poke {bpoke}")
    return figs
