"""Topology-aware placement of the threads (--placement).

  default       today's: every usable CPU in order, the primary first;
  spread        round robin across packages, then cores, then SMT
                siblings: consecutive threads as far apart as the box allows;
  one-per-core  one thread per physical core (its first SMT sibling);
  smt-pairs     the primary and the first secondary on two SMT siblings of
                one core, then the rest spread;
  cross-package the primary alone on one package, the secondaries on the
                others.

The report names the placement and the CPUs each role ran on.
"""
import os

from ..errors import UnsupportedError, UsageError

PLACEMENTS = ("default", "spread", "one-per-core", "smt-pairs", "cross-package")


def _int(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def topology(cpus):
    """{cpu: (package, core)} from sysfs; a CPU without it is its own core."""
    out = {}
    for c in cpus:
        base = f"/sys/devices/system/cpu/cpu{c}/topology"
        pkg = _int(os.path.join(base, "physical_package_id"))
        core = _int(os.path.join(base, "core_id"))
        out[c] = (pkg if pkg is not None else 0, core if core is not None else 10_000 + c)
    return out


def _spread(cpus, topo):
    """Round robin over packages, cores within them, siblings within those."""
    pkgs = {}
    for c in sorted(cpus):
        p, k = topo[c]
        pkgs.setdefault(p, {}).setdefault(k, []).append(c)
    # per package: the CPUs in "one sibling of every core first" order
    per_pkg = []
    for p in sorted(pkgs):
        cores = [pkgs[p][k] for k in sorted(pkgs[p])]
        order = []
        for i in range(max(len(x) for x in cores)):
            order += [x[i] for x in cores if i < len(x)]
        per_pkg.append(order)
    out = []
    for i in range(max(len(x) for x in per_pkg)):
        out += [x[i] for x in per_pkg if i < len(x)]
    return out


def place(name, cpus, threads=None, topo=None):
    """The CPU of each thread (thread 0 the primary) for a placement.
    ``topo``: {cpu: (package, core)}, read from sysfs when not given."""
    if name not in PLACEMENTS:
        raise UsageError(f"unknown --placement '{name}'; choose from {', '.join(PLACEMENTS)}")
    cpus = sorted(set(cpus))
    topo = topo or topology(cpus)
    if name == "default":
        order = cpus
    elif name == "spread":
        order = _spread(cpus, topo)
    elif name == "one-per-core":
        seen, order = set(), []
        for c in cpus:
            if topo[c] not in seen:
                seen.add(topo[c])
                order.append(c)
    elif name == "smt-pairs":
        pair = None
        for c in cpus:
            sib = [d for d in cpus if d != c and topo[d] == topo[c]]
            if sib:
                pair = [c, sib[0]]
                break
        if pair is None:
            raise UnsupportedError("--placement smt-pairs: no two usable CPUs are SMT siblings of "
                                   "one core here (SMT off, or a VM without it)")
        order = pair + [c for c in _spread(cpus, topo) if c not in pair]
    else:   # cross-package
        pkgs = sorted({topo[c][0] for c in cpus})
        if len(pkgs) < 2:
            raise UnsupportedError("--placement cross-package: the usable CPUs are all on one "
                                   "package")
        prim = next(c for c in cpus if topo[c][0] == pkgs[0])
        order = [prim] + [c for c in _spread(cpus, topo) if topo[c][0] != pkgs[0]]
    n = threads or max(2, len(order))
    return [order[i % len(order)] for i in range(n)]


def describe(name, thread_cpus, roles):
    """The report's "placement": its name and the CPUs of each role."""
    from ..cpus import format_cpu_list
    from ..engine import ROLE_NAMES
    by = {}
    for cpu, r in zip(thread_cpus, roles):
        by.setdefault(ROLE_NAMES.get(r, str(r)), []).append(cpu)
    topo = topology(set(thread_cpus))
    return {"name": name,
            "roles": {k: {"cpus": format_cpu_list(v), "threads": len(v)} for k, v in by.items()},
            "packages": sorted({topo[c][0] for c in thread_cpus}),
            "cores": len({topo[c] for c in thread_cpus})}
