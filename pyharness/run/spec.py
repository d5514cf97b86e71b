"""A run's specification, from keyword arguments: the one resolver of
scenarios and options, shared by `pyharness run`, the selftest, the retest
and the mutation runs.  No argparse here: the CLI turns its arguments into
a RunOptions at its boundary (pyharness/cli/run.py).

    spec = resolve("rfc-native", RunOptions(duration=5, poke="alias"))
    report = run_stress(spec)
"""
import dataclasses
from typing import Optional

from .. import cpus as cpumod
from ..errors import UsageError
from ..scenarios import SCENARIOS, aim_bits, parse_aim, parse_stress


@dataclasses.dataclass
class RunOptions:
    """Every option of a run, as `pyharness run` takes them; None: the
    scenario's own value."""
    cpus: Optional[str] = None
    threads: Optional[int] = None
    primary: Optional[int] = None
    placement: Optional[str] = None
    poke: str = "mprotect"
    sync: str = "cpuid"
    bp: Optional[str] = None
    secondary_sync: Optional[str] = None
    site_kinds: Optional[str] = None
    nmi_rate: Optional[float] = None
    executors: Optional[int] = None
    batch: Optional[int] = None
    protocol: str = "rfc"
    nmi_mode: Optional[bool] = None
    stress: Optional[str] = None
    nmi_level: Optional[int] = None
    sessions: Optional[int] = None
    aim: Optional[str] = None
    trace: int = 4096
    mutant: str = "none"
    seed: int = 1
    deadline: float = 10.0
    timeout: float = 600.0
    grace: float = 5.0
    inject_delay_ns: int = 0
    mdwe: bool = False
    sites: Optional[int] = None
    duration: Optional[float] = None
    stop_on_violation: bool = False

    @classmethod
    def names(cls):
        return [f.name for f in dataclasses.fields(cls)]

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def resolve_cpus(cpu_text, threads=None, primary_cpu=None, placement=None):
    """CPU list -> one CPU per thread (round robin) and the primary's index."""
    cpus = cpumod.usable_cpus() if cpu_text is None else cpumod.parse_cpu_list(cpu_text)
    cpumod.check_cpus(cpus)
    if placement and placement != "default":
        from ..platform.placement import place
        order = place(placement, cpus, len(cpus))     # the whole order, then the primary, then cut
        if primary_cpu is not None:
            if primary_cpu not in order:
                raise UsageError(f"--primary {primary_cpu} is not in the CPU list "
                                 f"{cpumod.format_cpu_list(cpus)}")
            i = order.index(primary_cpu)
            order[0], order[i] = order[i], order[0]
        n = threads or max(2, len(order))
        return [order[i % len(order)] for i in range(n)], 0
    if primary_cpu is not None:
        if primary_cpu not in cpus:
            raise UsageError(f"--primary {primary_cpu} is not in the CPU list {cpumod.format_cpu_list(cpus)}")
        cpus = [primary_cpu] + [c for c in cpus if c != primary_cpu]
    # One usable CPU (a container, taskset -c 0, --cpus 0): the primary and
    # a secondary share it, as --threads allows anywhere.
    n = threads or max(2, len(cpus))
    return [cpus[i % len(cpus)] for i in range(n)], 0


def resolve(scenario, opts=None, argv_prefix=("pyharness", "run"), duration=None):
    """The RunSpec of a scenario with these options (a RunOptions, or None
    for the defaults): every choice resolved, validated, and the exact
    command that replays it."""
    from ..engine import Config, MUTANTS
    from ..runner import RunSpec
    o = opts if opts is not None else RunOptions()
    sc = SCENARIOS[scenario]
    c = dict(sc["config"])
    if o.mutant == "rfc-bitmap":
        raise UsageError("the rfc-bitmap mutant is now the RFC's code as posted: use "
                         "--protocol rfc-as-posted")
    if o.mutant not in MUTANTS:
        raise UsageError(f"unknown mutant '{o.mutant}'; choose from {', '.join(MUTANTS)}")
    placement = o.placement or "default"
    thread_cpus, primary = resolve_cpus(o.cpus, o.threads, o.primary, placement)
    if len(thread_cpus) < 2:
        raise UsageError("the protocol needs a primary and at least one other thread: "
                         "--threads 2 or more")
    from ..engine import SINGLE_INSN_KINDS
    kinds = c["kinds"] if o.site_kinds is None else tuple(
        k.strip() for k in o.site_kinds.split(",") if k.strip())
    if o.site_kinds is None and (o.bp or c["bp"]) == "emulate":
        kinds = tuple(k for k in kinds if k in SINGLE_INSN_KINDS)   # what emulation can run
    executors = sc["executors"] if o.executors is None else o.executors
    if executors == "all":
        executors = len(thread_cpus) - 1
    secsync = o.secondary_sync or c["secondary_sync"]
    if secsync == "membarrier" and o.secondary_sync is None:
        from .._ffi import lib
        if not lib.ph_membarrier_sync_core_supported():
            secsync = "ack"
    duration = o.duration if duration is None else duration
    sites = o.sites or 1000
    aim = parse_aim(o.aim)
    if aim is None:
        aim = sc.get("aim", ())
    stress = parse_stress(o.stress)
    if stress is None:
        stress = tuple(c.get("stress", ()))
    nmi_mode = o.nmi_mode
    nmi_mode = c.get("nmi_mode", False) if nmi_mode is None else nmi_mode
    nmi_level = o.nmi_level
    nmi_level = c.get("nmi_level", 1) if nmi_level is None else nmi_level
    sessions = o.sessions
    if sessions is None:
        sps = sc.get("sessions_per_s")
        sessions = 1 if not sps else (max(1, int(round(duration * sps))) if duration else 4)
    batch = o.batch or c["batch"]
    if "paired" in stress and not nmi_mode:
        # The protocol promises a lock and its unlock switched together only
        # where the patching runs inside the NMI (NMI mode); outside it a NMI
        # between their writes sees them apart, and pair-matched would fail a
        # correct protocol.  `all` means every condition that applies.
        if (o.stress or "").strip() == "all":
            stress = tuple(x for x in stress if x != "paired")
        else:
            raise UsageError("--stress paired needs --nmi-mode: outside it no protocol promises a "
                             "NMI sees a lock and its unlock switched together")
    cfg = Config(cpus=thread_cpus, primary=primary, sites=sites, kinds=kinds, poke=o.poke,
                 sync=o.sync, bp=o.bp or c["bp"], secondary_sync=secsync, executors=executors,
                 batch=batch, mutant=o.mutant, seed=o.seed,
                 deadline=o.deadline, trace_len=o.trace, inject_delay_ns=o.inject_delay_ns,
                 aim=aim_bits(aim), protocol=o.protocol or "rfc",
                 nmi_mode=bool(nmi_mode), stress=stress, nmi_level=nmi_level, sessions=sessions)
    cfg.validate()
    nmi_rate = sc["nmi_rate"] if o.nmi_rate is None else o.nmi_rate
    # The exact command that replays this run, every choice spelled out.
    replay = list(argv_prefix) + [
        "--scenario", scenario, "--cpus", cpumod.format_cpu_list(thread_cpus),
        "--threads", str(len(thread_cpus)), "--primary", str(thread_cpus[primary]),
        "--poke", cfg.poke, "--sync", cfg.sync, "--bp", cfg.bp, "--secondary-sync", secsync,
        "--site-kinds", ",".join(kinds), "--executors", str(executors), "--batch", str(cfg.batch),
        "--nmi-rate", f"{nmi_rate:g}", "--aim", ",".join(aim) or "none",
        "--protocol", cfg.protocol, "--stress", ",".join(cfg.stress) or "none",
        "--nmi-level", str(cfg.nmi_level), "--sessions", str(cfg.sessions),
        "--trace", str(cfg.trace_len), "--mutant", cfg.mutant,
        "--seed", str(cfg.seed), "--deadline", f"{cfg.deadline:g}", "--sites", str(sites)]
    if duration is not None:
        replay += ["--duration", f"{duration:g}"]
    if o.inject_delay_ns:
        replay += ["--inject-delay-ns", str(o.inject_delay_ns)]
    if o.mdwe:
        replay += ["--mdwe"]
    if cfg.nmi_mode:
        replay += ["--nmi-mode"]
    if placement != "default":
        replay += ["--placement", placement]
    return RunSpec(config=cfg, sites=None if duration is not None else sites, duration=duration,
                   nmi_rate=nmi_rate, scenario=scenario, grace=o.grace, timeout=o.timeout,
                   mdwe=o.mdwe, argv=replay, placement=placement)
