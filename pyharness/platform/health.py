"""Machine health during a run: what the kernel saw while we patched.

- "interrupts": per-CPU deltas of the /proc/interrupts lines that matter
  (machine checks and their polls, deferred errors, thermal events, NMIs,
  TLB shootdowns, function-call IPIs) for the CPUs the run used;
- "kernel_log": the kernel log from the run's start (/dev/kmsg, opened at
  the end of the log before the run, read after it): machine checks, hung
  tasks, soft and hard lockups, general protection faults, and segfaults
  and traps that name our processes.

A machine check or a kernel error during the run is a violation of its own
(machine-health) with the lines as evidence.  A log that cannot be read is
"not checked", with the reason, in the report and the summary: never a
silent pass.
"""
import errno
import os
import re

INTERRUPT_LINES = {
    "MCE": "machine check exceptions",
    "MCP": "machine check polls",
    "DFR": "deferred error interrupts",
    "THR": "thermal event interrupts",
    "TRM": "thermal event interrupts",
    "NMI": "non-maskable interrupts",
    "TLB": "TLB shootdowns",
    "CAL": "function call interrupts (IPIs)",
}
# Deltas of these lines are errors in themselves.
ERROR_LINES = ("MCE", "DFR")

KERNEL_PATTERNS = [
    # not every "mce:" line is an error: thermal throttling reports go there too
    ("machine-check", re.compile(r"\[Hardware Error\]|machine check events? logged|"
                                 r"machine check exception|uncorrected .*error", re.I)),
    ("hung-task", re.compile(r"blocked for more than \d+ seconds|hung_task", re.I)),
    ("soft-lockup", re.compile(r"soft lockup", re.I)),
    ("hard-lockup", re.compile(r"hard LOCKUP", re.I)),
    ("general-protection", re.compile(r"general protection fault", re.I)),
]


def read_interrupts(path="/proc/interrupts"):
    """{line name: {cpu: count}} for the lines that matter."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    cpus = [int(c[3:]) for c in lines[0].split() if c.startswith("CPU")]
    out = {}
    for ln in lines[1:]:
        name, _, rest = ln.partition(":")
        name = name.strip()
        if name not in INTERRUPT_LINES:
            continue
        vals = rest.split()[:len(cpus)]
        try:
            out[name] = {c: int(v) for c, v in zip(cpus, vals)}
        except ValueError:
            continue
    return out


# A user-space fault the kernel reports ("traps: comm[tid] general protection
# fault ...", "comm[tid]: segfault at ..."): it counts only when it names one
# of our processes or threads; another program's crash is not this box's
# health, nor ours.
USER_FAULT = re.compile(r"traps:|segfault at|\btrap (int3|invalid opcode|stack segment)")


def classify(msg, pids):
    """The kind of a kernel log line that matters, or None."""
    if USER_FAULT.search(msg):
        return "our-process-fault" if any(re.search(rf"\[{p}\]", msg) for p in pids) else None
    return next((k for k, rx in KERNEL_PATTERNS if rx.search(msg)), None)


KMSG_ENV = "PYHARNESS_KMSG"


def kmsg_source():
    """The kernel log to scan: /dev/kmsg, or a file or FIFO in its record
    format ("prio,seq,usec,flags;message", continuation lines indented)
    named by $PYHARNESS_KMSG, for a test that proves the scan without
    writing alarms into the box's real kernel log."""
    return os.environ.get(KMSG_ENV) or "/dev/kmsg"


def split_records(chunk):
    """/dev/kmsg returns one record a read; a file holds many: split them
    (a line that starts with a space continues the record before it)."""
    out = []
    for line in chunk.split("\n"):
        if not line:
            continue
        if line.startswith(" ") and out:
            out[-1] += "\n" + line
        else:
            out.append(line)
    return out


class HealthWatch:
    """Start before the run, stop after it; then .report() and .violations()."""

    def __init__(self, cpus, pids=()):
        self.cpus = sorted(set(cpus))
        self.pids = set(pids)
        self.before = None
        self.after = None
        self.kmsg_fd = None
        self.kmsg_error = None
        self.records = []

    def add_pid(self, pid):
        self.pids.add(pid)

    def start(self):
        self.before = read_interrupts()
        self.kmsg_path = kmsg_source()
        try:
            fd = os.open(self.kmsg_path, os.O_RDONLY | os.O_NONBLOCK)
            try:
                os.lseek(fd, 0, os.SEEK_END)    # from now on only
            except OSError:
                pass                            # a FIFO: it has no past to skip
            self.kmsg_fd = fd
        except OSError as exc:
            self.kmsg_error = (f"{self.kmsg_path}: {exc.strerror}"
                               + (" (kernel.dmesg_restrict, or not root)"
                                  if exc.errno in (errno.EPERM, errno.EACCES) else ""))
        return self

    def stop(self):
        self.after = read_interrupts()
        if self.kmsg_fd is not None:
            raw = []
            while True:
                try:
                    rec = os.read(self.kmsg_fd, 8192)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno == errno.EPIPE:    # overwritten while we read: keep going
                        continue
                    self.kmsg_error = f"{self.kmsg_path}: {exc.strerror}"
                    break
                if not rec:
                    break
                raw.append(rec)       # /dev/kmsg: a record a read; a file: any cut
            self.records = split_records(b"".join(raw).decode("utf-8", "replace"))
            os.close(self.kmsg_fd)
            self.kmsg_fd = None
        return self

    def _interrupts(self):
        if self.before is None or self.after is None:
            return {"checked": False, "reason": "/proc/interrupts is not readable"}
        deltas, absent = {}, []
        for name, desc in INTERRUPT_LINES.items():
            if name not in self.after:
                absent.append(name)
                continue
            b = self.before.get(name, {})
            deltas[name] = {"description": desc,
                            "per_cpu": {c: self.after[name].get(c, 0) - b.get(c, 0) for c in self.cpus}}
        absent = [n for n in absent if not (n == "TRM" and "THR" in deltas)
                  and not (n == "THR" and "TRM" in deltas)]
        return {"checked": True, "deltas": deltas,
                "not_collected": [{"what": n, "reason": f"no {n} line in /proc/interrupts (not "
                                   f"exposed by this kernel or CPU, e.g. a VM)"} for n in absent]}

    def _kernel_log(self):
        if self.kmsg_error and not self.records:
            return {"checked": False, "reason": self.kmsg_error, "matches": []}
        matches = []
        for rec in self.records:
            head, _, msg = rec.partition(";")
            msg = msg.split("\n")[0]
            kind = classify(msg, self.pids)
            if kind:
                matches.append({"kind": kind, "line": msg, "prio": head.split(",")[0]})
        return {"checked": True, "records_read": len(self.records), "matches": matches}

    def report(self):
        return {"interrupts": self._interrupts(), "kernel_log": self._kernel_log()}

    def violations(self, report=None):
        rep = report or self.report()
        out = []

        def add(detail):
            out.append({"invariant": "machine-health", "detail": detail, "thread": None, "cpu": None,
                        "role": None, "site": None, "seq": None, "state": None, "ctx": None,
                        "source": "health"})
        for m in rep["kernel_log"].get("matches", []):
            add(f"kernel log during the run ({m['kind']}): {m['line']}")
        for name in ERROR_LINES:
            d = rep["interrupts"].get("deltas", {}).get(name)
            if d and any(v > 0 for v in d["per_cpu"].values()):
                add(f"{name} ({d['description']}) during the run: "
                    + ", ".join(f"cpu {c}: +{v}" for c, v in d["per_cpu"].items() if v))
        return out
