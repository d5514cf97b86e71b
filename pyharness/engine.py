"""The engine: one C engine, its participant threads, and a view of its
shared region.

    from pyharness import Config, Engine
    with Engine(Config(cpus=[0, 1], sites=1000)) as eng:
        outcome = eng.run(sites=1000)
    outcome.view.totals()

Arguments are validated here, in Python, before C sees them; C errors
become exceptions in :func:`pyharness.errors.check` only.
"""
import contextlib
import dataclasses
import os
import random
import signal
import threading
import time
from typing import List

from . import cpus as cpumod
from ._ffi import ffi, lib
from .errors import UsageError, check

def table(which):
    """A C table (csrc/**/*.def) as {name: code}, in the table's order: the
    names Python shows and takes come from the lines that make the enums."""
    return {ffi.string(lib.ph_table_name(which, i)).decode(): int(lib.ph_table_code(which, i))
            for i in range(lib.ph_table_size(which))}


def table_descriptions(which):
    """{name: description} of a C table."""
    return {ffi.string(lib.ph_table_name(which, i)).decode():
            ffi.string(lib.ph_table_description(which, i)).decode()
            for i in range(lib.ph_table_size(which))}


POKES = table(lib.PH_TABLE_POKE)
SYNCS = table(lib.PH_TABLE_SYNC)
BPS = {"native": lib.PH_BP_NATIVE, "emulate": lib.PH_BP_EMULATE}
SECSYNCS = {"ack": lib.PH_SECSYNC_ACK, "membarrier": lib.PH_SECSYNC_MEMBARRIER}
KINDS = table(lib.PH_TABLE_KIND)
SINGLE_INSN_KINDS = tuple(k for k, code in KINDS.items() if lib.ph_kind_emulable(code))
PROTOCOLS = table(lib.PH_TABLE_PROTOCOL)
STRESS = table(lib.PH_TABLE_STRESS)
AIMS = table(lib.PH_TABLE_AIM)
MUTANTS = table(lib.PH_TABLE_MUTANT)
ROLE_NAMES = {lib.PH_ROLE_PRIMARY: "primary", lib.PH_ROLE_SECONDARY: "secondary",
              lib.PH_ROLE_EXECUTOR: "executor"}
STATE_NAMES = {0: "SYNC_0", 1: "SYNC_1", 2: "SYNC_2", 3: "SYNC_DONE", 4: "DONE"}
CTX_NAMES = {0: "thread", 1: "nmi", 2: "bp", 3: "nmi+bp"}
EVENT_NAMES = {1: "state-seen", 2: "ack", 3: "sync", 4: "bp-enter", 5: "bp-exit",
               6: "nmi-enter", 7: "nmi-exit", 9: "publish", 10: "retract", 11: "violation"}
WHERE_NAMES = {0: "none", 1: "registered", 2: "finish-loop", 3: "sync-loop", 4: "bp-handler",
               5: "nmi-handler", 6: "poke", 7: "wait-acks", 8: "wait-refs", 9: "executing",
               10: "verify", 11: "exited", 12: "sync-loop: waiting for the state to change",
               13: "finish-loop: waiting for SYNC_DONE to change", 14: "sync-loop: testing its bit",
               15: "between sessions", 16: "taking the NMI lock",
               17: "session entry rendezvous", 18: "session exit rendezvous"}
POKE_STEP_NAMES = {1: "int3", 2: "tail", 3: "first-byte"}
SERIES = {"site_ns": lib.PH_SERIES_SITE_NS, "ack_ns_SYNC_0": lib.PH_SERIES_ACK_NS_0,
          "ack_ns_SYNC_1": lib.PH_SERIES_ACK_NS_1, "ack_ns_SYNC_2": lib.PH_SERIES_ACK_NS_2,
          "ack_ns_SYNC_DONE": lib.PH_SERIES_ACK_NS_DONE, "batch_ns": lib.PH_SERIES_BATCH_NS}


def sync_available(name):
    """True if this CPU can run the sync method (probed through CPUID)."""
    return bool(lib.ph_sync_method_available(SYNCS[name]))


@contextlib.contextmanager
def ctrl_c_deferred():
    """Hold Ctrl-C over a block that starts or joins threads running C;
    raise it when the block ends.  Taken inside Thread.start(), it leaves a
    thread started that its partners may never see (they wait in C until a
    deadline); inside Thread.join(), CPython 3.11 may mark a thread still
    running as stopped, so nothing waits for it at exit.  Only the main
    thread can do this, and only over Python's own SIGINT handler."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    hit = []
    signal.signal(signal.SIGINT, lambda signum, frame: hit.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if hit:
        raise KeyboardInterrupt


def spin_pauses_for(cpus):
    """PAUSEs before a wait yields (C: cfg.spin_pauses; 0: PH_SPIN_PAUSES_DEFAULT).
    Threads sharing a CPU: a waiter that spins keeps the thread it waits
    for off that CPU, so yield after a few PAUSEs instead."""
    return 16 if len(set(cpus)) < len(cpus) else 0


def available_syncs():
    return [s for s in SYNCS if sync_available(s)]


@dataclasses.dataclass
class Config:
    """Everything an engine needs.  ``cpus`` has one entry per thread (a CPU
    may repeat: oversubscription); thread 0 is the primary unless
    ``primary`` names another index."""

    cpus: List[int]
    sites: int = 1000
    kinds: tuple = ("movret", "call", "jmpnop", "block")
    poke: str = "mprotect"
    sync: str = "cpuid"
    bp: str = "native"
    secondary_sync: str = "ack"
    executors: int = 0
    primary: int = 0
    batch: int = 1
    mutant: str = "none"
    seed: int = 1
    deadline: float = 10.0
    trace_len: int = 4096
    inject_delay_ns: int = 0
    force_nmi: int = 0
    aim: int = 0
    protocol: str = "rfc"
    nmi_mode: bool = False
    stress: tuple = ()
    nmi_level: int = 1
    sessions: int = 1

    def validate(self):
        """Raise UsageError / UnsupportedError naming the bad field."""
        if not self.cpus:
            raise UsageError("no CPUs to run on")
        if len(self.cpus) > lib.PH_MAX_THREADS:
            raise UsageError(f"at most {lib.PH_MAX_THREADS} threads")
        cpumod.check_cpus(sorted(set(self.cpus)))
        if not 0 <= self.primary < len(self.cpus):
            raise UsageError(f"primary thread {self.primary} is not one of the {len(self.cpus)} threads")
        for field, table in (("poke", POKES), ("sync", SYNCS), ("bp", BPS),
                             ("secondary_sync", SECSYNCS), ("mutant", MUTANTS)):
            if getattr(self, field) not in table:
                raise UsageError(f"unknown {field.replace('_', '-')} '{getattr(self, field)}'; "
                                 f"choose from {', '.join(table)}")
        if not self.kinds:
            raise UsageError("no site kinds selected")
        for k in self.kinds:
            if k not in KINDS:
                raise UsageError(f"unknown site kind '{k}'; choose from {', '.join(KINDS)}")
        if self.bp == "emulate" and "block" in self.kinds:
            raise UsageError("site kind 'block' is several instructions: only --bp native can "
                             "handle it; drop it from --site-kinds or use --bp native")
        if self.executors and "block" in self.kinds:
            raise UsageError("executors may be inside a multi-instruction block when its tail "
                             "is written: use single-instruction --site-kinds with --executors")
        if not 1 <= self.sites <= (1 << 22):
            raise UsageError(f"--sites must be between 1 and {1 << 22}")
        if not 1 <= self.batch <= min(lib.PH_MAX_BATCH, self.sites):
            raise UsageError(f"--batch must be between 1 and {min(lib.PH_MAX_BATCH, self.sites)}")
        if not 0 <= self.executors < len(self.cpus):
            raise UsageError("--executors must leave the primary its own thread")
        if not self.deadline > 0:
            raise UsageError("the deadline must be positive")
        if self.trace_len and (self.trace_len < 2 or self.trace_len & (self.trace_len - 1)):
            raise UsageError("the trace length must be 0 or a power of two >= 2")
        if self.inject_delay_ns < 0:
            raise UsageError("--inject-delay-ns must not be negative")
        if self.protocol not in PROTOCOLS:
            raise UsageError(f"unknown protocol '{self.protocol}'; choose from {', '.join(PROTOCOLS)}")
        for st in self.stress:
            if st not in STRESS:
                raise UsageError(f"unknown --stress '{st}'; choose from {', '.join(STRESS)}")
        from .protocols import get as protocol   # each protocol's own constraints
        problem = protocol(self.protocol).check(self)
        if problem:
            raise UsageError(problem)
        if not 0 <= self.nmi_level <= 3:
            raise UsageError("--nmi-level must be 1, 2 or 3")
        if not 1 <= self.sessions <= 1_000_000:
            raise UsageError("--sessions must be at least 1")
        if "paired" in self.stress and (self.sites % 2 or (self.batch > 1 and self.batch % 2)):
            raise UsageError("--stress paired needs an even --sites and a --batch of 1 or an even "
                             "number (a lock and its unlock are switched together)")
        return self

    def roles(self):
        """Role of each thread: primary, then executors, then secondaries."""
        out, ex = [], self.executors
        for i in range(len(self.cpus)):
            if i == self.primary:
                out.append(lib.PH_ROLE_PRIMARY)
            elif ex > 0:
                out.append(lib.PH_ROLE_EXECUTOR)
                ex -= 1
            else:
                out.append(lib.PH_ROLE_SECONDARY)
        return out

    def to_c(self):
        c = ffi.new("struct ph_config *")
        c.nthreads = len(self.cpus)
        c.primary = self.primary
        c.nsites = self.sites
        c.kinds_mask = sum(1 << KINDS[k] for k in set(self.kinds))
        c.poke = POKES[self.poke]
        c.sync = SYNCS[self.sync]
        c.bp = BPS[self.bp]
        c.secsync = SECSYNCS[self.secondary_sync]
        c.batch = self.batch
        c.mutant = MUTANTS[self.mutant]
        c.trace_len = self.trace_len
        c.seed = self.seed & 0xFFFFFFFFFFFFFFFF
        c.deadline_ns = int(self.deadline * 1e9)
        c.inject_delay_ns = self.inject_delay_ns
        c.force_nmi = self.force_nmi
        c.aim = self.aim
        c.protocol = PROTOCOLS[self.protocol]
        c.nmi_mode = int(bool(self.nmi_mode))
        c.stress = sum(STRESS[x] for x in set(self.stress))
        c.nmi_level = self.nmi_level
        c.sessions = self.sessions
        c.spin_pauses = spin_pauses_for(self.cpus)
        return c

    def to_dict(self):
        return dataclasses.asdict(self)


def _struct_to_dict(ptr):
    out = {}
    for name, field in ffi.typeof(ptr).item.fields:
        if name.startswith("pad"):
            continue
        val = getattr(ptr, name)
        if field.type.kind == "array":
            val = list(val)
        out[name] = val
    return out


class SharedView:
    """Reads the shared region: the live engine's, or a dead worker's."""

    def __init__(self, base, keepalive=None):
        self.base = ffi.cast("void *", base)
        self.sh = ffi.cast("struct ph_shared *", base)
        self._keepalive = keepalive

    @property
    def nthreads(self):
        return self.sh.nthreads

    def header(self):
        sh = self.sh
        return {"round": sh.round, "seq": sh.round >> 3, "state": STATE_NAMES.get(sh.round & 7),
                "status": sh.status, "nviolations": sh.nviolations, "t_start": sh.t_start,
                "t_end": sh.t_end, "cur_site": ffi.cast("int64_t", sh.cur_site)}

    def counters(self, i):
        return _struct_to_dict(lib.ph_shared_counters(self.base, i))

    def all_counters(self):
        return [self.counters(i) for i in range(self.nthreads)]

    # What says a thread made progress: its protocol position and its work,
    # not its NMIs (a deadlocked thread whose timer still fires takes them).
    PROGRESS_FIELDS = ("heartbeat", "acked_round", "where", "sites_patched", "verified", "rounds")

    def progress_digest(self):
        """[(tid, where, (progress fields...))] per thread, read field by
        field: about 1 ms for 1024 threads, where all_counters() takes ~50 ms
        (a supervisor starved of CPU must not make its own reads the stall)."""
        out = []
        for i in range(self.nthreads):
            c = lib.ph_shared_counters(self.base, i)
            out.append((c.tid, c.where, tuple(getattr(c, f) for f in self.PROGRESS_FIELDS)))
        return out

    def tids(self):
        """Each thread's kernel tid (0 before it registered)."""
        return [lib.ph_shared_counters(self.base, i).tid for i in range(self.nthreads)]

    def wait_stalls(self):
        """[(thread, stall_ns, stall_end, awaited, where, on)]: each thread's
        longest wait stall as its wait steps kept it, read field by field."""
        out = []
        for i in range(self.nthreads):
            c = lib.ph_shared_counters(self.base, i)
            if c.stall_ns:
                out.append((i, c.stall_ns, c.stall_end, c.stall_for, c.stall_where, c.stall_on))
        return out

    def violations(self):
        out = []
        n = min(self.sh.nviolations, lib.PH_MAX_VIOLATIONS)
        for i in range(n):
            v = self.sh.violations[i]
            if v.invariant == 0:
                continue  # slot still being written when the worker died
            out.append({"invariant": v.invariant - 1, "thread": v.thread, "site": v.site,
                        "state": STATE_NAMES.get(v.state, str(v.state)), "ctx": CTX_NAMES.get(v.ctx),
                        "round": v.round, "seq": v.round >> 3, "ts": v.ts, "reason": v.reason,
                        "a": v.a, "b": v.b, "c": v.c})
        return out

    def crash(self):
        c = self.sh.crash
        if c.valid != 1:
            return None
        return {"signo": c.signo, "code": c.code, "thread": c.thread, "site": c.site,
                "addr": c.addr, "rip": c.rip, "round": c.round, "seq": c.round >> 3,
                "state": STATE_NAMES.get(c.round & 7), "ts": c.ts, "bytes": bytes(c.bytes).hex(" ")}

    def ack_map(self):
        """The RFC's shared ack map, as a set of thread indexes."""
        return {w * 64 + b for w in range(16) for b in range(64) if self.sh.sync_ack_map[w] >> b & 1}

    def final_variants(self):
        """The variant the schedule implies for every site (the C observer's)."""
        return bytes(ffi.buffer(ffi.cast("char *", self.base) + self.sh.off_final, self.sh.nsites))

    def checks(self):
        """How much evidence the observer gathered: what each check rests on."""
        cs = self.all_counters()
        sh = self.sh
        return {"flips_scheduled": sh.flips_scheduled, "flips_checked": sh.flips_checked,
                "flips_observed": sh.flips_observed,
                "rounds_scheduled": sh.oracle_rounds, "protection_checks": sh.prot_checks,
                "states_read_back": sum(c["bytes_checked"] for c in cs),
                "executions_held_to_schedule": sum(c["exec_checked"] for c in cs),
                "serializations_proven": sum(c["sync_calls"] - c["sync_bad"] for c in cs),
                "membarriers_returned_0": sum(c["mb_calls"] for c in cs),
                "membarrier_registrations": (hex(sh.mb_registrations) if sh.mb_checked else
                                             "not checked"),
                "breakpoint_writes_held_to_a_sync": sum(c["bp_syncs_checked"] for c in cs),
                "nmis_delivered": sum(c["nmi_entered"] for c in cs),
                "traps_delivered": sum(c["traps"] for c in cs),
                "nmi_probes": sum(c["probes"] for c in cs),
                "sync_cost_ns": sh.sync_cost_ns, "plain_call_ns": sh.plain_cost_ns,
                "sync_token": hex(sh.sync_token), "sync_token_expected": hex(sh.sync_token_expect)}

    def trace(self, thread, max_events=64):
        buf = ffi.new("struct ph_event[]", max_events)
        n = lib.ph_trace_read(self.base, thread, buf, max_events)
        out = []
        for k in range(n):
            ev = buf[k]
            out.append({"ts": ev.ts, "thread": thread, "type": EVENT_NAMES.get(ev.type, str(ev.type)),
                        "ctx": CTX_NAMES.get(ev.ctx), "site": ev.site, "seq": ev.round >> 3,
                        "state": STATE_NAMES.get(ev.round & 7), "arg": ev.arg})
        return out

    def series(self, name):
        buf = ffi.new("uint32_t[]", lib.PH_SAMPLES)
        n = lib.ph_series_read(self.base, SERIES[name], buf, lib.PH_SAMPLES)
        return list(ffi.unpack(buf, n))

    def bp_samples(self, thread):
        buf = ffi.new("uint32_t[]", lib.PH_BP_SAMPLES)
        n = lib.ph_bp_samples_read(self.base, thread, buf, lib.PH_BP_SAMPLES)
        return list(ffi.unpack(buf, n))

    def stop(self):
        lib.ph_shared_stop(self.base)

    def totals(self, roles=None):
        """Sums over threads; breakpoint hits split by the thread's role."""
        cs = self.all_counters()
        t = {"sites_patched": sum(c["sites_patched"] for c in cs),
             "rounds": sum(c["rounds"] for c in cs),
             "exec": [sum(c["exec"][0] for c in cs), sum(c["exec"][1] for c in cs)],
             "exec_torn": sum(c["exec_torn"] for c in cs),
             "nmis": sum(c["nmis"] for c in cs),
             "sync_calls": sum(c["sync_calls"] for c in cs),
             "verified": sum(c["verified"] for c in cs),
             "violations": sum(self.sh.inv_count[i] for i in range(32))}
        bp = {"primary": 0, "secondary": 0, "primary_nmi": 0, "secondary_nmi": 0,
              "native": 0, "emulated": 0, "late": 0, "foreign": 0}
        for c in cs:
            side = "primary" if c["role"] == lib.PH_ROLE_PRIMARY else "secondary"
            bp[side] += c["bp_hits"]
            bp[side + "_nmi"] += c["bp_hits_nmi"]
            bp["native"] += c["bp_native"]
            bp["emulated"] += c["bp_emulated"]
            bp["late"] += c["bp_late"]
            bp["foreign"] += c["bp_foreign"]
        t["bp_hits"] = bp
        return t


@dataclasses.dataclass
class Outcome:
    """What a run did.  ``errors``: C errors per thread (already mapped)."""

    view: SharedView
    elapsed: float
    status: str                       # "complete", "interrupted", "aborted"
    thread_rc: dict
    stuck: list


class Engine:
    """One C engine (one per process: the signal handlers find it)."""

    def __init__(self, config, shm_fd=-1):
        self.config = config.validate()
        p = ffi.new("struct ph_engine **")
        check(lib.ph_engine_create(config.to_c(), shm_fd, p), "ph_engine_create",
              poke=config.poke, sync=config.sync)
        self._e = p[0]
        self.view = SharedView(lib.ph_engine_shared(self._e), keepalive=self)
        self._in_c = set()    # participants that may still use the engine

    def close(self):
        if self._e is None:
            return
        if self._in_c:
            # Threads still inside C (a hung in-process run): freeing the
            # engine under them would crash.  Leak it; the process cannot
            # create another engine, which is the honest outcome.
            self._e = None
            return
        lib.ph_engine_destroy(self._e)
        self._e = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- sites (tests, inspection) --
    def site_kind(self, site):
        return {v: k for k, v in KINDS.items()}[check(lib.ph_site_kind(self._e, site), "ph_site_kind")]

    def site_addr(self, site):
        return lib.ph_site_addr(self._e, site)

    def site_straddles(self, site):
        return bool(check(lib.ph_site_straddles(self._e, site), "ph_site_straddles"))

    def site_values(self, site):
        return (lib.ph_site_value(self._e, site, 0), lib.ph_site_value(self._e, site, 1))

    def site_target(self, site, variant):
        """Where a variant of a call or jmp site branches to (0: it does not)."""
        return lib.ph_site_target(self._e, site, variant)

    def site_variant(self, site):
        return check(lib.ph_site_variant(self._e, site), "ph_site_variant")

    def exec_site(self, site):
        """Run one site on this thread; returns (variant, value)."""
        v = ffi.new("uint32_t *")
        rc = lib.ph_site_exec(self._e, site, v)
        return (rc if rc >= 0 else None), v[0]

    def stuck_threads(self):
        buf = ffi.new("int[]", lib.PH_MAX_THREADS)
        n = lib.ph_stuck_threads(self._e, buf, lib.PH_MAX_THREADS)
        return [self.describe_thread(buf[i]) for i in range(n)]

    def describe_thread(self, i):
        c = self.view.counters(i)
        return (f"thread {i} (cpu {self.config.cpus[i]}, {ROLE_NAMES.get(c['role'], '?')}, "
                f"in {WHERE_NAMES.get(c['where'], '?')})")

    def stop(self):
        """Ask the primary to finish (publishes DONE after its current round)."""
        self.view.stop()

    # -- running --
    def run(self, sites=None, duration=None, nmi_rate=0.0, verify=True, on_tick=None, tick=0.25):
        """Run the protocol once with all participant threads.

        sites: patch this many sites; duration: patch until this many
        seconds passed (one of them); nmi_rate: NMIs per second per thread.
        on_tick(view, elapsed) is called from this thread while it waits.
        """
        if (sites is None) == (duration is None):
            raise UsageError("give either a number of sites or a duration")
        if sites is not None and sites < 0:
            raise UsageError("the number of sites must not be negative")
        if duration is not None and not duration >= 0:
            raise UsageError("the duration must not be negative")
        if nmi_rate < 0:
            raise UsageError("--nmi-rate must not be negative")
        cfg, roles, e = self.config, self.config.roles(), self._e
        rng = random.Random(cfg.seed)
        nmi_first = [rng.randrange(1, 1_000_000) for _ in roles]  # seeded NMI phases
        rcs = {}
        # Which participants may still touch the engine, kept by the
        # participants themselves: after a KeyboardInterrupt in
        # Thread.join(), CPython 3.11 can report a running thread as not
        # alive, and freeing the engine under it crashes.
        in_c, in_c_lock, all_out = set(range(len(roles))), threading.Lock(), threading.Event()
        self._in_c = in_c

        def participant(idx):
            try:
                participate(idx)
            finally:
                with in_c_lock:
                    in_c.discard(idx)
                    if not in_c:
                        all_out.set()

        def participate(idx):
            try:
                os.sched_setaffinity(0, {cfg.cpus[idx]})
            except OSError as exc:
                rcs[idx] = ("sched_setaffinity", -exc.errno)
                return
            rc = lib.ph_thread_register(e, idx, roles[idx])
            if rc < 0:
                rcs[idx] = ("ph_thread_register", rc)
                return
            try:
                if nmi_rate > 0:
                    period = max(int(1e9 / nmi_rate), 1000)
                    rc = lib.ph_nmi_arm(e, idx, period, nmi_first[idx] % period + 1)
                    if rc < 0:
                        rcs[idx] = ("ph_nmi_arm", rc)
                if roles[idx] == lib.PH_ROLE_PRIMARY:
                    rc = lib.ph_wait_registered(e)
                    if rc == 0:
                        until = 0 if duration is None else lib.ph_now_ns() + int(duration * 1e9)
                        rc = lib.ph_primary_run(e, -1 if sites is None else sites, until)
                    elif rc < 0:
                        self.view.stop()
                        lib.ph_primary_run(e, 0, 0)  # publish DONE so secondaries leave
                    what = "ph_primary_run"
                elif roles[idx] == lib.PH_ROLE_EXECUTOR:
                    rc, what = lib.ph_executor_run(e), "ph_executor_run"
                else:
                    rc, what = lib.ph_secondary_run(e), "ph_secondary_run"
                if nmi_rate > 0:
                    lib.ph_nmi_arm(e, idx, 0, 0)  # disarm before verifying
                if rc == 0 and verify:
                    rc, what = lib.ph_verify_run(e), "ph_verify_run"
                rcs.setdefault(idx, (what, rc))
            finally:
                lib.ph_thread_unregister(e, idx)

        threads = [threading.Thread(target=participant, args=(i,), name=f"ph-{i}", daemon=True)
                   for i in range(len(roles))]
        t0 = time.monotonic()
        status = "complete"
        try:
            with ctrl_c_deferred():      # all start, so none runs under a freed engine
                for t in threads:
                    t.start()
            self._join(all_out, t0, on_tick, tick)
        except KeyboardInterrupt:
            status = "interrupted"
            self.view.stop()
            self._join(all_out, t0, on_tick, tick, grace=cfg.deadline + 5)
        elapsed = time.monotonic() - t0
        with in_c_lock:
            stuck = [self.describe_thread(i) for i in sorted(in_c)]
        if stuck:
            status = "hung"
        elif self.view.sh.status == 2:
            status = "aborted"
        errors = {i: (w, rc) for i, (w, rc) in rcs.items() if rc < 0}
        if status == "complete":
            for i, (what, rc) in sorted(errors.items()):
                if rc not in (-110, -125):  # ETIMEDOUT/ECANCELED: recorded as violations
                    check(rc, what, poke=cfg.poke, sync=cfg.sync)
        return Outcome(view=self.view, elapsed=elapsed, status=status,
                       thread_rc={i: rc for i, (w, rc) in rcs.items()}, stuck=stuck)

    def _join(self, all_out, t0, on_tick, tick, grace=None):
        """Sleep until every participant is out of C (never spin: the
        participants need every CPU), waking each tick for on_tick."""
        end = None if grace is None else time.monotonic() + grace
        while True:
            if all_out.is_set() or (end is not None and time.monotonic() > end):
                return
            all_out.wait(timeout=tick)
            if on_tick:
                on_tick(self.view, time.monotonic() - t0)
