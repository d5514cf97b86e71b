"""The bpf-jump target: a BPF program array whose slot 0 a caller program
tail-calls with a constant key, so the JIT emits a direct jump that the
kernel rewrites with smp_text_poke_single when the slot changes (repoint:
jmp -> jmp; insert/delete: nop <-> jmp).  Threads on every CPU run the
caller (BPF_PROG_TEST_RUN) meanwhile and check each return value: 1 or 2
(programs A and B) while repointing; 1 or 99 (A, or the caller's fall
through for an empty slot) around a delete; anything else is the kernel's
patching gone wrong.  Every object is fd-scoped: the kernel frees it when
the process dies, so `kill -9` leaves nothing by construction.

The BPF syscall through ctypes (the bpf(2) ABI, no library we would add).
"""
import ctypes
import os
import struct
import threading

from .item import Item

NR_BPF = 321
MAP_CREATE, MAP_UPDATE_ELEM, MAP_DELETE_ELEM, PROG_LOAD, PROG_TEST_RUN = 0, 2, 3, 5, 10
MAP_TYPE_PROG_ARRAY = 3
PROG_TYPE_SOCKET_FILTER = 1
FALL_THROUGH = 99

_libc = ctypes.CDLL(None, use_errno=True)


def _bpf(cmd, attr):
    buf = ctypes.create_string_buffer(bytes(attr), len(attr))
    r = _libc.syscall(NR_BPF, cmd, buf, len(attr))
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"bpf({cmd}): {os.strerror(e)}")
    return r, buf


def _insn(code, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _prog(insns):
    lic = ctypes.create_string_buffer(b"GPL")
    code = b"".join(insns)
    cbuf = ctypes.create_string_buffer(code, len(code))
    log = ctypes.create_string_buffer(4096)
    attr = struct.pack("<IIQQIIQII", PROG_TYPE_SOCKET_FILTER, len(code) // 8, ctypes.addressof(cbuf),
                       ctypes.addressof(lic), 1, len(log), ctypes.addressof(log), 0, 0)
    attr = attr.ljust(128, b"\0")
    try:
        fd, _ = _bpf(PROG_LOAD, attr)
    except OSError as exc:
        raise OSError(exc.errno, f"{exc.strerror}: {log.value.decode(errors='replace')[:200]}") from None
    return fd


def _test_run(fd, data, repeat=1):
    """BPF_PROG_TEST_RUN of the program on data: its return value."""
    attr = struct.pack("<IIIIQQII", fd, 0, len(data), 0, ctypes.addressof(data), 0, repeat, 0)
    _, buf = _bpf(PROG_TEST_RUN, attr.ljust(80, b"\0"))
    return struct.unpack_from("<I", buf, 4)[0]


def _ret(v):
    return [_insn(0xb7, dst=0, imm=v), _insn(0x95)]          # mov r0, v; exit


OBJ_GET_INFO_BY_FD = 15
PROG_GET_NEXT_ID, MAP_GET_NEXT_ID = 11, 12


def object_ids():
    """{"progs": [...], "maps": [...]}: the IDs of every BPF program and map
    the kernel holds now (any process's), or None where it will not say."""
    out = {}
    for key, cmd in (("progs", PROG_GET_NEXT_ID), ("maps", MAP_GET_NEXT_ID)):
        ids, cur = [], 0
        while True:
            try:
                _, buf = _bpf(cmd, struct.pack("<III", cur, 0, 0))
            except OSError as exc:
                if exc.errno == 2:      # ENOENT: no more
                    break
                return None
            cur = struct.unpack_from("<I", buf, 4)[0]
            ids.append(cur)
        out[key] = ids
    return out
PROG_INFO_RUN_CNT = 200          # offsetof(struct bpf_prog_info, run_cnt)


class Counted:
    """One program that returns 1, and its run count (bpf_prog_info.run_cnt):
    the kernel counts runs only while the bpf_stats_enabled key is on, so
    the count is the key's direction, seen from outside the sysctl."""

    def __init__(self):
        self.fd = _prog(_ret(1))
        self.data = ctypes.create_string_buffer(64)

    def run_cnt(self):
        info = ctypes.create_string_buffer(256)
        attr = struct.pack("<IIQ", self.fd, len(info), ctypes.addressof(info))
        _bpf(OBJ_GET_INFO_BY_FD, attr.ljust(16, b"\0"))
        return struct.unpack_from("<Q", info, PROG_INFO_RUN_CNT)[0]

    def run(self, n):
        _test_run(self.fd, self.data, n)

    def close(self):
        os.close(self.fd)


class ProgArray:
    def __init__(self):
        attr = struct.pack("<IIIII", MAP_TYPE_PROG_ARRAY, 4, 4, 1, 0).ljust(72, b"\0")
        self.map, _ = _bpf(MAP_CREATE, attr)
        self.a = _prog(_ret(1))
        self.b = _prog(_ret(2))
        # caller: r3 = 0 (a constant key); r2 = the map; tail_call(ctx, map, 0); fall through: 99
        self.caller = _prog([_insn(0xb7, dst=3, imm=0),
                             _insn(0x18, dst=2, src=1, imm=self.map), _insn(0),
                             _insn(0x85, imm=12), *_ret(FALL_THROUGH)])

    def set(self, prog):
        key, val = ctypes.c_uint32(0), ctypes.c_uint32(prog)
        attr = struct.pack("<IIQQQ", self.map, 0, ctypes.addressof(key), ctypes.addressof(val), 0)
        _bpf(MAP_UPDATE_ELEM, attr.ljust(72, b"\0"))

    def delete(self):
        key = ctypes.c_uint32(0)
        attr = struct.pack("<IIQ", self.map, 0, ctypes.addressof(key))
        try:
            _bpf(MAP_DELETE_ELEM, attr.ljust(72, b"\0"))
        except OSError as exc:
            if exc.errno != 2:       # ENOENT: already empty
                raise

    def run(self, data, repeat=1):
        return _test_run(self.caller, data, repeat)

    def close(self):
        for fd in (self.caller, self.a, self.b, self.map):
            try:
                os.close(fd)
            except OSError:
                pass


class Slot(Item):
    """repoint: A <-> B; insert-delete: A <-> empty."""

    def __init__(self, target, mode):
        super().__init__(f"prog-array {mode}", "the JIT-ed tail call's jump: smp_text_poke_single "
                         + ("(jmp -> jmp)" if mode == "repoint" else "(nop <-> jmp)"))
        self.target, self.arr, self.mode = target, target.arr, mode

    def flip(self, on):
        if self.mode == "repoint":
            new = 2 if on else 1
            self.target.transition(new, lambda: self.arr.set(self.arr.b if on else self.arr.a))
        elif on:
            self.target.transition(FALL_THROUGH, self.arr.delete)
        else:
            self.target.transition(1, lambda: self.arr.set(self.arr.a))

    def evidence(self, on):
        want = (2 if on else 1) if self.mode == "repoint" else (FALL_THROUGH if on else 1)
        got = self.arr.run(ctypes.create_string_buffer(64))
        return {"ok": got == want, "what": f"the caller returned {got}" + ("" if got == want else f", not {want}")}


class BpfJump:
    name = "bpf-jump"
    description = ("a BPF program array tail-called with a constant key: the JIT-ed jump "
                   "rewritten by smp_text_poke_single, repointed and inserted/deleted")

    def __init__(self):
        self.arr = None
        self.threads = []
        self.stop_flag = threading.Event()
        self.errors = []
        self.runs = 0
        self.lock = threading.Lock()
        # What a run may return: states[g] for each generation g; an odd
        # generation is a flip under way (the old value and the new).
        self.gen = 0
        self.states = [{1}]

    def transition(self, new, do):
        with self.lock:
            old = self.states[-1]
            self.states.append(old | {new})
            self.gen += 1
        do()
        with self.lock:
            self.states.append({new})
            self.gen += 1

    def available(self):
        try:
            with open("/proc/sys/net/core/bpf_jit_enable") as f:
                if f.read().strip() == "0":
                    return "the BPF JIT is off (net.core.bpf_jit_enable = 0): no jump to patch"
        except OSError:
            return "no BPF JIT in this kernel"
        try:
            arr = ProgArray()
            arr.close()
        except OSError as exc:
            return f"BPF refused: {exc.strerror}"
        return None

    def setup(self, rec, env):
        # fd-scoped: nothing for the record
        self.arr = ProgArray()
        self.arr.set(self.arr.a)
        self.items = [Slot(self, "repoint"), Slot(self, "insert-delete")]
        return self.items

    def start(self, cpus, duration=None):
        def worker(cpu):
            try:
                os.sched_setaffinity(0, {cpu})
            except OSError:
                pass
            data = ctypes.create_string_buffer(64)
            n = 0
            while not self.stop_flag.is_set():
                g0 = self.gen
                try:
                    got = self.arr.run(data)
                except OSError as exc:
                    with self.lock:
                        if len(self.errors) < 20:
                            self.errors.append(f"CPU {cpu}: BPF_PROG_TEST_RUN failed: {exc.strerror}")
                    break
                n += 1
                g1 = self.gen
                allowed = set().union(*self.states[g0:g1 + 1])
                if got not in allowed:
                    with self.lock:
                        if len(self.errors) < 20:
                            self.errors.append(f"CPU {cpu}: the caller returned {got} where the slot "
                                               f"held only {sorted(allowed)} (1, 2: programs A, B; "
                                               f"{FALL_THROUGH}: the fall through of an empty slot)")
            with self.lock:
                self.runs += n
        self.threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in cpus]
        for t in self.threads:
            t.start()

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=10)
        if self.arr:
            self.arr.close()
        return {"runs": self.runs, "errors": list(self.errors)}
