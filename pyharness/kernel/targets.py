"""The kernel's patching, reached from user space: one class per target, in
TARGETS (one home, one table line).  A target says what it needs
(available() -> None or the reason), sets up its items with every global
change written into the restore record first, and flips each item on and
off; each flip returns the evidence that it took effect (from outside the
kernel's word: events that appear, a counter that moves), and the runner
measures its cost (its latency, the IPIs it took).

bpf-jump lives in bpf.py, uprobe in uprobe.py.  Not built, and why
(README, "The running kernel under stress"): ftrace,
kprobes and livepatch are refused or absent on the VM this was written on;
real NMIs need a PMU.
"""
import ctypes
import os
import struct
import time

from .item import Item

SYSCTL = "/proc/sys"
TRACEFS = "/sys/kernel/tracing"


def _read(p):
    with open(p) as f:
        return f.read().strip()


def _write(p, v):
    with open(p, "w") as f:
        f.write(v)


class SysctlKey(Item):
    def __init__(self, name, values, patches, rec):
        super().__init__(name, patches)
        self.path = os.path.join(SYSCTL, *name.split("."))
        self.values = values
        self.before = _read(self.path)
        rec.add({"kind": "sysctl", "path": self.path, "value": self.before})

    def flip(self, on):
        _write(self.path, self.values[1 if on else 0])

    def evidence(self, on):
        got = _read(self.path)
        want = self.values[1 if on else 0]
        return {"ok": got == want, "what": f"reads back {got}" + ("" if got == want else f", not {want}")}


class BpfStatsKey(SysctlKey):
    """kernel.bpf_stats_enabled, with the key's direction seen where it acts:
    a program's run count moves only while it is on."""

    def __init__(self, *a):
        super().__init__(*a)
        from .bpf import Counted
        self.prog = Counted()

    def evidence(self, on):
        base = super().evidence(on)
        a = self.prog.run_cnt()
        self.prog.run(16)
        b = self.prog.run_cnt()
        ok = base["ok"] and ((b - a >= 16) if on else (b == a))
        return {"ok": ok, "what": f"a program's run count moved by {b - a} over 16 runs"}

    def close(self):
        self.prog.close()


# struct perf_event_attr: type, size, config; the rest zero (enabled, all
# contexts, the calling thread on any CPU)
_PERF_ATTR_SIZE = 128
_NR_PERF_EVENT_OPEN = 298
PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_CONTEXT_SWITCHES = 3


def perf_open(config):
    libc = ctypes.CDLL(None, use_errno=True)
    attr = ctypes.create_string_buffer(_PERF_ATTR_SIZE)
    struct.pack_into("<IIQ", attr, 0, PERF_TYPE_SOFTWARE, _PERF_ATTR_SIZE, config)
    fd = libc.syscall(_NR_PERF_EVENT_OPEN, attr, 0, -1, -1, 0)
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return fd


class PerfSoftwareKey(Item):
    """perf_event_open/close of a software event: the perf_swevent_enabled
    key (fd-scoped: the kernel closes it when the process dies)."""

    def __init__(self):
        super().__init__("perf-sw-context-switches", "static key perf_swevent_enabled[CONTEXT_SWITCHES]")
        self.fd = None

    def flip(self, on):
        if on and self.fd is None:
            self.fd = perf_open(PERF_COUNT_SW_CONTEXT_SWITCHES)
        elif not on and self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def evidence(self, on):
        if not on:
            return {"ok": self.fd is None, "what": "closed"}
        for _ in range(4):
            time.sleep(0.001)        # context switches of our own
        n = struct.unpack("<Q", os.read(self.fd, 8))[0]
        return {"ok": n > 0, "what": f"counted {n} context switches while open"}

    def close(self):
        self.flip(False)


class StaticKeys:
    name = "static-key"
    description = ("static keys flipped through sysctls and perf software events: "
                   "jump_label_update -> smp_text_poke_batch_add/finish")
    SYSCTLS = (("kernel.timer_migration", ("0", "1"), "static key timers_migration_enabled"),
               ("kernel.task_delayacct", ("0", "1"), "static key delayacct_key"),
               ("kernel.numa_balancing", ("0", "1"), "static key sched_numa_balancing"),
               ("kernel.bpf_stats_enabled", ("0", "1"), "static key bpf_stats_enabled_key"),
               ("net.core.rps_sock_flow_entries", ("0", "4096"), "static keys rps_needed, rfs_needed"))

    def available(self):
        if not any(os.access(os.path.join(SYSCTL, *n.split(".")), os.W_OK) for n, _, _ in self.SYSCTLS):
            return "none of its sysctls is writable here"
        return None

    def setup(self, rec, env):
        items = []
        for name, values, patches in self.SYSCTLS:
            p = os.path.join(SYSCTL, *name.split("."))
            if not os.path.exists(p):
                env["not_available"].append({"target": self.name, "item": name,
                                             "reason": "this kernel has no such sysctl"})
                continue
            try:
                it = (BpfStatsKey if name == "kernel.bpf_stats_enabled" else SysctlKey)(
                    name, values, patches, rec)
            except OSError as exc:          # the counting program refused: the sysctl alone
                env["not_available"].append({"target": self.name, "item": name + " (run counts)",
                                             "reason": f"BPF refused: {exc.strerror}"})
                it = SysctlKey(name, values, patches, rec)
            # Either value must be accepted (numa_balancing refuses 1 without NUMA)
            try:
                it.flip(not (it.before == values[1]))
                it.flip(it.before == values[1])
            except OSError as exc:
                env["not_available"].append({"target": self.name, "item": name,
                                             "reason": f"refused: {exc.strerror}"})
                _write(p, it.before)
                continue
            items.append(it)
        try:
            it = PerfSoftwareKey()
            it.flip(True)
            it.flip(False)
            items.append(it)
        except OSError as exc:
            env["not_available"].append({"target": self.name, "item": "perf-sw-context-switches",
                                         "reason": f"perf_event_open: {exc.strerror}"})
        return items


class TraceEventItem(Item):
    def __init__(self, inst, event):
        super().__init__(event, "tracepoint static key and static_call updates of " + event)
        self.dir = os.path.join(inst, "events", *event.split(":"))
        self.stats = [os.path.join(inst, "per_cpu", c, "stats")
                      for c in sorted(os.listdir(os.path.join(inst, "per_cpu")))]

    def _entries(self):
        """Records written to the instance's buffer so far: the entries it
        holds plus those a full buffer overwrote (entries alone stops
        growing, and even shrinks, once the buffer is full)."""
        n = 0
        for s in self.stats:
            try:
                for ln in open(s):
                    if ln.startswith(("entries:", "overrun:")):
                        n += int(ln.split()[1])
            except OSError:
                pass
        return n

    def flip(self, on):
        _write(os.path.join(self.dir, "enable"), "1" if on else "0")

    def evidence(self, on):
        a = self._entries()
        for _ in range(4):
            time.sleep(0.001)          # context switches, timers: events if enabled
        b = self._entries()
        if on:
            return {"ok": b > a, "what": f"{b - a} new events in the instance's buffer while enabled"}
        return {"ok": b == a, "what": f"{b - a} new events after disabling"}


class TraceEvents:
    name = "trace-event"
    description = ("tracepoints enabled and disabled in a tracefs instance of ours: static keys "
                   "plus static_call updates")
    EVENTS = ("sched:sched_switch", "timer:hrtimer_start", "sched:sched_wakeup")

    def available(self):
        if not os.path.isdir(TRACEFS):
            return f"{TRACEFS} does not exist (no tracefs in this kernel)"
        return None

    def setup(self, rec, env):
        from .record import mounted
        if not mounted(TRACEFS, "tracefs"):
            rec.add({"kind": "mount", "target": TRACEFS, "fstype": "tracefs"})
            r = os.system(f"mount -t tracefs nodev {TRACEFS} 2>/dev/null")
            if r != 0:
                env["not_available"].append({"target": self.name, "item": "*",
                                             "reason": "tracefs could not be mounted"})
                return []
        items = []
        for k, ev in enumerate(self.EVENTS):
            if not os.path.isdir(os.path.join(TRACEFS, "events", *ev.split(":"))):
                env["not_available"].append({"target": self.name, "item": ev,
                                             "reason": "no such event in this kernel"})
                continue
            # an instance per event: its buffer holds that event's records only
            inst = os.path.join(TRACEFS, "instances", f"pyharness-{os.getpid()}-{k}")
            rec.add({"kind": "tracefs-instance", "path": inst})
            os.mkdir(inst)
            items.append(TraceEventItem(inst, ev))
        return items


class NotBuilt:
    """A target this pyharness does not build yet, or this box cannot run:
    listed with the reason, never run."""

    def __init__(self, name, description, reason):
        self.name, self.description, self.reason = name, description, reason

    def available(self):
        return self.reason

    def setup(self, rec, env):       # pragma: no cover - never available
        return []


def _pmu_reason():
    if os.path.exists("/sys/bus/event_source/devices/cpu/type") or \
            os.path.exists("/sys/bus/event_source/devices/cpu_core/type"):
        return "a PMU is present, but real NMIs are not built in this pyharness yet"
    return "no PMU here (no hardware perf events: a VM), so no NMI source from user space"


def _uprobe_target():
    from .uprobe import Uprobes
    return Uprobes()


def _bpf_target():
    from .bpf import BpfJump
    return BpfJump()


TARGETS = {t.name: t for t in (
    StaticKeys(),
    TraceEvents(),
    _uprobe_target(),
    _bpf_target(),
    NotBuilt("nmi", "PMIs as NMIs on every CPU while the kernel patches", _pmu_reason()),
)}
