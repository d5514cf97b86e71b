"""CPU lists ("0-3,7") and the CPUs this process may use."""
import os

import psutil

from .errors import UsageError


def parse_cpu_list(text):
    """Parse "0-3,7" (or "all": every usable CPU) into a sorted list of
    distinct CPU numbers."""
    cpus = set()
    if not text or not text.strip():
        raise UsageError("empty CPU list")
    if text.strip() == "all":
        return usable_cpus()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = part.split("-", 1)
                lo, hi = int(lo), int(hi)
                if lo > hi:
                    raise ValueError
                cpus.update(range(lo, hi + 1))
            else:
                cpus.add(int(part))
        except ValueError:
            raise UsageError(f"bad CPU list '{text}': use numbers and ranges like 0-3,7") from None
    if min(cpus) < 0:
        raise UsageError(f"bad CPU list '{text}': CPU numbers are not negative")
    return sorted(cpus)


def format_cpu_list(cpus):
    """The inverse of parse_cpu_list: [0,1,2,3,7] -> "0-3,7"."""
    out, run = [], []
    for c in sorted(set(cpus)):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [c]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def describe_cpus(cpus):
    """How every command prints the CPUs a run used: "0-1 (2 threads)" (a
    thread per entry: a CPU with two threads is listed once, counted twice)."""
    return f"{format_cpu_list(cpus)} ({len(cpus)} thread{'s' if len(cpus) != 1 else ''})"


def usable_cpus():
    """CPUs in this process's affinity mask (psutil, as the OS reports it)."""
    return sorted(psutil.Process().cpu_affinity())


def check_cpus(cpus):
    """Every CPU must exist and be in the affinity mask; say which is not."""
    usable = set(usable_cpus())
    present = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    for c in cpus:
        if c >= present:
            raise UsageError(f"CPU {c} does not exist (this machine has CPUs 0-{present - 1})")
        if c not in usable:
            raise UsageError(
                f"CPU {c} is outside this process's affinity mask "
                f"({format_cpu_list(usable)}); pick CPUs from that list")
    return cpus
