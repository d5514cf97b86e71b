"""Evidence of the machine and the build, for every report.

For each participating CPU: its id, package, die, core, SMT siblings, NUMA
node, family/model/stepping, microcode, PPIN where the kernel exposes it,
and its frequency at the start and the end of the run; the kernel command
line, the mitigations and whether page-table isolation is on; the build.
What cannot be read goes under "not_collected" with the reason: nothing is
silently absent.
"""
import glob
import os
import platform
import subprocess

SYS_CPU = "/sys/devices/system/cpu"


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as exc:
        return exc


def _cpuinfo():
    """/proc/cpuinfo, per processor."""
    out, cur = {}, {}
    text = _read("/proc/cpuinfo")
    if isinstance(text, Exception):
        return out
    for line in text.splitlines() + [""]:
        if not line.strip():
            if "processor" in cur:
                out[int(cur["processor"])] = cur
            cur = {}
            continue
        k, _, v = line.partition(":")
        cur[k.strip()] = v.strip()
    return out


def _numa_nodes():
    m = {}
    for d in glob.glob("/sys/devices/system/node/node[0-9]*"):
        lst = _read(os.path.join(d, "cpulist"))
        if isinstance(lst, Exception):
            continue
        from ..cpus import parse_cpu_list
        try:
            for c in parse_cpu_list(lst):
                m[c] = int(os.path.basename(d)[4:])
        except Exception:   # a list we cannot parse: the node stays unknown
            continue
    return m


def _freq_khz(cpu, info):
    v = _read(f"{SYS_CPU}/cpu{cpu}/cpufreq/scaling_cur_freq")
    if not isinstance(v, Exception):
        return int(v), "cpufreq/scaling_cur_freq"
    mhz = info.get("cpu MHz")
    if mhz:
        return int(float(mhz) * 1000), "/proc/cpuinfo cpu MHz"
    return None, None


def frequencies(cpus):
    """kHz per CPU now (cpufreq, else /proc/cpuinfo)."""
    info = _cpuinfo()
    return {c: _freq_khz(c, info.get(c, {}))[0] for c in sorted(set(cpus))}


def cpu_evidence(cpus):
    info, nodes = _cpuinfo(), _numa_nodes()
    out, missing = [], []
    for c in sorted(set(cpus)):
        topo = f"{SYS_CPU}/cpu{c}/topology"
        ci = info.get(c, {})
        e = {"cpu": c}
        for key, fname in (("package", "physical_package_id"), ("die", "die_id"),
                           ("core", "core_id")):
            v = _read(os.path.join(topo, fname))
            e[key] = None if isinstance(v, Exception) else int(v)
            if isinstance(v, Exception):
                missing.append({"what": f"cpu{c} {key}", "reason": f"{topo}/{fname}: {v.strerror}"})
        sib = _read(os.path.join(topo, "thread_siblings_list"))
        e["smt_siblings"] = None if isinstance(sib, Exception) else sib
        e["numa_node"] = nodes.get(c)
        if c not in nodes:
            missing.append({"what": f"cpu{c} numa node", "reason": "not in /sys/devices/system/node"})
        for key, src in (("family", "cpu family"), ("model", "model"), ("stepping", "stepping"),
                         ("microcode", "microcode")):
            e[key] = ci.get(src)
            if e[key] is None:
                missing.append({"what": f"cpu{c} {key}", "reason": "not in /proc/cpuinfo"})
        e["model_name"] = ci.get("model name")
        ppin = _read(os.path.join(topo, "ppin"))
        if isinstance(ppin, Exception):
            e["ppin"] = None
            missing.append({"what": f"cpu{c} ppin",
                            "reason": ("the kernel does not expose it (topology/ppin: Intel with "
                                       "PPIN enabled, Linux 6.0+; never in a VM)")
                            if getattr(ppin, "errno", 0) == 2 else f"{ppin.strerror}"})
        else:
            e["ppin"] = ppin
        f, src = _freq_khz(c, ci)
        e["freq_khz_start"] = f
        e["freq_source"] = src
        if f is None:
            missing.append({"what": f"cpu{c} frequency", "reason": "no cpufreq and no cpu MHz"})
        out.append(e)
    if not os.path.isdir(f"{SYS_CPU}/cpu{sorted(set(cpus))[0]}/cpufreq"):
        missing.append({"what": "cpufreq", "reason": "no cpufreq driver (a VM or a fixed clock): "
                                                     "frequency from /proc/cpuinfo"})
    return out, missing


def kernel_evidence():
    missing = []
    cmd = _read("/proc/cmdline")
    if isinstance(cmd, Exception):
        missing.append({"what": "kernel command line", "reason": cmd.strerror})
        cmd = None
    vul = {}
    for p in sorted(glob.glob(f"{SYS_CPU}/vulnerabilities/*")):
        v = _read(p)
        vul[os.path.basename(p)] = None if isinstance(v, Exception) else v
    if not vul:
        missing.append({"what": "mitigations", "reason": f"{SYS_CPU}/vulnerabilities is absent"})
    melt = vul.get("meltdown") or ""
    flags = next(iter(_cpuinfo().values()), {}).get("flags", "").split()
    pti = "PTI" in melt or "pti" in flags
    return {"release": platform.release(), "version": platform.version(), "cmdline": cmd,
            "mitigations": vul, "pti": pti,
            "pti_source": "vulnerabilities/meltdown and the cpu flags"}, missing


def build_evidence():
    from .. import __version__
    from .._ffi import lib, ffi
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    b = {"pyharness": __version__, "abi": lib.PH_ABI_VERSION,
         "compiler": ffi.string(lib.ph_build_compiler()).decode(),
         "cflags": ffi.string(lib.ph_build_flags()).decode(),
         "git_commit": None, "git_dirty": None}
    missing = []
    if os.path.isdir(os.path.join(root, ".git")):
        try:
            b["git_commit"] = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"],
                                             capture_output=True, text=True, timeout=10).stdout.strip()
            st = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10).stdout
            b["git_dirty"] = bool(st.strip())
        except (OSError, subprocess.TimeoutExpired) as exc:
            missing.append({"what": "git commit", "reason": str(exc)})
    built = ffi.string(lib.ph_build_commit()).decode()
    b["built_from"] = built or None      # the commit compiled into the core
    if b["git_commit"] is None and built:
        b["git_commit"], _, dirty = built.partition("+")
        b["git_dirty"] = bool(dirty)
        b["commit_source"] = "compiled into the core at build time"
    elif b["git_commit"] is None:
        missing.append({"what": "git commit", "reason": "not run from a git checkout, and the "
                        "core was built outside one (an sdist)"})
    return b, missing


def collect(cpus):
    """The "evidence" section of a report (frequencies at the start)."""
    cpu, m1 = cpu_evidence(cpus)
    kern, m2 = kernel_evidence()
    build, m3 = build_evidence()
    hyper = "hypervisor" in next(iter(_cpuinfo().values()), {}).get("flags", "").split()
    missing = m1 + m2 + m3
    if hyper:
        missing.append({"what": "bare-metal facts", "reason": "running under a hypervisor: "
                        "topology, microcode and frequency are what the VM reports"})
    return {"schema": "pyharness.evidence/1", "cpus": cpu, "kernel": kern, "build": build,
            "hypervisor": hyper, "not_collected": missing}


def finish(ev, cpus):
    """Frequencies at the end of the run."""
    end = frequencies(cpus)
    for e in ev.get("cpus", []):
        e["freq_khz_end"] = end.get(e["cpu"])
    return ev

