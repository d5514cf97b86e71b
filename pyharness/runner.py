"""Contained stress runs: the workload runs in a worker process; this
parent watches it through the shared memfd, shows progress, enforces the
time limit, and writes the report whatever the worker does (finish, crash,
hang, Ctrl-C).

    report = run_stress(RunSpec(config=Config(cpus=[0, 1]), duration=10))
"""
import dataclasses
import json
import mmap
import os
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

from . import checker, report as rpt
from ._ffi import ffi, lib
from .engine import STATE_NAMES, WHERE_NAMES, Config, SharedView, sync_available
from .errors import (EXIT_INTERRUPTED, EXIT_PASS, EXIT_VIOLATIONS, PyharnessError,
                     SyncUnavailableError, UnsupportedError)
from . import errors as errmod

TICK = 0.2
# After the time limit and the grace period, a worker whose threads still
# make progress is overloaded, not hung: it gets up to this many more grace
# periods to finish (a bound: a run ends within its duration plus 5x grace).
OVERLOAD_GRACES = 4
STALL_S = 1.0            # progress is judged between snapshots at least this far apart


@dataclasses.dataclass
class RunSpec:
    config: Config
    sites: Optional[int] = None          # patch this many sites ...
    duration: Optional[float] = None     # ... or patch for this long
    nmi_rate: float = 0.0
    scenario: str = "rfc-native"
    grace: float = 5.0                   # after the time limit, before SIGKILL
    timeout: float = 600.0               # time limit of a --sites run
    mdwe: bool = False                   # worker sets PR_SET_MDWE first
    argv: List[str] = dataclasses.field(default_factory=list)
    stop_on_violation: bool = False      # selftest: stop at the first evidence
    stop_on_invariant: Optional[str] = None  # ... or only once this invariant is seen
    placement: str = "default"           # how thread_cpus were chosen (platform/placement.py)

    def limit(self):
        return self.duration if self.duration is not None else self.timeout


class _Progress:
    def __init__(self, enabled, spec):
        self.enabled = enabled
        self.spec = spec
        self.shown = False

    def __call__(self, view, elapsed):
        if not self.enabled:
            return
        t = view.totals()
        bp = t["bp_hits"]
        total = f"{self.spec.duration:.0f}s" if self.spec.duration is not None else f"{self.spec.sites} sites"
        line = (f"\r[{self.spec.scenario}] {elapsed:6.1f}s/{total}  sites {t['sites_patched']}  "
                f"breakpoint hits primary {bp['primary']} secondary {bp['secondary']} "
                f"(in NMI {bp['primary_nmi']}/{bp['secondary_nmi']})  "
                f"NMIs {t['nmis']}  violations {t['violations']}")
        sys.stderr.write(line[:200].ljust(120))
        sys.stderr.flush()
        self.shown = True

    def done(self):
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _worker_env():
    from .spawn import worker_env
    return worker_env()


def _raise_worker_error(err):
    cls = getattr(errmod, err.get("type", ""), None)
    if not (isinstance(cls, type) and issubclass(cls, PyharnessError)):
        cls = errmod.CoreError
    exc = cls.__new__(cls)
    PyharnessError.__init__(exc, err.get("message", "worker failed"))
    raise exc


def run_stress(spec, json_path=None, progress=None, log=None):
    """Run one contained stress run; returns the report (a dict).  ``log``:
    a pyharness.platform.log.RunLog written while the run goes on."""
    cfg = spec.config.validate()
    if not sync_available(cfg.sync):
        raise SyncUnavailableError(
            f"sync method '{cfg.sync}' is not available on this CPU (CPUID does not report it); "
            f"use --sync cpuid or --sync iret")
    if cfg.secondary_sync == "membarrier" and not lib.ph_membarrier_sync_core_supported():
        raise UnsupportedError("membarrier(PRIVATE_EXPEDITED_SYNC_CORE) is not supported by this "
                               "kernel; use --secondary-sync ack")
    if progress is None:
        progress = sys.stderr.isatty()
    size = lib.ph_shared_size(cfg.to_c())
    from .platform import evidence as evmod
    from .platform.health import HealthWatch
    evidence = evmod.collect(cfg.cpus)
    health = HealthWatch(cfg.cpus, pids=[os.getpid()]).start()
    fd = os.memfd_create("pyharness-shared", 0)
    try:
        os.ftruncate(fd, size)
        mm = mmap.mmap(fd, size)
        view = SharedView(ffi.from_buffer(mm), keepalive=mm)
        rep = _supervise(spec, fd, view, _Progress(progress, spec), log, evidence, health)
    finally:
        os.close(fd)
        if lib.ph_shared_check(view.base, view.sh.size or 1) == 0:
            for c in view.all_counters():   # a fault line names the thread
                if c["tid"]:
                    health.add_pid(c["tid"])
        health.stop()
    rep["evidence"] = evmod.finish(evidence, cfg.cpus)
    rep["health"] = health.report()
    add_violations(rep, health.violations(rep["health"]))
    if json_path:
        rpt.write_json(rep, json_path)
    return rep


def add_violations(rep, items):
    """Violations found outside the worker (machine health): into the report,
    its counts, verdict and exit code."""
    if not items:
        return rep
    rep["violations"] += items
    for v in items:
        rep["violation_counts"][v["invariant"]] = rep["violation_counts"].get(v["invariant"], 0) + 1
    rep["invariants"] = rpt.invariant_table(rep["violation_counts"])
    rep["verdict"] = "fail"
    if rep["exit_code"] != EXIT_INTERRUPTED:
        rep["exit_code"] = EXIT_VIOLATIONS
    return rep


def _supervise(spec, fd, view, progress, log=None, evidence=None, health=None):
    cfg = spec.config
    payload = json.dumps({"config": {**cfg.to_dict(), "kinds": list(cfg.kinds)},
                          "sites": spec.sites, "duration": spec.duration,
                          "nmi_rate": spec.nmi_rate, "mdwe": spec.mdwe})
    # stderr goes to a file: a chatty worker must never block on a full pipe.
    errfile = tempfile.TemporaryFile(mode="w+")
    child = subprocess.Popen([sys.executable, "-m", "pyharness._worker", str(fd)],
                             pass_fds=(fd,), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=errfile, text=True, **_worker_env())
    child.stdin.write(payload)
    child.stdin.close()
    child.stdin = None
    if health:
        health.add_pid(child.pid)
    t0 = time.monotonic()
    limit = spec.limit()
    stop_sent_at = None
    interrupted = hung = False
    overloaded = None
    watch = _ProgressWatch(view)
    stalls = _StallWatch(view, cfg, pid=child.pid)
    caught_at = None
    try:
        if log:
            log.start(spec, evidence, child.pid)
        while child.poll() is None:
            # A Ctrl-C anywhere in this loop asks the worker to stop; the
            # report is still written, marked interrupted.
            try:
                time.sleep(TICK)
                elapsed = time.monotonic() - t0
                if lib.ph_shared_check(view.base, view.sh.size or 1) == 0:
                    watch.sample()
                    stalls.sample()
                    if stop_sent_at is None:      # after the stop: only what decides hung
                        progress(view, elapsed)
                    if log:
                        log.progress(elapsed, view.totals())
                        if view.sh.nviolations or log.logged:
                            log.violations(checker.recorded_violations(view, cfg.cpus, cfg.roles(), 0),
                                           elapsed)
                    if (spec.stop_on_violation and caught_at is None
                            and (_has_evidence(view, cfg, spec.stop_on_invariant)
                                 or _short_of_stress(view, spec, elapsed)
                                 or ((stalls.worst or stalls.wait_worst)
                                     and spec.stop_on_invariant in (None, "progress")))):
                        caught_at = elapsed
                        if stop_sent_at is None:
                            view.stop()
                            stop_sent_at = time.monotonic()
            except KeyboardInterrupt:
                interrupted = True
            elapsed = time.monotonic() - t0
            if (interrupted or elapsed > limit) and stop_sent_at is None:
                view.stop()     # the primary finishes its round and publishes DONE
                stop_sent_at = time.monotonic()
            if stop_sent_at is not None and time.monotonic() - stop_sent_at > spec.grace:
                since = time.monotonic() - stop_sent_at
                if watch.live() and since <= spec.grace * (1 + OVERLOAD_GRACES):
                    overloaded = since       # slow, not stuck: let it finish
                else:
                    hung = True
                    break
    finally:
        stuck = watch.stuck(cfg, child.pid) if hung else []
        if lib.ph_shared_check(view.base, view.sh.size or 1) == 0:
            stalls.sample(final=True)         # the waits' records as the run left them
        if child.poll() is None:
            child.kill()
        try:
            out, _ = child.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            out = ""
        errfile.seek(0)
        err = errfile.read()
        errfile.close()
        progress.done()
    elapsed = time.monotonic() - t0
    result = None
    for line in (out or "").splitlines():
        try:
            result = json.loads(line)
        except ValueError:
            continue
    if result and not result.get("ok"):
        _raise_worker_error(result["error"])
    exit_info = {"returncode": child.returncode, "hung": hung, "stuck": stuck,
                 "stalls": stalls.violations(),
                 "progress": {"longest_standstill_s": round(stalls.longest, 3),
                              "bound_s": (round(stalls.bound(), 3) if stalls.bound() else None),
                              "longest_waits": stalls.wait_table()},
                 "overloaded_s": overloaded, "stopped_early": stop_sent_at is not None,
                 "signal": -child.returncode if child.returncode and child.returncode < 0 else None,
                 "stderr": (err or "")[-2000:]}
    if result is None and not hung and child.returncode == 1 and "Traceback" in (err or ""):
        raise errmod.CoreError("worker failed: " + (err or "").strip().splitlines()[-1])
    return build_report(spec, view, result, exit_info, interrupted, elapsed, caught_at)


def _steal_s(cpus):
    """Seconds the host stole from these CPUs so far, on average per CPU
    (/proc/stat's steal, in USER_HZ ticks); None where it cannot be read."""
    try:
        with open("/proc/stat") as f:
            rows = {ln.split()[0]: ln.split() for ln in f if ln.startswith("cpu")}
        hz = os.sysconf("SC_CLK_TCK")
        vals = [int(rows[f"cpu{c}"][8]) for c in set(cpus) if f"cpu{c}" in rows]
        return sum(vals) / len(vals) / hz if vals else None
    except (OSError, ValueError, IndexError):
        return None


class _StallWatch:
    """Progress as evidence, two ways.

    The run's: how long the published state stood still while the run was
    on (its rounds begun, DONE not yet published), net of the time the host
    stole from the run's CPUs meanwhile.

    Each wait's: every protocol wait's step (ph_spin_step) keeps the
    waiting thread's longest stall -- how long the thread it waited for
    showed no progress (the observer's SEEN, ACK, PUBLISH and STEP_DONE) --
    with whom and what it waited on and when the stall last grew; here it
    is netted of the host's steal over that stretch.

    The bound is the run's own: STALL_ROUNDS times its mean round so far,
    never below STALL_MIN_S (the supervisor's tick makes finer ones noise)
    nor above half the deadline (past it, the deadline itself names the
    wait).  It is judged once the run has STALL_WARMUP_ROUNDS rounds to
    derive it from.  A wait that stalls and then ends because the run
    stopped is recorded all the same."""

    STALL_ROUNDS = 50
    STALL_MIN_S = 1.0
    STALL_WARMUP_ROUNDS = 8
    STEAL_KEEP = 4096            # steal samples kept (decimated beyond)

    def __init__(self, view, cfg, pid=None):
        self.view, self.cfg, self.pid = view, cfg, pid
        self.delay = {}              # thread -> [(ph_now_ns, s it has been off CPU so far)]
        self.since_delay = {}
        self.exec0 = {}              # thread -> (ph_now_ns, its CPU time) at its first look
        self.last = None
        self.since = self.since_steal = None
        self.worst = None            # the longest stall past its bound: a dict
        self.longest = 0.0           # the longest standstill seen, net of steal
        self.steal = []              # [(ph_now_ns, stolen s)], for the waits' stretches
        self.waits = {}              # thread -> its longest wait stall (a dict)
        self.wait_worst = {}         # thread -> the same, past the bound

    def bound(self):
        sh = self.view.sh
        rounds = sh.oracle_rounds
        if not sh.t_start or rounds < self.STALL_WARMUP_ROUNDS:
            return None
        mean = (lib.ph_now_ns() - sh.t_start) / 1e9 / rounds
        return min(max(self.STALL_MIN_S, self.STALL_ROUNDS * mean), self.cfg.deadline / 2)

    def _run_delays(self):
        """Each worker thread's time off CPU so far (the wall clock since our
        first look, less its CPU time from /proc/PID/task/TID/schedstat):
        runnable but waiting for its CPU (the guest's own competition, as the
        host's steal is the host's) or blocked in the kernel (an mprotect
        behind another's mmap lock).  The protocols' waits spin: a thread
        stuck in one stays on CPU, so this never hides a protocol's stall."""
        if not self.pid or not hasattr(self.view, "tids"):
            return {}
        out = {}
        now = lib.ph_now_ns()
        for i, tid in enumerate(self.view.tids()):
            if not tid:
                continue
            try:
                with open(f"/proc/{self.pid}/task/{tid}/schedstat") as f:
                    run = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            t0, r0 = self.exec0.setdefault(i, (now, run))
            out[i] = max(0.0, ((now - t0) - (run - r0)) / 1e9)
        return out

    def _off_cpu_between(self, awaited, t0_ns, t1_ns):
        """How long the awaited thread was off CPU over [t0, t1] (-1: the
        primary, whose publication was awaited; -3: any other)."""
        if awaited == -1:
            who = [self.cfg.primary]
        elif awaited >= 0:
            who = [awaited]
        else:
            who = list(self.delay)
        return max([self._stolen_between(t0_ns, t1_ns, self.delay.get(i, [])) for i in who] or [0.0])

    def _stolen_between(self, t0_ns, t1_ns, pts=None):
        """Steal (or another series) over [t0, t1] from the samples (linear
        between them)."""
        pts = self.steal if pts is None else pts
        if len(pts) < 2:
            return 0.0

        def at(t):
            if t <= pts[0][0]:
                return pts[0][1]
            if t >= pts[-1][0]:
                return pts[-1][1]
            lo, hi = 0, len(pts) - 1
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if pts[mid][0] <= t:
                    lo = mid
                else:
                    hi = mid
            (ta, sa), (tb, sb) = pts[lo], pts[hi]
            return sa + (sb - sa) * (t - ta) / max(1, tb - ta)
        return max(0.0, at(t1_ns) - at(t0_ns))

    def sample(self, final=False):
        sh = self.view.sh
        r, now = sh.round, time.monotonic()
        # DONE of the last session ends the watch; between sessions DONE
        # is a state the run must move on from like any other.
        running = (sh.t_start and not sh.t_end and sh.status == 0
                   and not ((r & 7) == 4 and sh.final_session))
        steal = _steal_s(self.cfg.cpus)
        t_ns = lib.ph_now_ns()
        if steal is not None:
            self.steal.append((t_ns, steal))
            if len(self.steal) > self.STEAL_KEEP:
                self.steal = self.steal[::2]
        delays = self._run_delays()
        for i, d in delays.items():
            pts = self.delay.setdefault(i, [])
            pts.append((t_ns, d))
            if len(pts) > self.STEAL_KEEP:
                self.delay[i] = pts[::2]
        self._sample_waits()
        if final:
            return
        if not running or r != self.last:
            self.last, self.since, self.since_steal = r, now, steal
            self.since_delay = delays
            return
        stolen = (steal - self.since_steal) if steal is not None and self.since_steal is not None else 0.0
        # and the longest any thread spent off CPU meanwhile (runnable, or
        # blocked in the kernel): a box that starves or blocks the run's
        # threads is not the protocol standing still
        stolen = max(0.0, stolen) + max([d - self.since_delay.get(i, d) for i, d in delays.items()] or [0.0])
        still = now - self.since - max(0.0, stolen)
        self.longest = max(self.longest, still)
        b = self.bound()
        if b is None or still <= b or (self.worst and self.worst["since"] == self.since
                                       and self.worst["still_s"] >= still):
            return
        waits = [{"thread": i, "where": WHERE_NAMES.get(c["where"], c["where"]),
                  "last_seen": c["seen_round"]} for i, c in enumerate(self.view.all_counters())]
        self.worst = {"since": self.since, "still_s": round(still, 3), "bound_s": round(b, 3),
                      "stolen_s": round(max(0.0, stolen), 3), "round": r, "waits": waits}

    def _sample_waits(self):
        """Each thread's longest wait stall, read field by field (cheap for
        many threads), netted of steal and held to the bound."""
        b = self.bound()
        for i, ns, end, awaited, where, on in self.view.wait_stalls():
            old = self.waits.get(i)
            if old and old["ns"] == ns:
                continue
            stolen = self._stolen_between(end - ns, end) + self._off_cpu_between(int(awaited), end - ns, end)
            net = max(0.0, ns / 1e9 - stolen)
            rec = {"thread": i, "ns": ns, "stall_s": round(ns / 1e9, 3), "net_s": round(net, 3),
                   "stolen_s": round(stolen, 3), "awaited": int(awaited),
                   "where": WHERE_NAMES.get(where, where),
                   "on_seq": on >> 3, "on_state": STATE_NAMES.get(on & 7)}
            self.waits[i] = rec
            if b is not None and net > b:
                self.wait_worst[i] = dict(rec, bound_s=round(b, 3))

    @staticmethod
    def _awaited(rec):
        a = rec["awaited"]
        return (f"thread {a}" if a >= 0 else "the published state" if a == -1
                else "any other thread")

    def wait_table(self, top=5):
        """The longest wait stalls, longest first (the run's JSON)."""
        rows = sorted(self.waits.values(), key=lambda w: -w["net_s"])[:top]
        return [{"thread": w["thread"], "stall_s": w["stall_s"], "net_s": w["net_s"],
                 "awaited": self._awaited(w), "where": w["where"],
                 "on_seq": w["on_seq"], "on_state": w["on_state"]} for w in rows]

    def violations(self):
        out = []
        w = self.worst
        if w:
            who = "; ".join(f"thread {x['thread']} {x['where']}" for x in w["waits"])
            out.append({"invariant": "progress", "reason": "stall",
                        "detail": (f"the published state stood at seq {w['round'] >> 3} "
                                   f"{STATE_NAMES.get(w['round'] & 7)} for {w['still_s']:g} s net of "
                                   f"{w['stolen_s']:g} s the host stole or a thread of the run spent off CPU "
                                   f"(runnable or blocked), past the bound {w['bound_s']:g} s "
                                   f"({self.STALL_ROUNDS} times this run's mean round, at least "
                                   f"{self.STALL_MIN_S:g} s): {who}"),
                        "thread": None, "cpu": None, "role": None, "site": None, "seq": w["round"] >> 3,
                        "state": STATE_NAMES.get(w["round"] & 7), "ctx": None, "source": "counters"})
        for i, w in sorted(self.wait_worst.items()):
            out.append({"invariant": "progress", "reason": "wait-stall",
                        "detail": (f"thread {i}'s wait ({w['where']}, on seq {w['on_seq']} "
                                   f"{w['on_state']}) saw {self._awaited(w)} make no progress for "
                                   f"{w['net_s']:g} s net of {w['stolen_s']:g} s the host stole or it spent off "
                                   "CPU (runnable or blocked), past "
                                   f"the bound {w['bound_s']:g} s ({self.STALL_ROUNDS} times this run's "
                                   f"mean round, at least {self.STALL_MIN_S:g} s)"),
                        "thread": i, "cpu": None, "role": None, "site": None, "seq": w["on_seq"],
                        "state": w["on_state"], "ctx": None, "source": "counters"})
        return out


class _ProgressWatch:
    """Whether the worker still makes progress, judged between snapshots of
    its threads' protocol position and work taken at least STALL_S apart,
    each stamped after it was read.  How late the supervisor itself got to
    look (a box flooded with signals starves it) is never the stall."""

    def __init__(self, view):
        self.view = view
        self.base = self.base_t = None
        self.moved = None             # thread indices that changed between the last two
        self.changed_at = {}

    def sample(self):
        snap = self.view.progress_digest()
        now = time.monotonic()
        if self.base is None:
            self.base, self.base_t = snap, now
            return
        if now - self.base_t < STALL_S:
            return
        self.moved = {i for i, (a, b) in enumerate(zip(self.base, snap)) if a != b}
        for i in self.moved:
            self.changed_at[i] = now
        self.base, self.base_t = snap, now

    def live(self):
        """Some thread not yet exited changed between the last two snapshots."""
        if lib.ph_shared_check(self.view.base, self.view.sh.size or 1) != 0:
            return False
        self.sample()
        return bool(self.moved) and any(
            WHERE_NAMES.get(self.base[i][1]) != "exited" for i in self.moved)

    def stuck(self, cfg, pid):
        """The threads that have not left, with where they are: verify and
        the waits before it included (a thread stuck there is stuck too),
        and the kernel's view of each (its task state)."""
        if lib.ph_shared_check(self.view.base, self.view.sh.size or 1) != 0:
            return []
        out, now = [], time.monotonic()
        counters = self.view.all_counters()
        for i, c in enumerate(counters):
            where = WHERE_NAMES.get(c["where"], "?")
            if where == "exited":
                continue
            still = now - self.changed_at.get(i, self.base_t or now)
            extra = f", verified {c['verified']}" if where == "verify" else ""
            out.append(f"thread {i} (cpu {cfg.cpus[i]}, in {where}, acked seq "
                       f"{c['acked_round'] >> 3} state {c['acked_round'] & 7}{extra}, no progress "
                       f"for {still:.1f} s, task {_task_state(pid, c['tid'])})")
        return out


def _task_state(pid, tid):
    """The kernel's one-letter state of a thread (R running, S sleeping, D
    in the kernel, T stopped, Z gone), from /proc; '?' if unreadable."""
    try:
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


def _has_evidence(view, cfg, invariant=None):
    live = checker.live_caught(view.all_counters(), cfg)
    if invariant is None:
        return bool(view.sh.nviolations or live)
    return invariant in checker.core_counts(view) or any(v["invariant"] == invariant for v in live)


# Stress coverage is judged live only after this much of a run: its floors
# are a tenth of what the run implies so far, which the first moments of a
# run (threads pinning, timers arming) do not yet say.
COVERAGE_WARMUP_S = 2.0


def _short_of_stress(view, spec, elapsed):
    """A stress condition already below its floor (stop-on-violation runs)."""
    if elapsed < COVERAGE_WARMUP_S or spec.stop_on_invariant not in (None, "stress-coverage"):
        return False
    return bool(checker.coverage_violations(
        checker.stress_coverage(view, spec.config, spec.nmi_rate, live=True)))


def _placement(spec, roles):
    from .platform.placement import describe
    return describe(spec.placement, spec.config.cpus, roles)


def build_report(spec, view, result, exit_info, interrupted, elapsed, caught_at=None):
    cfg = spec.config
    roles = cfg.roles()
    laid_out = lib.ph_shared_check(view.base, view.sh.size or 1) == 0
    crash = view.crash() if laid_out else None
    status = "complete"
    if exit_info["hung"]:
        status = "hung"
    elif crash or exit_info["signal"] or (exit_info["returncode"] not in (0, None)):
        status = "crashed"
    elif interrupted:
        status = "interrupted"
    elif result and result.get("status") not in (None, "complete"):
        status = result["status"]
    violations = []
    coverage = {}
    if laid_out:
        counters = view.all_counters()
        violations += checker.recorded_violations(view, cfg.cpus, roles)
        violations += checker.counter_violations(counters, cfg, complete=(status == "complete"),
                                                 verify=True)
        violations += checker.schedule_violations(view, spec, complete=(status == "complete"),
                                                  stopped=exit_info.get("stopped_early", False))
        violations += exit_info.get("stalls", [])
        coverage = checker.stress_coverage(view, cfg, spec.nmi_rate)
        if status == "complete":     # a run cut short is judged by what it is (interrupted, hung)
            violations += checker.coverage_violations(coverage)
    violations += checker.fate_violations(exit_info, crash, cfg.cpus, roles)
    counts = {}
    for v in violations:
        if v.get("source") != "core":
            counts[v["invariant"]] = counts.get(v["invariant"], 0) + 1
    if laid_out:   # the core counts past its record cap
        for name, n in checker.core_counts(view).items():
            counts[name] = counts.get(name, 0) + n
    verdict = "fail" if violations else "pass"
    if status == "interrupted":
        exit_code = EXIT_INTERRUPTED
        if verdict == "pass":       # no violation in what ran, but it did not run to its end
            verdict = "incomplete"
    else:
        exit_code = EXIT_VIOLATIONS if violations or status in ("hung", "crashed", "aborted") else EXIT_PASS
        if status in ("hung", "crashed", "aborted") and verdict == "pass":
            verdict = "fail"
    t_start = view.sh.t_start if laid_out else 0
    stamps = [v["ts_ns"] for v in violations if v.get("ts_ns")]
    if stamps and t_start:   # the earliest evidence: recorded in C, or seen live in counters
        at = max(0.0, (min(stamps) - t_start) / 1e9)
        caught_at = at if caught_at is None else min(caught_at, at)
    from .machine import machine_info
    rep = {
        "schema": rpt.SCHEMA,
        "verdict": verdict,
        "status": status,
        "exit_code": exit_code,
        "scenario": spec.scenario,
        "violations": violations,
        "violation_counts": counts,
        "invariants": rpt.invariant_table(counts),
        "totals": view.totals() if laid_out else {"sites_patched": 0, "bp_hits": {}},
        "threads": rpt.thread_table(view, cfg) if laid_out else [],
        "distributions": rpt.distributions(view) if laid_out else {},
        "checks": rpt.checks_section(view, cfg) if laid_out else {},
        "coverage": coverage,
        "stress_reduced": checker.box_reductions(coverage) if status == "complete" else [],
        "progress": exit_info.get("progress"),
        "crash": crash,
        "stuck_threads": exit_info.get("stuck") or [],
        "worker": {"returncode": exit_info["returncode"], "signal": exit_info["signal"],
                   "stderr_tail": exit_info["stderr"] if exit_info["returncode"] else ""},
        "elapsed_s": elapsed,
        "overloaded": ({"extra_s": exit_info["overloaded_s"],
                        "note": "still progressing after the limit and the grace period: slow, "
                                "not stuck"} if exit_info.get("overloaded_s") else None),
        "first_evidence_s": caught_at,
        "run": {"sites": spec.sites, "duration": spec.duration, "nmi_rate": spec.nmi_rate},
        "config": {**cfg.to_dict(), "kinds": list(cfg.kinds)},
        "placement": _placement(spec, roles),
        "machine": machine_info(),
        "replay": rpt.replay_command(spec.argv) if spec.argv else None,
    }
    if verdict == "fail" and laid_out:
        rep["trace_tail"] = {str(i): view.trace(i, 64) for i in range(view.nthreads)}
        from .diagnose import diagnose
        rep["diagnosis"] = diagnose(view, cfg, violations, status)
    return rep
