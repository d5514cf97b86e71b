"""`pyharness bench`: what the protocol costs on this machine, how it
scales, and how close it is to the floor its primitives allow.

    result = run_bench(quick=True, out_json="b.json")
    print(format_tables(result))

Method (pyperf's): threads pinned, one warm-up round, then repeat rounds.
Each round times every primitive once (a C loop of many operations) and
runs every protocol figure once, in the same order, so a slow phase of the
machine spreads over every figure instead of spoiling one.  A protocol
figure's floor is computed per run, from primitives measured in that round
and from a state hand-off timed on the run's own CPUs just before it: on a
VM the host can move the vCPUs apart and triple the cross-CPU cost within
seconds, and a floor measured at another moment would say nothing.

The JSON (schema "pyharness.bench/1") keeps every per-run sample, the
per-run floors and ratios, a subsample of the per-site times, machine
metadata, warnings and the speed targets.  `pyharness compare` reads it.
"""
import collections
import os
import sys
import threading
import time

from . import cpus as cpumod
from .documents import KINDS
from ._ffi import ffi, lib
from .engine import SYNCS, Config, Engine, available_syncs, ctrl_c_deferred, spin_pauses_for
from .errors import BenchRunError, UnsupportedError, UsageError, check
from .machine import machine_info
from .stats import summary

SCHEMA = KINDS["bench"]
ROUNDS = 4                  # SYNC_0, SYNC_1, SYNC_2, SYNC_DONE: one state hand-off each
UPSTREAM_SYNCS = 3          # upstream: text_poke_sync() after INT3, tail, first byte
POKES = ("mprotect", "alias", "rwx")
SINGLE_INSN = ("movret", "call", "jmpnop")
RAW_PER_RUN = 200           # per-site samples kept per run (evenly thinned)
SPREAD_WARN = 0.10          # (p90 - p10) / median above this: do not trust to 10%
DRIFT_WARN = 1.5            # hand-off max/min across the run above this: the machine moved

# Targets of issue 4 (speed of our own code).
PYTHON_SHARE_BOUND = 0.05
FLOOR_RATIO_BOUND = 1.5
BATCH_GAIN_BOUND = 20.0


class _Plan:
    """How much to measure: quick (< 1 min on 2 CPUs) or full."""

    def __init__(self, quick):
        self.quick = quick
        self.repeats = 15 if quick else 25
        self.run_ns = 15e6 if quick else 40e6      # patching time aimed at per run
        self.max_sites = 250000                     # cheap batched sites need many
        self.layout = 2048                          # sites laid out per engine
        self.batches = [1, 16, 256] if quick else [1, 4, 16, 64, 256, 1024]
        self.share_ns = 150e6 if quick else 400e6   # the python-share run: a typical run's length


class _Progress:
    def __init__(self, enabled):
        self.enabled = bool(enabled)

    def __call__(self, text):
        if self.enabled:
            sys.stderr.write(f"\r[bench] {text}"[:100].ljust(100))
            sys.stderr.flush()

    def done(self):
        if self.enabled:
            sys.stderr.write("\r" + " " * 100 + "\r")
            sys.stderr.flush()


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


# ---------------------------------------------------------------------------
# Machine metadata

def _machine():
    try:
        return machine_info()
    except Exception as exc:  # noqa: BLE001 - metadata must never stop a benchmark
        return {"error": f"machine metadata unavailable: {exc}"}


def _rounds(plan, prims, figs, share, prim_samples, inject_delay_ns, progress, handoff_iters):
    """Round 0 warms up and sizes each figure's runs; rounds 1.. measure
    every primitive once and run every figure once, in the same order."""
    for r in range(plan.repeats + 1):
        prim = prims.measure(lambda t: progress(f"round {r}/{plan.repeats}: {t}"))
        if r:
            for k, v in prim.items():
                prim_samples[k].append(v)
        for name, f in list(figs.items()) + [("python-share", share)]:
            if f.nsites is None:
                # Round 0: a short run warms up and sizes this figure's runs.
                n = 500 if f is share else max(64, 8 * f.cfg.batch)
                out = f.run(prim, inject_delay_ns, n, f"warm-up: {name}", progress,
                            handoff_iters)
                aim = plan.share_ns if f is share else plan.run_ns
                f.nsites = int(min(plan.max_sites, max(
                    64, 8 * f.cfg.batch, aim / max(out["c_ns_per_site"], 1.0))))
                continue
            f.runs.append(f.run(prim, inject_delay_ns, f.nsites,
                                f"round {r}/{plan.repeats}: {name}", progress, handoff_iters))


def run_bench(quick=False, cpus=None, out_json=None, inject_delay_ns=0, progress=True):
    """Measure everything once (see the module's docstring) and return the
    result dict; write it as JSON to out_json if given.

    cpus: a CPU list ("0-3,7", "all") or a list of ints; None: every usable
    CPU.  The first is the primary's.  inject_delay_ns: a busy wait added to
    each poke_sync round of every protocol run (a deliberate regression,
    to check that `pyharness compare` catches it)."""
    if inject_delay_ns < 0:
        raise UsageError("--inject-delay-ns must not be negative")
    progress = _Progress(progress)
    if cpus is None:
        cpus = cpumod.usable_cpus()
    elif isinstance(cpus, str):
        cpus = cpumod.parse_cpu_list(cpus)
    cpus = cpumod.check_cpus(list(cpus))
    machine = _machine()           # before we load the machine ourselves
    shared_cpu = len(set(cpus)) < 2
    if shared_cpu:
        cpus = [cpus[0], cpus[0]]  # oversubscribed: still measured, and warned about
    plan = _Plan(quick)
    t_start = time.monotonic()
    prims = _Primitives(cpus, plan, shared_cpu)
    if not prims.pokes:
        raise UnsupportedError("no poke method is usable here: " + "; ".join(
            why for what, why in prims.skipped.items() if what.startswith("poke ")))
    figs = _figures(cpus, prims.syncs, prims.pokes, quick, plan, prims.membarrier)
    share = _Figure("python-share", "share",
                    Config(cpus=cpus[:2], sites=plan.layout, sync="cpuid",
                           poke="alias" if "alias" in prims.pokes else prims.pokes[0],
                           trace_len=0), "")
    handoff_iters = 10 if shared_cpu else 300
    prim_samples = {n: [] for n in prims.names()}

    interrupted = None    # the round Ctrl-C cut short: what came before it is kept
    try:
        _rounds(plan, prims, figs, share, prim_samples, inject_delay_ns, progress, handoff_iters)
    except KeyboardInterrupt:
        interrupted = len(share.runs) + 1 if share.nsites is not None else 0
    progress.done()
    figs = {n: f for n, f in figs.items() if f.runs}
    prim_samples = {n: v for n, v in prim_samples.items() if v}

    figures = {}
    for name, v in prim_samples.items():
        figures[f"primitive/{name}"] = {"kind": "primitive", "unit": "ns/op", "samples": v,
                                        "summary": summary(v)}
    for name, f in figs.items():
        figures[name] = _figure_json(f)
    share_runs = share.runs
    py = {"share_samples": [x["python_overhead_ns"] / x["c_ns"] for x in share_runs],
          "overhead_ms_samples": [x["python_overhead_ns"] / 1e6 for x in share_runs],
          "patching_ms_samples": [x["c_ns"] / 1e6 for x in share_runs],
          "sites": share.nsites, "config": _cfg_json(share.cfg)}
    py["share"] = summary(py["share_samples"])
    # Every protocol run of this bench too (short runs: the worst case).
    py["all_runs_share"] = summary([x["python_overhead_ns"] / x["c_ns"] for f in figs.values()
                                    for x in f.runs if x["c_ns"]])
    py["overhead_ms"] = summary(py["overhead_ms_samples"])
    handoffs = [x["handoff_ns"] for f in figs.values() for x in f.runs if x["handoff_ns"]]
    result = {
        "schema": SCHEMA, "quick": quick, "cpus": cpus, "oversubscribed": shared_cpu,
        "evidence": _evidence(cpus),
        "inject_delay_ns": inject_delay_ns, "repeats": plan.repeats,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine,
        "skipped": prims.skipped, "figures": figures, "python": py,
        "stability": {"handoff_ns": summary(handoffs),
                      "max_over_min": (max(handoffs) / min(handoffs)) if handoffs else None,
                      "p90_over_p10": _p90_over_p10(handoffs)},
        "elapsed_s": time.monotonic() - t_start,
        # None: every round ran; else the round Ctrl-C cut short (0: the
        # warm-up, nothing measured), and every figure has fewer samples.
        "interrupted_in_round": interrupted,
    }
    result["targets"] = targets(result)
    result["warnings"] = warnings(result)
    if out_json:
        from . import documents
        result["_written"] = documents.write(result, out_json, "--json", "bench")
    return result


def _p90_over_p10(xs):
    s = summary(xs) if xs else {}
    return s["p90"] / s["p10"] if s.get("p10") else None


def _cfg_json(cfg):
    d = cfg.to_dict()
    d.pop("inject_delay_ns", None)
    return d


def _figure_json(f):
    runs = f.runs
    med = [x["median_ns"] for x in runs]
    fl = [x["floor_ns"] for x in runs]
    ratios = [x["ratio"] for x in runs if x["ratio"] is not None]
    out = {"kind": f.kind, "unit": "ns/site", "config": _cfg_json(f.cfg), "sites_per_run": f.nsites,
           "samples": med,
           "wall_samples": [x["wall_ns_per_site"] for x in runs],
           "raw_samples": [v for x in runs for v in x["raw"]],
           "handoff_samples": [x["handoff_ns"] for x in runs],
           "floor_samples": fl, "ratio_to_floor_samples": ratios,
           "floor_formula": f.floor_text, "late_runs": f.late_runs,
           "summary": summary(med), "wall": summary([x["wall_ns_per_site"] for x in runs])}
    if f.kind == "upstream":
        out["membarrier_samples"] = [x["membarrier_ns"] for x in runs]
    out["floor_ns"] = summary(fl)["median"]
    out["ratio_to_floor"] = summary(ratios)["median"] if ratios else None
    return out


# ---------------------------------------------------------------------------
# Targets and warnings

def targets(result):
    """The speed targets (issue 4), each with its measured value and bound."""
    figs, out = result["figures"], []
    share = (result.get("python") or {}).get("share") or {}
    if share.get("median") is not None:
        py = result["python"]
        out.append({"target": f"Python's share of a run's patching time "
                              f"({py['sites']} sites, {py['config']['poke']}/{py['config']['sync']})",
                    "measured": share["median"], "bound": PYTHON_SHARE_BOUND, "op": "<",
                    "pass": share["median"] < PYTHON_SHARE_BOUND})
    for name, f in figs.items():
        if f.get("kind") == "rfc" and f.get("ratio_to_floor") is not None:
            out.append({"target": f"{name} within {FLOOR_RATIO_BOUND}x of its floor",
                        "measured": f["ratio_to_floor"], "bound": FLOOR_RATIO_BOUND, "op": "<=",
                        "pass": f["ratio_to_floor"] <= FLOOR_RATIO_BOUND})
    b1 = next((f for n, f in figs.items() if f.get("kind") == "batch" and n.endswith("batch=1")), None)
    b256 = next((f for n, f in figs.items() if f.get("kind") == "batch" and n.endswith("batch=256")),
                None)
    if b1 and b256 and b256["summary"].get("median"):
        gain = b1["summary"]["median"] / b256["summary"]["median"]
        out.append({"target": f"batch=256 at least {BATCH_GAIN_BOUND:g}x cheaper per site than batch=1",
                    "measured": gain, "bound": BATCH_GAIN_BOUND, "op": ">=",
                    "pass": gain >= BATCH_GAIN_BOUND})
    return out


def warnings(result):
    """pyperf-style: say when the machine is too noisy to trust a figure."""
    out, m = [], result["machine"]
    if m.get("hypervisor"):
        out.append("running under a hypervisor: CPUID and IPIs exit to it, and the host may move "
                   "the vCPUs (cross-CPU costs change between runs): compare runs of one machine")
    gov = m.get("governor")
    if gov is not None and gov != "performance":
        out.append(f"CPU frequency governor is '{gov}', not 'performance': clocks may change "
                   "under load")
    ncpu = len(m.get("affinity") or result["cpus"]) or 1
    load = (m.get("loadavg") or [0.0])[0]
    if load > 0.5 * ncpu:
        out.append(f"load average {load:.2f} before the run is high for {ncpu} CPUs: other "
                   "work competes with the pinned threads")
    if result.get("oversubscribed"):
        out.append("only one usable CPU: primary and secondary share it (oversubscribed): each "
                   "hand-off is a pair of context switches and the threads take turns at "
                   "sync_one; these figures do not compare with runs on distinct CPUs")
    st = result.get("stability") or {}
    # p90/p10, not max/min: one slow hand-off is noise, a tenth of them is a phase
    if (st.get("p90_over_p10") or 0) > DRIFT_WARN:
        h = st["handoff_ns"]
        out.append(f"the machine changed during the run: the cross-CPU hand-off ranged "
                   f"{h['p10']:.0f}-{h['p90']:.0f} ns (p10-p90); figures are normalized per run, "
                   "raw times are not comparable")
    noisy = []
    for name, f in result["figures"].items():
        sp = f["summary"].get("spread")
        if sp is not None and sp > SPREAD_WARN:
            norm = summary(f.get("ratio_to_floor_samples") or []).get("spread")
            noisy.append(f"{name} ({sp:.0%}" + (f", {norm:.0%})" if norm is not None else ")"))
    if noisy:
        out.append(f"spread (p90-p10)/median above {SPREAD_WARN:.0%}, do not trust these to "
                   f"{SPREAD_WARN:.0%} (raw, and relative to the floor):\n    "
                   + "\n    ".join(noisy))
    late = {n: f["late_runs"] for n, f in result["figures"].items() if f.get("late_runs")}
    if late:
        out.append("runs repeated because a secondary joined late (nobody waits for it in the "
                   "upstream style): " + ", ".join(f"{n} {k} time(s)" for n, k in sorted(late.items())))
    for what, why in (result.get("skipped") or {}).items():
        out.append(f"not measured: {what}: {why}")
    if result.get("interrupted_in_round") is not None:
        out.insert(0, f"INTERRUPTED in round {result['interrupted_in_round']} of "
                      f"{result['repeats']} (0: the warm-up): figures have fewer samples, and "
                      "those with none are left out")
    return out


# ---------------------------------------------------------------------------
# Output

def _fmt_ns(v):
    if v is None:
        return "-"
    if v >= 999995:
        return f"{v / 1e6:.2f} ms"
    return f"{v / 1000:.2f} us" if v >= 999.5 else f"{v:.0f} ns"


def _cpu_text(cpus):
    from .cpus import describe_cpus
    return describe_cpus(cpus) if cpus else "-"


def format_tables(result):
    m = result["machine"]
    lines = [f"pyharness bench ({'quick' if result['quick'] else 'full'}): {m.get('cpu_model')}, "
             f"kernel {m.get('kernel')}, CPUs {_cpu_text(result['cpus'])}"
             f"{', hypervisor' if m.get('hypervisor') else ''}, {result['repeats']} repeats, "
             f"{result['elapsed_s']:.0f} s"
             + (f", inject {result['inject_delay_ns']} ns/round" if result["inject_delay_ns"] else "")]
    head = (f"{'figure':40s} {'median':>9s} {'p10':>9s} {'p90':>9s} {'spread':>6s} "
            f"{'wall':>9s} {'floor':>9s} {'ratio':>5s}")
    groups = [("primitives (ns per operation)", "primitive"), ("RFC protocol (per site)", "rfc"),
              ("upstream style: membarrier SYNC_CORE instead of acks (per site)", "upstream"),
              ("batches (amortized per site)", "batch")]
    for title, kind in groups:
        rows = [(n, f) for n, f in result["figures"].items() if f.get("kind") == kind]
        if not rows:
            continue
        lines += ["", title, head]
        for name, f in rows:
            s, r = f["summary"], f.get("ratio_to_floor")
            short = name.split("/", 1)[1] if "/" in name else name
            lines.append(
                f"{short:40s} {_fmt_ns(s.get('median')):>9s} {_fmt_ns(s.get('p10')):>9s} "
                f"{_fmt_ns(s.get('p90')):>9s} {(s.get('spread') or 0):>6.0%} "
                f"{_fmt_ns((f.get('wall') or {}).get('median')):>9s} "
                f"{_fmt_ns(f.get('floor_ns')):>9s} {('%.2f' % r) if r else '-':>5s}")
    py = result.get("python") or {}
    if (py.get("overhead_ms") or {}).get("median") is not None:
        lines += ["", f"Python per run: {py['overhead_ms']['median']:.2f} ms "
                      f"(thread start, registration, join) against "
                      f"{summary(py['patching_ms_samples'])['median']:.1f} ms of patching "
                      f"({py['sites']} sites); over every run of this bench "
                      f"(~{_Plan(result['quick']).run_ns / 1e6:.0f} ms each) "
                      f"{py['all_runs_share']['median']:.1%} median, "
                      f"{py['all_runs_share']['max']:.1%} max"]
    lines += ["", "targets:"]
    for t in result["targets"]:
        lines.append(f"  [{'pass' if t['pass'] else 'FAIL'}] {t['target']}: measured "
                     f"{t['measured']:.3g} ({t['op']} {t['bound']:g})")
    if result["warnings"]:
        lines.append("")
    for w in result["warnings"]:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def _evidence(cpus):
    from .platform import evidence
    return evidence.finish(evidence.collect(cpus), cpus)
