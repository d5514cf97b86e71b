"""`pyharness run` and `pyharness scenarios`: the arguments become a
RunOptions here, at the boundary; below it nothing sees argparse."""
import os
import sys
import time

from .. import cpus as cpumod
from ..errors import UsageError
from ..run import RunOptions
from ..scenarios import DEFAULT, SCENARIOS


def run_options(args):
    """The RunOptions of parsed `pyharness run` arguments."""
    return RunOptions(**{k: getattr(args, k) for k in RunOptions.names()})


def scenarios_main(args):
    for name, sc in SCENARIOS.items():
        print(f"{name:18s} {sc['description']}")
        if "config" in sc:
            c = sc["config"]
            print(f"{'':18s}   bp={c['bp']} secondary-sync={c['secondary_sync']} batch={c['batch']} "
                  f"site-kinds={','.join(c['kinds'])} nmi-rate={sc['nmi_rate']:g} "
                  f"executors={sc['executors']} aim={','.join(sc.get('aim', ())) or 'none'}")
    return 0


def run_main(args, argv):
    from ..outputs import check_output_path
    from ..report import summary_text, write_report
    from ..runner import run_stress
    from ..run import resolve, run_mixed
    opts = run_options(args)
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
    from ..history.recording import open_for_writing, record
    store, tags = open_for_writing(args.store, args.tag)   # opened and migrated before any work
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    progress = (not args.quiet) and sys.stderr.isatty()
    for line in preflight_warnings(args):
        sys.stderr.write(f"pyharness: warning: {line}\n")
    log = None
    if getattr(args, "log", None):
        from ..platform.log import RunLog
        log = RunLog(args.log)
    try:
        if "segments" in SCENARIOS[scenario]:
            rep = run_mixed(opts, scenario, progress, log)
        else:
            spec = resolve(scenario, opts)
            spec.stop_on_violation = opts.stop_on_violation
            rep = run_stress(spec, progress=progress, log=log)
        if getattr(args, "retest", 0) and rep["verdict"] == "fail" and rep["status"] != "interrupted":
            from ..platform.retest import retest
            failing = scenario
            if "segments" in rep:   # mixed: retest the first segment that failed
                failing = next((p["scenario"] for p in rep["segments"] if p["verdict"] == "fail"),
                               SCENARIOS[scenario]["segments"][0])
            rep["retest"] = retest(opts, failing, rep, args.retest, progress=progress)
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
    from ..outputs import write_output
    from ..platform import exports
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
    from ..platform.capacity import signal_warning
    sc = SCENARIOS.get(args.scenario or DEFAULT, {})
    rate = args.nmi_rate if args.nmi_rate is not None else sc.get("nmi_rate", 0)
    try:
        cpus = cpumod.parse_cpu_list(args.cpus) if args.cpus else cpumod.usable_cpus()
    except UsageError:
        return []            # the run itself says what is wrong with the list
    threads = args.threads or max(2, len(cpus))
    w = signal_warning(threads, rate, len(set(cpus)))
    return [w] if w else []
