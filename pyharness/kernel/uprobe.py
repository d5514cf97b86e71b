"""The uprobe target: the kernel patches *our* text.  pyharness lays out two
sites in a file of its own (uprobes attach to an inode and an offset): a
5-byte NOP (which 6.18 optimizes, on its first hit, into a call to a
trampoline) and `lea 1(%rax), %rax` (single-stepped out of line), each
followed by a jump back into the harness (csrc/kernel/uprobe.c).  Uprobe
events on both (tracefs `uprobe_events`, written into the restore record
first) are enabled and disabled in turn while executors on every CPU, in
a worker process of their own, run the sites with every register, the
flags and the 128-byte red zone held to a pattern; a sampler records every
state of the sites' bytes and how long it lasted.

Evidence of each flip: this process maps the same file, so the kernel
writes its INT3 (or its call) here too: after an enable the site's first
byte is no longer the NOP's, after a disable it is again.
"""
import json
import mmap
import os
import struct
import subprocess
import sys
import tempfile
import threading

from .item import Item

TRACEFS = "/sys/kernel/tracing"

PAGE = 4096
SITES = ((0x0, b"\x0f\x1f\x44\x00\x00", "nop5"), (0x40, b"\x48\x8d\x40\x01", "lea"))
WHAT = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13",
        "r14", "r15", "?", "rsp", "the flags", "the red zone"]


def site_file(directory):
    """The sites' file: page 0 the code (the rest INT3), page 1 the slots."""
    code = bytearray(b"\xcc" * PAGE)
    for slot, (off, insn, _) in enumerate(SITES):
        code[off:off + len(insn)] = insn
        j = off + len(insn)
        code[j:j + 6] = b"\xff\x25" + struct.pack("<i", PAGE + 8 * slot - (j + 6))
    fd, path = tempfile.mkstemp(prefix="pyharness-uprobe-", suffix=".bin", dir=directory)
    with os.fdopen(fd, "wb") as f:
        f.write(bytes(code) + b"\0" * PAGE)
    return path


class UprobeSite(Item):
    def __init__(self, target, k):
        off, insn, name = SITES[k]
        super().__init__(f"uprobe {name}", f"the uprobe's INT3 in our text at +{off:#x}"
                         + (" (optimized into a call to the uprobe trampoline on its first hit)"
                            if name == "nop5" else " (single-stepped out of line)"))
        self.t, self.k, self.insn = target, k, insn
        self.enable = os.path.join(TRACEFS, "events", target.group, name, "enable")

    def flip(self, on):
        with open(self.enable, "w") as f:
            f.write("1" if on else "0")

    def evidence(self, on):
        off = SITES[self.k][0]
        b = self.t.view[off:off + len(self.insn)]
        if on:
            # installed on enable in every mapping of the file, ours included
            return {"ok": b[0] != self.insn[0], "what": f"our mapping reads {b.hex(' ')}"}
        return {"ok": b == self.insn, "what": f"our mapping reads {b.hex(' ')}"}


class Uprobes:
    name = "uprobe"
    description = ("uprobes on our own sites (a 5-byte NOP and an lea), enabled and disabled while "
                   "executors on every CPU run them with every register, the flags and the red "
                   "zone checked")

    def __init__(self):
        self.worker = None
        self.view = None

    def available(self):
        if not os.path.isdir(TRACEFS):
            return f"{TRACEFS} does not exist (no tracefs in this kernel)"
        if not os.path.exists("/sys/bus/event_source/devices/uprobe"):
            return "this kernel has no uprobes (no uprobe PMU)"
        return None

    def setup(self, rec, env):
        from .record import append, mounted
        if not mounted(TRACEFS, "tracefs"):
            rec.add({"kind": "mount", "target": TRACEFS, "fstype": "tracefs"})
            if os.system(f"mount -t tracefs nodev {TRACEFS} 2>/dev/null") != 0:
                env["not_available"].append({"target": self.name, "item": "*",
                                             "reason": "tracefs could not be mounted"})
                return []
        directory = os.path.dirname(rec.path)
        self.path = site_file(directory)
        rec.add({"kind": "file", "path": self.path})
        self.group = f"pyharness_{os.getpid()}"
        items = []
        for k, (off, _, name) in enumerate(SITES):
            rec.add({"kind": "uprobe-event", "tracefs": TRACEFS, "group": self.group, "event": name})
            append(os.path.join(TRACEFS, "uprobe_events"), f"p:{self.group}/{name} {self.path}:{off:#x}\n")
            items.append(UprobeSite(self, k))
        fd = os.open(self.path, os.O_RDONLY)
        try:
            self.view = mmap.mmap(fd, PAGE, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_EXEC)
        finally:
            os.close(fd)
        return items

    def start(self, cpus, duration):
        from ..spawn import worker_env
        self.worker = subprocess.Popen([sys.executable, "-m", "pyharness.kernel.uprobe", self.path,
                                        f"{duration:g}", ",".join(map(str, cpus))],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                       **worker_env())

    def stop(self):
        out, err = "", ""
        if self.worker:
            try:
                out, err = self.worker.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                out, err = self.worker.communicate()
        if self.view is not None:
            self.view.close()
            self.view = None
        try:
            res = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            rc = self.worker.returncode if self.worker else None
            return {"runs": 0, "errors": [f"the executors' worker ended without a report (exit {rc}): "
                                          f"{(err or '').strip()[-300:]}"]}
        errs = []
        for s in res["sites"]:
            if s["bad"] and not s["first"]:
                errs.append(f"{s['bad']} of {s['runs']} runs of the probed {s['name']} differed from "
                            "the unprobed code")
            elif s["bad"]:
                f = s["first"]
                what = WHAT[f["what"]] if f["what"] < len(WHAT) else str(f["what"])
                where = f" at rsp{f['off']:+d}" if f["what"] == 18 else ""
                errs.append(f"{s['bad']} of {s['runs']} runs of the probed {s['name']} changed {what}{where}: "
                            f"{f['got']:#x} where the unprobed code leaves {f['want']:#x}")
        return {"runs": sum(s["runs"] for s in res["sites"]), "errors": errs,
                "sequence": res["sequence"], "sites": res["sites"]}


def _worker(argv):
    """python -m pyharness.kernel.uprobe FILE SECONDS CPUS: the executors
    (one thread per CPU, the GIL released in C) and the sampler."""
    import ctypes
    try:
        ctypes.CDLL(None).prctl(1, 9)        # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        pass
    from .._ffi import ffi, lib
    path, seconds, cpus = argv[0], float(argv[1]), [int(c) for c in argv[2].split(",")]
    offs = ffi.new("uint64_t[]", [o for o, _, _ in SITES])
    code = ffi.new("uint64_t *")
    rc = lib.ph_up_setup(path.encode(), offs, code)
    if rc < 0:
        print(json.dumps({"error": os.strerror(-rc)}))
        return 3
    ns = int(seconds * 1e9)
    stats = [ffi.new("struct ph_up_stats *") for _ in cpus]
    states = ffi.new("struct ph_up_state[4096]")
    n = ffi.new("int *")

    def run(i, cpu):
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass
        lib.ph_up_exec(ns, 1000 + i, stats[i])
    ths = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(cpus)]
    ths.append(threading.Thread(target=lambda: lib.ph_up_sample(ns, states, 4096, n)))
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    sites = []
    for k, (off, insn, name) in enumerate(SITES):
        runs = sum(s.runs[k] for s in stats)
        bad = sum(s.bad[k] for s in stats)
        first = None
        for s in stats:
            if s.bad[0] or s.bad[1]:
                if int(s.first_site) == k:
                    first = {"what": int(s.first_what), "got": int(s.first_got), "want": int(s.first_want),
                             "off": int(s.first_off)}
                    break
        sites.append({"name": name, "offset": off, "runs": runs, "bad": bad, "first": first})
    seq = []
    for i in range(min(n[0], 4096)):
        s = states[i]
        seq.append({"site": SITES[s.site][2], "before": bytes(s.before).hex(" "),
                    "after": bytes(s.after).hex(" "), "lasted_us": round(s.lasted_ns / 1000, 1)})
    print(json.dumps({"sites": sites, "sequence": seq, "states_seen": int(n[0])}))
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
