"""`pyharness bench`: what the protocol costs on this machine, how it
scales, and how close it is to the floor its primitives allow.

Every figure is measured in repeats after a warm-up, with pinned threads;
the JSON keeps the samples (schema "pyharness.bench/1") so two runs can be
compared (`pyharness compare`).  Ratios to the floor use primitives
measured in the same run: never another machine's costs.
"""
import json
import os
import sys
import threading
import time

from . import cpus as cpumod
from ._ffi import ffi, lib
from .engine import Config, Engine, available_syncs
from .errors import check
from .stats import summary

SCHEMA = "pyharness.bench/1"
ROUNDS = 4                    # SYNC_0, SYNC_1, SYNC_2, SYNC_DONE


class _Progress:
    def __init__(self, enabled):
        self.enabled = enabled

    def __call__(self, text):
        if self.enabled:
            sys.stderr.write(f"\r[bench] {text}"[:118].ljust(118))
            sys.stderr.flush()

    def done(self):
        if self.enabled:
            sys.stderr.write("\n")


def _pinned(cpu, fn):
    """Run fn on a thread pinned to cpu; return its result."""
    out = {}

    def body():
        os.sched_setaffinity(0, {cpu})
        out["r"] = fn()
    t = threading.Thread(target=body)
    t.start()
    t.join()
    if "r" not in out:
        raise RuntimeError("benchmark thread failed")
    return out["r"]


def _timed(cfn, iters, repeats):
    """ns/op per repeat of a C timing loop (after one warm-up repeat)."""
    ns = ffi.new("uint64_t *")
    samples = []
    for k in range(repeats + 1):
        check(cfn(iters, ns), "benchmark")
        if k:
            samples.append(ns[0] / iters)
    return samples


def measure_primitives(cpus, quick, progress):
    reps = 5 if quick else 15
    scale = 1 if quick else 4
    prim = {}
    c0 = cpus[0]
    for sync in available_syncs():
        progress(f"primitive sync_one {sync}")
        iters = (400 if sync == "cpuid" else 20000) * scale
        prim[f"sync_{sync}"] = _pinned(c0, lambda s=sync, n=iters: _timed(
            lambda i, ns: lib.ph_bench_sync(lib.__dict__["PH_SYNC_" + s.upper()], i, ns), n, reps))
    # mprotect and membarrier are measured with a thread of ours busy on
    # another CPU, as in the protocol: each then pays an IPI (a TLB
    # shootdown, a SYNC_CORE), which is costly under a hypervisor.  Alone
    # in its mm, a membarrier measured 0.42 us; the protocol paid ~13 us.
    spinner = None
    if len(set(cpus[:2])) == 2:
        spinner = threading.Thread(target=lambda: (os.sched_setaffinity(0, {cpus[1]}), lib.ph_bench_spin()))
        spinner.start()
    try:
        if lib.ph_membarrier_sync_core_supported():
            progress("primitive membarrier SYNC_CORE")
            prim["membarrier_sync_core"] = _pinned(c0, lambda: _timed(lib.ph_bench_membarrier, 200 * scale, reps))
        progress("primitive mprotect pair")
        prim["mprotect_pair"] = _pinned(c0, lambda: _timed(lib.ph_bench_mprotect, 200 * scale, reps))
    finally:
        if spinner:
            lib.ph_bench_spin_stop()
            spinner.join()
    progress("primitive alias-view write")
    prim["alias_write"] = _pinned(c0, lambda: _timed(lib.ph_bench_alias_write, 20000 * scale, reps))
    progress("primitive INT3 trap round trip")
    with Engine(Config(cpus=[c0, c0], sites=64, poke="rwx", bp="native", trace_len=0)) as e:
        def trap():
            check(lib.ph_thread_register(e._e, 0, lib.PH_ROLE_PRIMARY), "ph_thread_register")
            try:
                return _timed(lambda i, ns: lib.ph_bench_trap(e._e, i, ns), 400 * scale, reps)
            finally:
                lib.ph_thread_unregister(e._e, 0)
        prim["int3_round_trip"] = _pinned(c0, trap)
    if len(cpus) >= 2:
        progress("primitive cross-thread cache-line round trip")
        prim["cacheline_round_trip"] = _pingpong(cpus[0], cpus[1], 20000 * scale, reps)
    return prim


def _pingpong(a, b, iters, reps):
    samples = []
    for k in range(reps + 1):
        lib.ph_bench_pingpong_reset()
        ns = ffi.new("uint64_t *")
        rcs = {}

        def side(role, cpu):
            os.sched_setaffinity(0, {cpu})
            rcs[role] = lib.ph_bench_pingpong(role, iters, ns if role == 0 else ffi.new("uint64_t *"))
        ts = [threading.Thread(target=side, args=(r, c)) for r, c in ((0, a), (1, b))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        check(min(rcs.values()), "ph_bench_pingpong")
        if k:
            samples.append(ns[0] / iters)
    return samples


def _protocol_once(cfg, nsites, inject):
    """One run: (median per-site ns, per-site samples, Python's share)."""
    cfg.inject_delay_ns = inject
    with Engine(cfg) as e:
        t0 = time.perf_counter()
        o = e.run(sites=nsites, verify=False)
        wall = time.perf_counter() - t0
        if o.status != "complete" or o.view.violations():
            raise RuntimeError(f"benchmark run not clean: {o.status}")
        s = o.view.series("site_ns")
        c_time = (o.view.sh.t_end - o.view.sh.t_start) / 1e9
    share = max(0.0, wall - c_time) / c_time if c_time > 0 else None
    return summary(s)["median"], s, share


def _protocol_figures(specs, reps, inject, progress):
    """Repeats interleaved round-robin across figures, after one warm-up
    each: a slow phase of the machine spreads over every figure instead of
    spoiling one.  specs: name -> (Config, nsites)."""
    out = {name: {"per": [], "raw": [], "share": []} for name in specs}
    for r in range(reps + 1):
        for name, (cfg, n) in specs.items():
            progress(f"{name} (repeat {r}/{reps})")
            med, s, share = _protocol_once(cfg, n, inject)
            if r == 0:
                continue
            out[name]["per"].append(med)
            out[name]["raw"].extend(s[:: max(1, len(s) // 200)])
            if share is not None:
                out[name]["share"].append(share)
    return out


def _med(samples):
    return summary(samples)["median"]


def floor_ns(prim, sync, poke, secsync="ack", batch=1):
    """What a site must cost from the primitives alone.

    RFC: each of the 4 rounds is a state hand-off to the slowest secondary
    and its ack back (one cache-line round trip) plus that secondary's
    sync_one (the primary's own runs in parallel); a batch shares rounds.
    Upstream: 3 membarrier SYNC_COREs instead of acked rounds.  Plus the
    poke: one mprotect pair per round of sites, or 3 small writes per site
    through the alias view."""
    if secsync == "membarrier":
        rounds = 3 * _med(prim["membarrier_sync_core"])
    else:
        rtt = _med(prim.get("cacheline_round_trip", [0.0]))
        rounds = ROUNDS * (rtt + _med(prim[f"sync_{sync}"]))
    per_round_poke = _med(prim["mprotect_pair"]) if poke == "mprotect" else 0.0
    per_site_poke = 3 * _med(prim["alias_write"]) if poke == "alias" else 0.0
    return (rounds + per_round_poke) / batch + per_site_poke


def run_bench(quick=False, cpus=None, out_json=None, inject_delay_ns=0, progress=True):
    progress = _Progress(progress if progress is not None else sys.stderr.isatty())
    usable = cpumod.usable_cpus() if cpus is None else cpumod.check_cpus(cpumod.parse_cpu_list(cpus))
    if len(usable) < 2:
        usable = [usable[0], usable[0]]       # oversubscribed: still measurable, warned below
    t_start = time.monotonic()
    reps = 5 if quick else 11
    nsites = 2000 if quick else 10000
    prim = measure_primitives(usable, quick, progress)
    figures = {f"primitive/{k}": {"unit": "ns/op", "samples": v} for k, v in prim.items()}

    syncs = available_syncs()
    pokes = ["mprotect", "alias", "rwx"]
    secondary_counts = sorted({1, len(usable) - 1}) if quick else list(range(1, len(usable)))
    specs, floors = {}, {}
    for poke in pokes:
        for sync in syncs:
            for nsec in secondary_counts:
                name = f"rfc/{poke}/{sync}/secondaries={nsec}"
                specs[name] = (Config(cpus=usable[: nsec + 1], sites=nsites, poke=poke, sync=sync), nsites)
                floors[name] = floor_ns(prim, sync, poke)
    if lib.ph_membarrier_sync_core_supported():
        for poke in ("alias", "rwx"):
            name = f"upstream/{poke}/membarrier"
            specs[name] = (Config(cpus=usable[:2], sites=nsites, poke=poke, sync=syncs[0], bp="emulate",
                                  secondary_sync="membarrier", kinds=("movret", "call", "jmpnop")), nsites)
            floors[name] = floor_ns(prim, syncs[0], poke, secsync="membarrier")
    for b in ([1, 16, 256] if quick else [1, 4, 16, 64, 256, 1024]):
        name = f"batch/alias/cpuid/batch={b}"
        n = max(2048, b * 8)
        specs[name] = (Config(cpus=usable[:2], sites=n, poke="alias", sync="cpuid", batch=b), n)
        floors[name] = floor_ns(prim, "cpuid", "alias", batch=b)
    # Python's share of a run: a typical run's size, not a 2 ms one whose
    # thread start-up would dominate.
    specs["python-share"] = (Config(cpus=usable[:2], sites=10000, poke="alias", sync="cpuid"), 10000)

    # A reference figure at the start and at the end: did the machine change?
    ref_cfg = Config(cpus=usable[:2], sites=nsites, poke="rwx", sync=syncs[-1])
    ref_before = [_protocol_once(ref_cfg, nsites, inject_delay_ns)[0] for _ in range(3)]
    measured = _protocol_figures(specs, reps, inject_delay_ns, progress)
    ref_after = [_protocol_once(ref_cfg, nsites, inject_delay_ns)[0] for _ in range(3)]
    for name, m in measured.items():
        if name == "python-share":
            continue
        fl = floors[name]
        figures[name] = {"unit": "ns/site", "samples": m["per"], "raw_samples": m["raw"],
                         "floor_ns": fl, "ratio_to_floor_samples": [x / fl for x in m["per"]]}
    py_shares = measured["python-share"]["share"]
    stability = {"reference": f"rfc/rwx/{syncs[-1]}", "before_ns": ref_before, "after_ns": ref_after,
                 "drift": summary(ref_after)["median"] / summary(ref_before)["median"] - 1.0}

    for f in figures.values():
        f["summary"] = summary(f["samples"])
        if "floor_ns" in f:
            f["ratio_to_floor"] = f["summary"]["median"] / f["floor_ns"] if f["floor_ns"] else None
    progress.done()
    from .machine import machine_info
    machine = machine_info()
    result = {"schema": SCHEMA, "quick": quick, "cpus": usable, "inject_delay_ns": inject_delay_ns,
              "machine": machine, "figures": figures,
              "python_share": summary(py_shares) if py_shares else None,
              "stability": stability,
              "elapsed_s": time.monotonic() - t_start}
    result["targets"] = targets(result)
    result["warnings"] = warnings(result)
    if out_json:
        with open(out_json, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    return result


def targets(result):
    figs = result["figures"]
    out = []
    share = result.get("python_share") or {}
    if share.get("median") is not None:
        out.append({"target": "Python share of a run's patching time", "measured": share["median"],
                    "bound": 0.05, "pass": share["median"] < 0.05})
    for name, f in figs.items():
        if name.startswith("rfc/") and f.get("ratio_to_floor") is not None:
            out.append({"target": f"{name} within 1.5x of its floor", "measured": f["ratio_to_floor"],
                        "bound": 1.5, "pass": f["ratio_to_floor"] <= 1.5})
    b1, b256 = figs.get("batch/alias/cpuid/batch=1"), figs.get("batch/alias/cpuid/batch=256")
    if b1 and b256:
        gain = b1["summary"]["median"] / b256["summary"]["median"]
        out.append({"target": "batch=256 at least 20x cheaper per site than batch=1",
                    "measured": gain, "bound": 20.0, "pass": gain >= 20.0})
    return out


def warnings(result):
    """pyperf-style: say when the machine is too noisy to trust a figure."""
    out = []
    m = result["machine"]
    if m.get("hypervisor"):
        out.append("running under a hypervisor: CPUID and IPIs exit to it, and vCPU placement "
                   "on the host can change cross-thread costs between runs")
    if m.get("governor") not in (None, "performance"):
        out.append(f"CPU frequency governor is '{m['governor']}', not 'performance'")
    load = (m.get("loadavg") or [0])[0]
    if load > 0.5 * max(1, len(m.get("affinity") or [1])):
        out.append(f"load average {load:.2f} is high for {len(m.get('affinity') or [])} CPUs")
    st = result.get("stability") or {}
    if st.get("drift") is not None and abs(st["drift"]) > 0.20:
        out.append(f"machine state changed during the run: the reference figure {st['reference']} "
                   f"moved {st['drift']:+.0%} between start and end; do not gate on this run")
    if len(set(result["cpus"])) < 2:
        out.append("only one usable CPU: threads are oversubscribed")
    for name, f in result["figures"].items():
        sp = f["summary"].get("spread")
        if sp is not None and sp > 0.10:
            out.append(f"{name}: spread (p90-p10)/median is {sp:.0%}: do not trust it to 10%")
    return out


def _fmt_ns(v):
    if v is None:
        return "-"
    return f"{v / 1000:.2f} us" if v >= 1000 else f"{v:.0f} ns"


def format_tables(result):
    lines = [f"pyharness bench ({'quick' if result['quick'] else 'full'}) on "
             f"{result['machine'].get('cpu_model')} ({result['machine'].get('kernel')}), "
             f"CPUs {result['cpus']}, {result['elapsed_s']:.0f} s"]
    lines.append(f"{'figure':44s} {'median':>10s} {'p10':>10s} {'p90':>10s} {'spread':>7s} "
                 f"{'floor':>10s} {'ratio':>6s}")
    for name, f in result["figures"].items():
        s = f["summary"]
        ratio = f.get("ratio_to_floor")
        lines.append(f"{name:44s} {_fmt_ns(s['median']):>10s} {_fmt_ns(s['p10']):>10s} "
                     f"{_fmt_ns(s['p90']):>10s} {s['spread'] or 0:>6.0%} "
                     f"{_fmt_ns(f.get('floor_ns')):>10s} {('%.2f' % ratio) if ratio else '-':>6s}")
    lines.append("targets:")
    for t in result["targets"]:
        lines.append(f"  [{'pass' if t['pass'] else 'FAIL'}] {t['target']}: "
                     f"measured {t['measured']:.3g}, bound {t['bound']:g}")
    for w in result["warnings"]:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def bench_main(args):
    result = run_bench(quick=args.quick, cpus=args.cpus, out_json=args.json,
                       inject_delay_ns=args.inject_delay_ns, progress=sys.stderr.isatty())
    print(format_tables(result))
    return 0
