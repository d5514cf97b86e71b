"""`pyharness run` and `pyharness scenarios`: options -> RunSpec -> report."""
import os
import time
import sys

from . import cpus as cpumod
from .errors import UsageError
from .scenarios import DEFAULT, SCENARIOS, aim_bits, parse_aim, parse_stress


def scenarios_main(args):
    for name, sc in SCENARIOS.items():
        print(f"{name:18s} {sc['description']}")
        if "config" in sc:
            c = sc["config"]
            print(f"{'':18s}   bp={c['bp']} secondary-sync={c['secondary_sync']} batch={c['batch']} "
                  f"site-kinds={','.join(c['kinds'])} nmi-rate={sc['nmi_rate']:g} "
                  f"executors={sc['executors']} aim={','.join(sc.get('aim', ())) or 'none'}")
    return 0


def resolve_cpus(cpu_text, threads=None, primary_cpu=None, placement=None):
    """CPU list -> one CPU per thread (round robin) and the primary's index."""
    cpus = cpumod.usable_cpus() if cpu_text is None else cpumod.parse_cpu_list(cpu_text)
    cpumod.check_cpus(cpus)
    if placement and placement != "default":
        from .platform.placement import place
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


def build_spec(args, scenario, argv_prefix=("pyharness", "run"), duration=None):
    from .engine import Config, MUTANTS
    from .runner import RunSpec
    sc = SCENARIOS[scenario]
    c = dict(sc["config"])
    if args.mutant == "rfc-bitmap":
        raise UsageError("the rfc-bitmap mutant is now the RFC's code as posted: use "
                         "--protocol rfc-as-posted")
    if args.mutant not in MUTANTS:
        raise UsageError(f"unknown mutant '{args.mutant}'; choose from {', '.join(MUTANTS)}")
    placement = getattr(args, "placement", None) or "default"
    thread_cpus, primary = resolve_cpus(args.cpus, args.threads, args.primary, placement)
    if len(thread_cpus) < 2:
        raise UsageError("the protocol needs a primary and at least one other thread: "
                         "--threads 2 or more")
    from .engine import SINGLE_INSN_KINDS
    kinds = c["kinds"] if args.site_kinds is None else tuple(
        k.strip() for k in args.site_kinds.split(",") if k.strip())
    if args.site_kinds is None and (args.bp or c["bp"]) == "emulate":
        kinds = tuple(k for k in kinds if k in SINGLE_INSN_KINDS)   # what emulation can run
    executors = sc["executors"] if args.executors is None else args.executors
    if executors == "all":
        executors = len(thread_cpus) - 1
    secsync = args.secondary_sync or c["secondary_sync"]
    if secsync == "membarrier" and args.secondary_sync is None:
        from ._ffi import lib
        if not lib.ph_membarrier_sync_core_supported():
            secsync = "ack"
    duration = args.duration if duration is None else duration
    sites = args.sites or 1000
    aim = parse_aim(getattr(args, "aim", None))
    if aim is None:
        aim = sc.get("aim", ())
    stress = parse_stress(getattr(args, "stress", None))
    if stress is None:
        stress = tuple(c.get("stress", ()))
    nmi_mode = getattr(args, "nmi_mode", None)
    nmi_mode = c.get("nmi_mode", False) if nmi_mode is None else nmi_mode
    nmi_level = getattr(args, "nmi_level", None)
    nmi_level = c.get("nmi_level", 1) if nmi_level is None else nmi_level
    sessions = getattr(args, "sessions", None)
    if sessions is None:
        sps = sc.get("sessions_per_s")
        sessions = 1 if not sps else (max(1, int(round(duration * sps))) if duration else 4)
    cfg = Config(cpus=thread_cpus, primary=primary, sites=sites, kinds=kinds, poke=args.poke,
                 sync=args.sync, bp=args.bp or c["bp"], secondary_sync=secsync, executors=executors,
                 batch=args.batch or c["batch"], mutant=args.mutant, seed=args.seed,
                 deadline=args.deadline, trace_len=args.trace, inject_delay_ns=args.inject_delay_ns,
                 aim=aim_bits(aim), protocol=getattr(args, "protocol", "rfc") or "rfc",
                 nmi_mode=bool(nmi_mode), stress=stress, nmi_level=nmi_level, sessions=sessions)
    cfg.validate()
    nmi_rate = sc["nmi_rate"] if args.nmi_rate is None else args.nmi_rate
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
    if args.inject_delay_ns:
        replay += ["--inject-delay-ns", str(args.inject_delay_ns)]
    if getattr(args, "mdwe", False):
        replay += ["--mdwe"]
    if cfg.nmi_mode:
        replay += ["--nmi-mode"]
    if placement != "default":
        replay += ["--placement", placement]
    return RunSpec(config=cfg, sites=None if duration is not None else sites, duration=duration,
                   nmi_rate=nmi_rate, scenario=scenario, grace=args.grace, timeout=args.timeout,
                   mdwe=getattr(args, "mdwe", False), argv=replay, placement=placement)


def run_main(args, argv):
    from .outputs import check_output_path
    from .report import summary_text, write_report
    from .runner import run_stress
    scenario = args.scenario or DEFAULT
    if scenario not in SCENARIOS:
        raise UsageError(f"unknown scenario '{scenario}'; see `pyharness scenarios`")
    # Every output path is checked before any work: a missing directory or
    # an unwritable file is exit 2 now, not a lost report later.
    seen = {}
    for opt in ("json", "log", "junit", "metrics"):
        path = getattr(args, opt, None)
        if path:
            check_output_path(path, "--" + opt, stream=(opt == "log"))
            real = os.path.realpath(path) if path != "-" else "-"
            if real in seen and not real.startswith("/dev/"):
                raise UsageError(f"--{opt} and --{seen[real]} name the same file {path}")
            seen[real] = opt
    from .history.cli import open_for_writing, record
    store, tags = open_for_writing(args)      # opened and migrated before any work
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    progress = (not args.quiet) and sys.stderr.isatty()
    for line in preflight_warnings(args):
        sys.stderr.write(f"pyharness: warning: {line}\n")
    log = None
    if getattr(args, "log", None):
        from .platform.log import RunLog
        log = RunLog(args.log)
    try:
        if "segments" in SCENARIOS[scenario]:
            rep = run_mixed(args, scenario, progress, log)
        else:
            spec = build_spec(args, scenario)
            spec.stop_on_violation = getattr(args, "stop_on_violation", False)
            rep = run_stress(spec, progress=progress, log=log)
        if getattr(args, "retest", 0) and rep["verdict"] == "fail" and rep["status"] != "interrupted":
            from .platform.retest import retest
            failing = scenario
            if "segments" in rep:   # mixed: retest the first segment that failed
                failing = next((p["scenario"] for p in rep["segments"] if p["verdict"] == "fail"),
                               SCENARIOS[scenario]["segments"][0])
            rep["retest"] = retest(args, failing, rep, args.retest, progress=progress)
        if log:
            if rep.get("retest"):
                log.write({"type": "retest", **{k: v for k, v in rep["retest"]["reproduction"].items()
                                                if k != "reruns"},
                           "verdict": rep["retest"]["localization"]["verdict"]}, sync=True)
            log.end(rep)
    finally:
        if log:
            log.close()
    ok = True       # the report first: a closed stdout must not lose it
    rep.setdefault("started", started)
    if args.json:
        ok = write_report(rep, args.json, "--json") and ok
    stored = record(store, rep, tags, "pyharness run")
    from .outputs import write_output
    from .platform import exports
    for opt, render, suffix in (("junit", exports.junit_text, ".xml"),
                                ("metrics", exports.metrics_text, ".prom")):
        path = getattr(args, opt, None)
        if path:
            ok = write_output(path, render(rep), "--" + opt, opt, suffix) and ok
    code = rep["exit_code"]
    if (not ok or not stored) and code == 0:
        code = 3          # an output or the store (the environment) failed; the verdict stands
    # The summary goes to stdout, unless the report itself does (--json -).
    out = sys.stderr if args.json == "-" else sys.stdout
    try:
        text = summary_text(rep)
        print(text.splitlines()[0] if args.quiet else text, file=out)
        out.flush()
    except BrokenPipeError:       # | head: the report is written; the verdict stands
        sys.stdout = open(os.devnull, "w")
    return code


def preflight_warnings(args):
    """Sentences warning, before the run, of what this configuration asks
    that the box may not deliver."""
    from .platform.capacity import signal_warning
    sc = SCENARIOS.get(args.scenario or DEFAULT, {})
    rate = args.nmi_rate if args.nmi_rate is not None else sc.get("nmi_rate", 0)
    try:
        cpus = cpumod.parse_cpu_list(args.cpus) if args.cpus else cpumod.usable_cpus()
    except UsageError:
        return []            # the run itself says what is wrong with the list
    threads = args.threads or max(2, len(cpus))
    w = signal_warning(threads, rate, len(set(cpus)))
    return [w] if w else []


def run_mixed(args, scenario, progress, log=None):
    """Segments of the component scenarios, in turn, until the duration is used."""
    from .runner import run_stress
    segs = SCENARIOS[scenario]["segments"]
    total = args.duration if args.duration is not None else 3.0 * len(segs)
    per = max(total / (2 * len(segs)), 0.5)
    parts, spent, k = [], 0.0, 0
    while spent < total - 1e-9:
        name = segs[k % len(segs)]
        d = min(per, total - spent)
        spec = build_spec(args, name, duration=d)
        spec.config.seed = args.seed + k
        spec.stop_on_violation = getattr(args, "stop_on_violation", False)
        rep = run_stress(spec, progress=progress, log=log)
        rep["segment"] = k
        parts.append(rep)
        spent += d
        k += 1
        if rep["status"] in ("interrupted", "hung", "crashed") or (
                spec.stop_on_violation and rep["verdict"] == "fail"):
            break
    return merge_reports(parts, scenario, args)


def merge_reports(parts, scenario, args):
    first = parts[0]
    violations = [dict(v, segment=p["segment"], segment_scenario=p["scenario"])
                  for p in parts for v in p["violations"]]
    counts = {}
    for p in parts:
        for name, n in p["violation_counts"].items():
            counts[name] = counts.get(name, 0) + n
    totals = {"sites_patched": sum(p["totals"].get("sites_patched", 0) for p in parts),
              "exec": [sum(p["totals"].get("exec", [0, 0])[i] for p in parts) for i in (0, 1)],
              "nmis": sum(p["totals"].get("nmis", 0) for p in parts),
              "violations": sum(counts.values()),
              "bp_hits": {}}
    for p in parts:
        for k, v in p["totals"].get("bp_hits", {}).items():
            totals["bp_hits"][k] = totals["bp_hits"].get(k, 0) + v
    evidence = {}
    for p in parts:    # evidence adds up across segments; costs are per engine
        for k, v in p.get("checks", {}).get("evidence", {}).items():
            if isinstance(v, int) and not k.endswith("_ns"):
                evidence[k] = evidence.get(k, 0) + v
            else:
                evidence.setdefault(k, v)
    gaps = []
    for p in parts:
        gaps += [g for g in p.get("checks", {}).get("not_observable", []) if g not in gaps]
    statuses = [p["status"] for p in parts]
    status = next((s for s in ("crashed", "hung", "interrupted", "aborted") if s in statuses), "complete")
    codes = [p["exit_code"] for p in parts]
    exit_code = 130 if 130 in codes else max(codes)
    from .report import invariant_table
    rep = dict(first)
    verdict = "fail" if violations or exit_code not in (0, 130) else (
        "incomplete" if status == "interrupted" else "pass")
    rep.update({"scenario": scenario, "verdict": verdict,
                "status": status, "exit_code": exit_code, "violations": violations,
                "violation_counts": counts, "invariants": invariant_table(counts),
                "totals": totals, "elapsed_s": sum(p["elapsed_s"] for p in parts),
                "checks": {"evidence": evidence, "not_observable": gaps},
                "health": {"segments": [p.get("health") for p in parts]},
                "segments": [{k: p[k] for k in ("scenario", "verdict", "status", "exit_code", "totals",
                                                 "distributions", "config", "replay", "elapsed_s")}
                             for p in parts],
                "replay": "pyharness run " + " ".join(
                    ["--scenario", scenario, "--seed", str(args.seed)] +
                    (["--duration", f"{args.duration:g}"] if args.duration is not None else []) +
                    (["--cpus", args.cpus] if args.cpus else []))})
    return rep
