"""`pyharness selftest`: run every seeded bug and the correct protocol; a
mutant must be caught (by a named invariant, within 10 s), the correct
protocol must show zero violations."""
import time

from .run import RunOptions, resolve

MUTANT_CAP_S = 10.0

# (mutant, scenario, extra flags): each in the scenario that can expose it.
PLAN = [
    ("none", "rfc-native", {}),
    ("none", "upstream-emulated", {}),
    ("none", "batch", {}),
    # The RFC selftest's conditions, all together: our protocol stays clean ...
    ("none", "rfc-selftest", {}),
    ("no-int3", "rfc-native", {}),
    ("first-byte-first", "rfc-native", {}),
    ("skip-ack-wait", "rfc-native", {}),
    ("skip-sync-one", "rfc-native", {}),
    ("double-ack", "rfc-native", {}),
    # The descriptor race needs a handler holding a reference when the
    # primary retires it: batches keep executors trapping through the whole
    # INT3 window, and 4 threads on 2 CPUs get handlers preempted mid-flight.
    # Measured on 2 vCPUs: caught in 0.2-0.8 s (was 0.4-8.5 s without).
    ("early-retract", "upstream-emulated", {"batch": 16, "threads": 4}),
    ("patch-sync-loop", "rfc-native", {}),
    # A dropped tail write: only (g) bytes and (c) the final variant can see it.
    ("lost-tail", "rfc-native", {"site_kinds": "movret"}),
]


def _known_to_fail():
    """Protocols known to fail (pyharness/protocols/, must_fail), as rows of
    the plan: the RFC's code as posted is no seeded bug, but its findings,
    diagnosed (README "What pyharness finds in the RFC as posted")."""
    from .protocols import REGISTRY
    return [(p.name, p.must_fail[0], {"protocol": p.name, **p.must_fail[1]})
            for p in REGISTRY.values() if p.must_fail]


PLAN += _known_to_fail()
PROTOCOL_ROWS = {name for name, _, _ in _known_to_fail()}


def options(cpus, mutant, seconds, **extra):
    """The selftest's RunOptions: alias/iret (works under MDWE, the fast
    sync), a 5 s deadline, the plan's extras."""
    return RunOptions(cpus=cpus, poke="alias", sync="iret", mutant=mutant, deadline=5.0,
                      sites=1000, duration=seconds).replace(**extra)


class SelftestInterrupted(KeyboardInterrupt):
    """Ctrl-C during the selftest; ``rows`` holds the runs that finished."""

    def __init__(self, rows):
        super().__init__("interrupted")
        self.rows = rows


def run_selftest(seconds=3.0, cpus=None, progress=False):
    from .runner import run_stress
    rows = []
    for mutant, scenario, extra in PLAN:
        dur = seconds if mutant == "none" else MUTANT_CAP_S
        spec = resolve(scenario, options(cpus, "none" if mutant in PROTOCOL_ROWS else mutant, dur,
                                         **extra))
        spec.stop_on_violation = mutant != "none"
        t0 = time.monotonic()
        try:
            rep = run_stress(spec, progress=progress)
        except KeyboardInterrupt:      # outside the supervised part of the run
            raise SelftestInterrupted(rows) from None
        wall = time.monotonic() - t0
        if rep["status"] == "interrupted":
            # Ctrl-C: stop here.  What ran so far is kept; the run that was
            # cut short is no verdict on the protocol either way.
            raise SelftestInterrupted(rows)
        invs = sorted(rep["violation_counts"])
        caught = rep["verdict"] == "fail"
        after = rep.get("first_evidence_s")
        if after is None and caught:
            after = rep["elapsed_s"]
        ok = (not caught and rep["status"] == "complete") if mutant == "none" else (
            caught and after is not None and after <= MUTANT_CAP_S)
        if mutant in PROTOCOL_ROWS:
            invs = sorted(f["id"] for f in rep.get("diagnosis", {}).get("findings", [])) or invs
        rows.append({"mutant": mutant, "scenario": scenario, "caught": caught, "invariants": invs,
                     "after_s": after, "wall_s": wall, "status": rep["status"], "ok": ok,
                     "totals": {k: rep["totals"].get(k) for k in ("sites_patched", "bp_hits", "nmis")},
                     "replay": rep["replay"]})
    return rows


# Source mutants (tests/mutants) the selftest also builds and runs: one
# per kind of evidence (bytes read back at publish, the kernel's view of the
# mappings, the crash record of an INT3 nobody resolves).
SOURCE_MUTANTS = "publish-before-poke,text-left-writable,bp-rewind-two-bytes"


def run_source_mutants(cpus=None, progress=None):
    """Rows for the source mutants, or one row saying why none ran."""
    from . import mutate
    root = mutate.source_root()
    if root is None or not __import__("shutil").which("patch"):
        return [{"mutant": "source mutants", "scenario": "-", "caught": False, "invariants": [],
                 "after_s": None, "wall_s": 0.0, "status": "skipped", "ok": True,
                 "skipped": "no source tree (csrc/, tests/mutants/) or no patch(1) here: run "
                            "`pyharness selftest` from a checkout", "totals": {}, "replay": None}]
    ms = mutate.load_mutants(mutate.default_mutants_dir(root), SOURCE_MUTANTS)
    rows = []
    for r in mutate.evaluate(ms, runs=1, seconds=MUTANT_CAP_S, cpus=cpus, progress=progress,
                             root=root):
        run = (r.get("runs") or [{}])[0]
        after = r["after_s"]["max"] if r.get("after_s") else None
        rows.append({"mutant": "src:" + r["mutant"], "scenario": run.get("scenario", "-"),
                     "caught": r["verdict"] == "caught", "invariants": r.get("invariants", []),
                     "after_s": after, "wall_s": run.get("wall_s", 0.0), "status": run.get("status"),
                     "ok": r["verdict"] == "caught", "totals": {}, "replay": run.get("replay"),
                     "error": r.get("build_error")})
    return rows


def format_table(rows):
    bys = [",".join(r["invariants"]) or "-" for r in rows]
    w = max([len("by invariant")] + [len(b) for b in bys])
    mw = max([len("mutant")] + [len(r["mutant"]) for r in rows])
    lines = [f"{'mutant':{mw}s} {'scenario':18s} {'caught':7s} {'by invariant':{w}s} {'after':>8s}  result"]
    for r, by in zip(rows, bys):
        after = f"{r['after_s']:.3f}s" if r["after_s"] is not None else "-"
        caught = "-" if r.get("skipped") else "yes" if r["caught"] else "no"
        res = "skipped" if r.get("skipped") else "ok" if r["ok"] else "FAIL"
        lines.append(f"{r['mutant']:{mw}s} {r['scenario']:18s} {caught:7s} {by:{w}s} {after:>8s}  {res}")
    return "\n".join(lines)


# The litmus controls, briefly: the positive control (the full INT3
# protocol) must show no forbidden outcome; the negative control (byte-wise
# writes, no sync) must show torn ones, or this box could not see tearing
# (noted, not a failure: a loaded box may hide it).
LITMUS_SECONDS = 0.5


def run_litmus_controls(cpus=None):
    from .cpus import parse_cpu_list, usable_cpus
    from .errors import PyharnessError
    from .litmus import spec, suite
    cpu_list = parse_cpu_list(cpus) if cpus else usable_cpus()
    controls = [t for t in spec.shipped() if t.control]
    try:
        doc = suite.run_suite(controls, cpu_list, LITMUS_SECONDS, positive_min=10 ** 6,
                              positive_cap=10.0)
    except PyharnessError as exc:
        return [{"mutant": "litmus controls", "scenario": "-", "caught": False, "invariants": [],
                 "after_s": None, "wall_s": 0.0, "status": "skipped", "ok": True,
                 "skipped": str(exc), "totals": {}, "replay": None}]
    rows = []
    for v in doc["verdicts"]:
        if "observation" not in v:
            rows.append({"mutant": f"litmus:{v['test']}", "scenario": v["placement"], "caught": False,
                         "invariants": [], "after_s": None, "wall_s": 0.0, "status": "skipped",
                         "ok": True, "skipped": v["unavailable"], "totals": {}, "replay": v["replay"]})
            continue
        neg = v["control"] == "negative"
        rows.append({"mutant": f"litmus:{v['test']}", "scenario": v["placement"],
                     "caught": v["validated"],
                     "invariants": sorted(o for o, m in v["marks"].items()
                                          if m["protocol"] == "forbidden" and
                                          (v["histogram"].get(o) or v["outside"].get(o))),
                     "after_s": None, "wall_s": v["time_s"], "status": "complete",
                     # the negative control not seeing tearing is a note, never a failure
                     "ok": True if neg else not v["validated"],
                     **({} if not neg or v["validated"] else
                        {"skipped": "the negative control saw no tearing: this box could not see it"}),
                     "totals": {"raced": v["raced"], "positive": v["positive"]}, "replay": v["replay"]})
    return rows


# ---------------------------------------------------------------------------
# The false-positive matrix (`pyharness selftest --false-positives`): the
# correct protocols under every condition a user can ask for, several seeds
# each.  A FAIL here is a FAIL of a correct protocol: a defect of the harness
# or a model of the box that did not hold.  "reduced" (the box took over half
# of some stress condition) is no failure, and is counted apart.

def correct_protocols():
    """The protocols in the table that are not known to fail."""
    from .protocols import REGISTRY
    return [p.name for p in REGISTRY.values() if not p.must_fail]


def matrix_configs(subset=False):
    """[(label, scenario, {RunOptions field: value})]: every scenario with
    every correct protocol, then one condition at a time on rfc-native
    (each --sync, --poke, block sites, --nmi-rate 0 / 2,000 / 20,000,
    --sessions 1 / 20 / 100, --threads 2 / 4 / 8, --stress all, NMI mode,
    --deadline 2).  subset: a few of them, for CI."""
    from .engine import available_syncs
    from .scenarios import SCENARIOS
    out = []
    for sc in SCENARIOS:
        for proto in correct_protocols():
            out.append((f"{sc} --protocol {proto}", sc, {"protocol": proto}))
    base = "rfc-native"
    for s in available_syncs():
        out.append((f"--sync {s}", base, {"sync": s}))
    for p in ("mprotect", "alias", "rwx"):
        out.append((f"--poke {p}", base, {"poke": p}))
    out.append(("--site-kinds block", base, {"site_kinds": "block"}))
    for rate in (0, 2000, 20000):
        out.append((f"--nmi-rate {rate}", base, {"nmi_rate": float(rate)}))
    out.append(("--nmi-rate 20000 --site-kinds block", base, {"nmi_rate": 20000.0, "site_kinds": "block"}))
    for n in (1, 20, 100):
        out.append((f"--sessions {n}", base, {"sessions": n}))
    out.append(("--sessions 100 --nmi-rate 20000 --deadline 2", base,
                {"sessions": 100, "nmi_rate": 20000.0, "deadline": 2.0}))
    for t in (2, 4, 8):
        out.append((f"--threads {t}", base, {"threads": t}))
    out.append(("--stress all", base, {"stress": "all"}))
    out.append(("--nmi-mode", base, {"nmi_mode": True}))
    out.append(("--deadline 2", base, {"deadline": 2.0}))
    out.append(("--threads 4 --nmi-rate 20000", "batch", {"threads": 4, "nmi_rate": 20000.0}))
    if subset:
        keep = {"rfc-native --protocol rfc", "rfc-selftest --protocol rfc", "upstream-emulated --protocol rfc-ticket",
                "--nmi-rate 20000 --site-kinds block", "--threads 4", "--nmi-mode"}
        out = [c for c in out if c[0] in keep]
    return out


def run_matrix(seeds=10, seconds=5.0, cpus=None, subset=False, on_row=None):
    """Each configuration, each seed: [{config, scenario, seed, verdict,
    reduced, invariants, status, replay}].  on_row(row) after each run."""
    from .run import run_mixed
    from .runner import run_stress
    from .scenarios import SCENARIOS
    rows = []
    for label, scenario, extra in matrix_configs(subset):
        for seed in range(1, seeds + 1):
            opts = RunOptions(cpus=cpus, seed=seed, duration=seconds).replace(**extra)
            if "segments" in SCENARIOS[scenario]:
                rep = run_mixed(opts, scenario, progress=False)
            else:
                rep = run_stress(resolve(scenario, opts), progress=False)
            if rep["status"] == "interrupted":
                raise SelftestInterrupted(rows)
            row = {"config": label, "scenario": scenario, "seed": seed, "verdict": rep["verdict"],
                   "status": rep["status"], "reduced": [r["name"] for r in rep.get("stress_reduced") or []],
                   "invariants": sorted(rep["violation_counts"]), "replay": rep["replay"]}
            rows.append(row)
            if on_row:
                on_row(row)
    return rows


def format_matrix(rows):
    """One line per configuration: runs, pass, reduced (a pass the box cut
    short of some stress), FAIL and by what."""
    by = {}
    for r in rows:
        by.setdefault(r["config"], []).append(r)
    w = max([len("configuration")] + [len(k) for k in by])
    lines = [f"{'configuration':{w}s} {'runs':>4s} {'pass':>4s} {'reduced':>7s} {'FAIL':>4s}  failed by / reduced"]
    for k, rs in by.items():
        fails = [r for r in rs if r["verdict"] != "pass"]
        red = [r for r in rs if r["verdict"] == "pass" and r["reduced"]]
        what = sorted({i for r in fails for i in r["invariants"]} or
                      {n.split("/")[0] for r in red for n in r["reduced"]})
        lines.append(f"{k:{w}s} {len(rs):4d} {len(rs) - len(fails):4d} {len(red):7d} {len(fails):4d}  "
                     + (",".join(what) or "-"))
    fails = [r for r in rows if r["verdict"] != "pass"]
    lines.append(f"{len(rows)} runs of {len(by)} configurations: {len(fails)} FAIL of a correct protocol"
                 + (f" (first: {fails[0]['replay']})" if fails else ""))
    return "\n".join(lines)
