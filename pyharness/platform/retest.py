"""Retest on failure, then localization (--retest N).

A failing run is rerun N times, first with the same seed, then with new
seeds: the reproduction rate ("failed 3 of 4", the original included) and
each time to failure.  Then reruns that move the roles: each CPU left out
in turn, the primary moved to each other CPU, each package alone.  The
verdict says whether the failures follow a CPU, a core, a package, or
nothing: "fails in every placement: the protocol or the software, not a
core".  Each rerun stops at its first evidence.
"""
import statistics

from ..cpus import format_cpu_list


def _rerun(opts, scenario, progress, **over):
    """One rerun: the run's RunOptions with ``over`` changed."""
    from ..errors import PyharnessError
    from ..run import resolve
    from ..runner import run_stress
    a = opts.replace(**over)
    try:
        spec = resolve(scenario, a)
        spec.stop_on_violation = True
        rep = run_stress(spec, progress=progress)
    except PyharnessError as exc:    # this placement cannot run: say so, keep the rest
        return {"cpus": over.get("cpus", opts.cpus), "cpu_set": [], "failed": False,
                "error": str(exc), "status": "not run", "invariants": [], "seed": a.seed,
                "time_to_failure_s": None, "replay": None}
    t = rep.get("first_evidence_s")
    return {"cpus": format_cpu_list(spec.config.cpus), "cpu_set": sorted(set(spec.config.cpus)),
            "threads": len(spec.config.cpus), "primary_cpu": spec.config.cpus[spec.config.primary],
            "seed": spec.config.seed, "failed": rep["verdict"] == "fail", "status": rep["status"],
            "time_to_failure_s": t if rep["verdict"] == "fail" else None,
            "invariants": sorted(rep["violation_counts"]), "replay": rep.get("replay")}


def localize(runs, topo):
    """The verdict from the localization runs (each with cpu_set, failed)."""
    if not runs:
        return {"verdict": "no localization runs (one CPU)", "follows": None}
    failing = [r for r in runs if r["failed"]]
    passing = [r for r in runs if not r["failed"]]
    if not passing:
        return {"verdict": "fails in every placement: the protocol or the software, not a core",
                "follows": "software"}
    if not failing:
        return {"verdict": "passed in every placement after failing: intermittent, or it needs the "
                           "original placement; see the reproduction rate", "follows": None}
    # The finest unit (a CPU, a core, a package) that every failing placement
    # used and every passing one left out; it must be the only one.
    levels = [("cpu", {c: {c} for c in topo}), ("core", {}), ("package", {})]
    for c, (p, k) in topo.items():
        levels[1][1].setdefault((p, k), set()).add(c)
        levels[2][1].setdefault(p, set()).add(c)
    for level, units in levels:
        fits = [u for u, cs in units.items()
                if all(set(r["cpu_set"]) & cs for r in failing)
                and all(not set(r["cpu_set"]) & cs for r in passing)]
        if len(fits) != 1:
            continue
        u = fits[0]
        cs = format_cpu_list(units[u])
        if level == "cpu":
            p, k = topo[u]
            return {"verdict": f"follows CPU {u} (package {p}, core {k}): every placement with it "
                               f"failed, every placement without it passed",
                    "follows": {"cpu": u, "package": p, "core": k}}
        if level == "core":
            return {"verdict": f"follows core {u[1]} of package {u[0]} (CPUs {cs})",
                    "follows": {"core": u[1], "package": u[0], "cpus": sorted(units[u])}}
        return {"verdict": f"follows package {u} (CPUs {cs})",
                "follows": {"package": u, "cpus": sorted(units[u])}}
    return {"verdict": "inconclusive: no single CPU, core or package is in every failing placement "
                       "and out of every passing one", "follows": None}


def retest(opts, scenario, first, n, progress=False):
    """The report's "retest" section for a failed run (opts: its RunOptions)."""
    from .placement import topology
    repro = []
    for k in range(n):
        repro.append(_rerun(opts, scenario, progress, seed=opts.seed + k))
        if repro[-1]["status"] == "interrupted":     # Ctrl-C ends the retest too
            return {"reproduction": {"rate": "interrupted", "reruns": repro},
                    "localization": {"runs": [], "verdict": "not run (interrupted)",
                                     "follows": None}}
    failed = 1 + sum(r["failed"] for r in repro)
    times = [first.get("first_evidence_s")] + [r["time_to_failure_s"] for r in repro if r["failed"]]
    times = [t for t in times if t is not None]
    cpus = sorted(set(first["config"]["cpus"]))
    topo = topology(cpus)
    loc = []

    def move(what, **over):
        r = _rerun(opts, scenario, progress, **over)
        loc.append({"move": what, **r})
        return r["status"] != "interrupted"
    if len(cpus) > 1:
        for c in cpus:                                    # each CPU left out in turn
            rest = [x for x in cpus if x != c]
            if not move(f"without CPU {c}", cpus=format_cpu_list(rest),
                        threads=max(2, len(rest)), primary=None, placement=None):
                break
        cores = {}
        for c in cpus:
            cores.setdefault(topo[c], []).append(c)
        for (p, k), sib in sorted(cores.items()):         # each SMT core left out whole
            if len(sib) < 2 or len(sib) == len(cpus):
                continue
            rest = [x for x in cpus if x not in sib]
            move(f"without core {k} of package {p}", cpus=format_cpu_list(rest),
                 threads=max(2, len(rest)), primary=None, placement=None)
        for c in cpus[1:4]:                               # the primary moved
            move(f"primary on CPU {c}", cpus=format_cpu_list(cpus), primary=c, placement=None)
        pkgs = sorted({topo[c][0] for c in cpus})
        if len(pkgs) > 1:                                 # each package alone
            for p in pkgs:
                mine = [c for c in cpus if topo[c][0] == p]
                move(f"package {p} alone", cpus=format_cpu_list(mine),
                     threads=max(2, len(mine)), primary=None, placement=None)
    v = localize([r for r in loc if not r.get("error")], topo)
    return {"reproduction": {"rate": f"failed {failed} of {n + 1}", "failed": failed, "runs": n + 1,
                             "times_to_failure_s": times,
                             "median_time_to_failure_s": statistics.median(times) if times else None,
                             "reruns": repro},
            "localization": {"runs": loc, **v}}
