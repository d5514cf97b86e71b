"""What machine a result came from: enough to compare runs across boxes."""
import os
import platform
import socket

import psutil


def _cpuinfo():
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                key = key.strip()
                if key == "model name" and model is None:
                    model = val.strip()
                elif key == "flags" and not flags:
                    flags = set(val.split())
    except OSError:
        pass
    return model, flags


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def hostname():
    """This box's name in results and the store: PYHARNESS_HOSTNAME where a
    test fleet runs several "boxes" on one machine (each its own identity
    in the store and in merge), else the host name."""
    return os.environ.get("PYHARNESS_HOSTNAME") or socket.gethostname()


def machine_info():
    model, flags = _cpuinfo()
    info = {
        "hostname": hostname(),
        "cpu_model": model,
        "cpu_count": psutil.cpu_count(logical=True),
        "affinity": sorted(psutil.Process().cpu_affinity()),
        "hypervisor": "hypervisor" in flags,
        "flags": sorted(f for f in flags if f in {
            "serialize", "hypervisor", "constant_tsc", "nonstop_tsc", "rdtscp", "avx2",
            "avx512f", "smep", "smap", "pti", "ibrs", "ibpb", "stibp"}),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "loadavg": list(os.getloadavg()),
        "mdwe": _mdwe_status(),
    }
    try:
        from ._ffi import lib
        info["serialize"] = bool(lib.ph_cpu_has_serialize())
        info["membarrier_sync_core"] = bool(lib.ph_membarrier_sync_core_supported())
        info["abi"] = lib.PH_ABI_VERSION
    except Exception:  # the core may not be built: metadata still useful
        pass
    from . import __version__
    info["pyharness"] = __version__
    return info


def _mdwe_status():
    text = _read("/proc/self/status") or ""
    for line in text.splitlines():
        if line.startswith("untag_mask") or not line.startswith("MDWE"):
            continue
        return line.split(":", 1)[1].strip()
    return None
