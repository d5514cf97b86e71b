"""`pyharness campaign`: the selftest, the scenario matrix across placements,
the bench (and, from a source checkout, the mutation suite), sized by a
time budget, with every step's output kept under one directory named by
host and date, and a summary at the end.

    pyharness campaign --budget 5m            # a smoke test of a box
    pyharness campaign --budget 8h --out /data/pyharness
    pyharness campaign --budget forever       # until Ctrl-C, with a heartbeat

Each step runs as its own `pyharness` process, so a step that crashes or
hangs is a result, not the end of the campaign.  summary.json
("pyharness.campaign/1") holds the machine's evidence and every step's
command, exit code, verdict and violations; `pyharness merge` reads it.
"""
import datetime
import json
import os
import signal
import subprocess
import sys
import time

from ..documents import KINDS
from ..errors import EXIT_INTERRUPTED, UsageError

SCHEMA = KINDS["campaign"]
SCENARIOS = ("rfc-native", "upstream-emulated", "batch", "rfc-selftest")
PLACEMENTS = ("default", "spread", "one-per-core", "smt-pairs", "cross-package")
# budget -> the litmus suite's --time, --positive-executions, --positive-cap
LITMUS = {"5m": (0.3, 10 ** 7, 20.0), "1h": (2.0, 10 ** 8, 150.0), "8h": (10.0, 10 ** 9, 900.0)}
# budget -> (selftest seconds, seconds per scenario run, mixed seconds, bench args, mutate runs)
TIERS = {"5m": (1.0, 10.0, 20.0, ["--quick"], 0),
         "1h": (3.0, 120.0, 600.0, [], 3),
         "8h": (5.0, 1200.0, 3600.0, [], 10)}
HEARTBEAT_S = 60.0
STORED = ("run", "bench", "litmus", "kernel")     # the steps whose results go to --store


def parse_budget(text):
    """A tier name (5m, 1h, 8h, forever), or a duration ("90s", "20m") that
    scales the 5m tier."""
    if text in TIERS or text == "forever":
        return text
    from ..units import parse_duration
    try:
        v = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"--budget {exc}; use 5m, 1h, 8h, forever, or a duration like 90s") from None
    if v <= 0:
        raise UsageError(f"--budget {text}: must be more than 0")
    return v


def _tier(budget):
    if isinstance(budget, float):      # scale the 5m tier to the budget
        k = budget / 300.0
        st, run, mixed, bench, mut = TIERS["5m"]
        return (max(0.5, st * min(k, 1)), max(1.0, run * k), max(2.0, mixed * k),
                ["--quick"], 0)
    return TIERS["1h" if budget == "forever" else budget]


def _placements(cpus):
    """Placements that give this box a distinct thread layout."""
    from ..errors import PyharnessError
    from ..platform.placement import place
    seen, out = set(), []
    for p in PLACEMENTS:
        try:
            order = tuple(place(p, cpus))
        except PyharnessError:
            continue
        if order not in seen:
            seen.add(order)
            out.append(p)
    return out


def plan(budget, cpus, mutate_ok, kernel=False):
    st, run_s, mixed_s, bench, mut = _tier(budget)
    # Fit the runs in about 85% of a fixed budget (selftest, bench and mutants
    # take the rest): more placements, shorter runs.
    n_runs = len(_placements(cpus)) * len(SCENARIOS) + 1
    total = {"5m": 300.0, "1h": 3600.0, "8h": 28800.0}.get(budget) if not isinstance(budget, float) \
        else budget
    if total:
        fit = (0.85 * total - mixed_s) / n_runs
        run_s = max(1.0, min(run_s, fit))
    steps = [("selftest", ["selftest", "--seconds", f"{st:g}"])]
    for p in _placements(cpus):
        for sc in SCENARIOS:
            steps.append((f"run-{sc}-{p}", ["run", "--scenario", sc, "--placement", p,
                                            "--duration", f"{run_s:g}"]))
    steps.append(("run-mixed", ["run", "--scenario", "mixed", "--nmi-rate", "2000",
                                "--duration", f"{mixed_s:g}"]))
    from ..protocols import REGISTRY
    for proto in REGISTRY.values():     # protocols known to fail: their findings
        if proto.must_fail:
            steps.append((f"run-{proto.name}", ["run", "--scenario", proto.must_fail[0],
                                                "--protocol", proto.name, "--duration", f"{run_s:g}",
                                                "--deadline", "1", "--stop-on-violation"]))
    steps.append(("bench", ["bench"] + bench))
    # The litmus suite (it touches nothing outside its own processes)
    if isinstance(budget, float):      # scaled like the 5m tier
        k = min(1.0, budget / 300.0)
        lt, pos, cap = max(0.1, 0.3 * k), max(10 ** 5, int(10 ** 7 * k)), max(2.0, 20.0 * k)
    else:
        lt, pos, cap = LITMUS["1h" if budget == "forever" else budget]
    steps.append(("litmus", ["litmus", "--time", f"{lt:g}", "--positive-executions", str(pos),
                             "--positive-cap", f"{cap:g}"]))
    if kernel:
        # the running kernel's patching (global state, restored): only when asked
        ks = {"5m": 30.0, "1h": 300.0, "8h": 1800.0}.get(budget if not isinstance(budget, float) else "",
                                                         max(5.0, 0.1 * budget) if isinstance(budget, float)
                                                         else 300.0)
        steps.append(("kernel", ["kernel", "--duration", f"{ks:g}"]))
    if mut and mutate_ok:
        steps.append(("mutate", ["mutate", "--runs", str(mut)]))
    return steps


def _json_of(path):
    """A step's document, validated; None when the step wrote none or an
    invalid one (its note says "(no JSON)" and its exit code stands)."""
    from .. import documents
    try:
        return documents.load(path)
    except documents.DocumentError:
        return None


def _note(name, d, rc):
    """What a step's JSON says, in a line, and the fields merge needs."""
    if d is None:
        return {"verdict": "error" if rc else "pass", "note": "(no JSON)"}
    schema = str(d.get("schema", ""))
    if schema.startswith("pyharness.run/"):
        return {"verdict": d["verdict"], "status": d["status"],
                "violations": d.get("violation_counts", {}),
                "sites": d["totals"].get("sites_patched"),
                "findings": [f["id"] for f in d.get("diagnosis", {}).get("findings", [])],
                "note": f"{d['verdict']} ({d['status']}), {d['totals'].get('sites_patched')} sites"}
    if schema.startswith("pyharness.bench/"):
        bad = [t["target"] for t in d.get("targets", []) if not t["pass"]]
        return {"verdict": "fail" if rc == 1 else "pass",
                "note": f"bench: {len(d.get('targets', [])) - len(bad)}/{len(d.get('targets', []))} "
                        f"targets met"}
    if schema.startswith("pyharness.kernel/"):
        return {"verdict": d["verdict"], "violations": {v["invariant"]: 1 for v in d["violations"]},
                "note": f"kernel: {d['verdict']}, restored: {'yes' if d['restored'] else 'NO'}, "
                        f"{sum(len(t['items']) for t in d['targets'].values())} items flipped"}
    if schema.startswith("pyharness.litmus/"):
        vs = [v for v in d["verdicts"] if "observation" in v]
        seen = sorted({v["test"] for v in vs if v["validated"] and v.get("control") != "negative"})
        ctl = d["controls"]
        return {"verdict": "fail" if rc == 1 else "pass",
                "note": f"litmus: {len(vs)} verdicts, controls negative {ctl['negative']} / positive "
                        f"{ctl['positive']}" + (f"; forbidden outcomes in {', '.join(seen)}" if seen else "")}
    if schema.startswith("pyharness.mutate/"):
        sc = d["score"]
        return {"verdict": "pass" if sc["caught"] == sc["scored"] else "fail",
                "note": f"mutants caught: {sc['caught']}/{sc['scored']}"}
    if "pass" in d:
        return {"verdict": "pass" if d["pass"] else "fail", "note": "selftest " +
                ("pass" if d["pass"] else "FAIL")}
    return {"verdict": "pass" if rc == 0 else "fail", "note": ""}


def run_campaign(budget, out_root, cpus=None, progress=print, kernel=False, store=None):
    from ..cpus import format_cpu_list, parse_cpu_list, usable_cpus
    from ..machine import machine_info
    from ..platform import evidence
    from ..mutate import source_root
    cpu_list = parse_cpu_list(cpus) if cpus else usable_cpus()
    from ..machine import hostname
    host = hostname()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = os.path.join(os.path.abspath(out_root), f"{host}-{stamp}")
    out, k = base, 1
    while True:                       # two campaigns started in the same second
        try:
            os.makedirs(out)
            break
        except FileExistsError:
            k += 1
            out = f"{base}-{k}"
    env = {"machine": machine_info(), "evidence": evidence.collect(cpu_list)}
    with open(os.path.join(out, "env.json"), "w") as f:
        json.dump(env, f, indent=1)
    shown = f"{budget:g}s" if isinstance(budget, float) else str(budget)   # 60s, not 60.0
    summary = {"schema": SCHEMA, "host": host, "dir": out, "budget": shown,
               "cpus": format_cpu_list(cpu_list), "started": time.time(), "ended": None,
               "machine": env["machine"], "evidence": env["evidence"], "steps": [],
               "interrupted": False}

    def save():   # atomically: merge may read it while we run, or after a kill
        tmp = os.path.join(out, ".summary.json.tmp")
        with open(tmp, "w") as f:
            json.dump(summary, f, indent=1)
        os.replace(tmp, os.path.join(out, "summary.json"))
    save()
    steps = plan(budget, cpu_list, mutate_ok=source_root() is not None, kernel=kernel)
    rounds = 0
    last_beat = time.monotonic()
    try:
        while True:
            for name, args in steps:
                tag = name if budget != "forever" else f"{name}-r{rounds}"
                path = os.path.join(out, tag)
                cmd = [sys.executable, "-m", "pyharness"] + args + ["--cpus", format_cpu_list(cpu_list),
                                                                    "--json", path + ".json"]
                if store and args[0] in STORED:
                    cmd += ["--store", store]
                progress(f"[{datetime.datetime.now():%H:%M:%S}] {tag}: {' '.join(cmd[2:])}")
                with open(path + ".out", "w") as so, open(path + ".err", "w") as se:
                    child = subprocess.Popen(cmd, stdout=so, stderr=se, cwd=out)
                    # Ctrl-C reaches the step too (one process group): it
                    # writes its interrupted report and exits 130; we wait
                    # for it and keep it, then stop.
                    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
                    try:
                        rc = child.wait()
                    finally:
                        signal.signal(signal.SIGINT, old)
                if rc < 0:                    # killed by a signal (OOM, an operator)
                    rc = 128 - rc
                with open(path + ".rc", "w") as f:
                    f.write(f"{rc}\n")
                summary["steps"].append({"name": tag, "cmd": cmd[2:], "rc": rc,
                                         **_note(tag, _json_of(path + ".json"), rc)})
                save()
                progress(f"    -> exit {rc}: {summary['steps'][-1]['note']}")
                if rc == EXIT_INTERRUPTED:
                    raise KeyboardInterrupt
                if budget == "forever" and time.monotonic() - last_beat >= HEARTBEAT_S:
                    last_beat = time.monotonic()
                    with open(os.path.join(out, "heartbeat"), "w") as f:
                        f.write(f"{time.time()} round {rounds} step {tag}\n")
            rounds += 1
            if budget != "forever":
                break
    except KeyboardInterrupt:
        summary["interrupted"] = True
    summary["ended"] = time.time()
    save()
    return summary


def expected_to_fail(step):
    """The RFC as posted fails by design: its findings are the result."""
    return step["name"].startswith("run-rfc-as-posted")


def summary_text(summary):
    from ..cpus import describe_cpus, parse_cpu_list
    try:
        cpus = describe_cpus(parse_cpu_list(summary["cpus"]))
    except Exception:   # noqa: BLE001 - an old summary's text stands as it is
        cpus = summary["cpus"]
    lines = [f"campaign {summary['dir']} ({summary['budget']}, CPUs {cpus}):"]
    for s in summary["steps"]:
        note = s["note"]
        if expected_to_fail(s):
            note += (f"; the RFC as posted, findings: {', '.join(s.get('findings') or []) or '-'} "
                     f"(expected)")
        lines.append(f"  {s['name']:36s} {s['rc']:>4d}  {note}")
    worst = max((s["rc"] for s in summary["steps"] if not expected_to_fail(s)), default=0)
    lines.append("campaign: " + ("interrupted" if summary["interrupted"] else
                                 "PASS" if worst == 0 else f"attention needed (worst exit code {worst})"))
    return "\n".join(lines)
