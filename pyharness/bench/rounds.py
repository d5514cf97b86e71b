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

import sys
import time

from .. import cpus as cpumod
from ..engine import Config
from ..errors import UnsupportedError, UsageError
from ..machine import machine_info
from ..stats import summary
from .constants import SCHEMA
from .figures import _Figure, _figures
from .primitives import _Primitives
from .targets import targets, warnings


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
        from .. import documents
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


def _evidence(cpus):
    from ..platform import evidence
    return evidence.finish(evidence.collect(cpus), cpus)
