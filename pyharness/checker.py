"""The invariants, and the checks that turn counters, C records and the
worker's fate into named violations.

C records violations at the spot (with the trace events around them);
this module adds what only totals can show (ack counts, unresolved traps,
verification), and what only the parent can see (a crash, a hang).
"""
import signal

from .engine import CTX_NAMES, POKE_STEP_NAMES, ROLE_NAMES, STATE_NAMES, lib

INVARIANTS = [
    ("known-variant", "(a) every execution of a site returned one of its two known variants "
                      "(no torn execution)"),
    ("no-fault", "(b) no SIGILL/SIGSEGV/SIGBUS on site text"),
    ("new-variant-after-done", "(c) once DONE is published, every thread runs the new variant"),
    ("ack-once", "(d) each secondary acks each SYNC state exactly once per round, after its "
                 "sync_one(); SYNC_DONE is never acked inside the sync loop"),
    ("acked-before-publish", "(e) the primary never published a state while an ack for the "
                             "previous one was missing"),
    ("int3-resolved", "(f) every INT3 hit was resolved by our handler"),
    ("bytes-intended", "(g) after each site, its bytes equal the intended bytes"),
    ("bp-depth", "(h) breakpoint re-entry depth stays within the protocol's bound (1)"),
    ("deadline", "(i) no wait exceeded its deadline; the run ended in time"),
    ("int3-guard", "(j) a site's bytes change only behind INT3: the tail while byte 0 is INT3, "
                   "byte 0 last"),
]
NAMES = [n for n, _ in INVARIANTS]
MAX_BP_DEPTH = 1


def _detail(name, v):
    a, b = v["a"], v["b"]
    if name == "known-variant":
        return f"site {v['site']} returned {a:#010x}, which is neither of its variants (variant 0 is {b:#010x})"
    if name == "no-fault":
        return f"{signal.Signals(a).name if a in signal.Signals._value2member_map_ else a} at rip {b:#x}"
    if name == "new-variant-after-done":
        return f"after DONE site {v['site']} returned {a:#010x}, expected {b:#010x}"
    if name == "acked-before-publish":
        return (f"published seq {v['seq']} {v['state']} while thread {v['thread']} had acked only "
                f"seq {b >> 3} {STATE_NAMES.get(b & 7)} of the previous seq {a >> 3} {STATE_NAMES.get(a & 7)}")
    if name == "int3-resolved":
        if b == 1:
            return f"breakpoint on site {v['site']} cannot be emulated (opcode {a:#04x}): not one instruction"
        return (f"breakpoint descriptor (generation {a}) was retired, or reused, while this handler "
                f"still held a reference")
    if name == "bytes-intended":
        return (f"site {v['site']} byte {a} is {b >> 8:#04x} after patching, "
                f"intended {b & 0xff:#04x}")
    if name == "bp-depth":
        return f"breakpoint taken at depth {a} (bound {MAX_BP_DEPTH}) at {b:#x}: a site on the handler's own path"
    if name == "deadline":
        return (f"a wait exceeded its {a / 1e9:g} s deadline in seq {v['seq']} {v['state']}"
                + (f"; thread {v['thread']} had acked up to seq {b >> 3} {STATE_NAMES.get(b & 7)}"
                   if b else ""))
    if name == "int3-guard":
        return (f"the {POKE_STEP_NAMES.get(a, a)} write changed site {v['site']} while byte 0 was "
                f"{b:#04x}, not INT3")
    return f"a={a:#x} b={b:#x}"


def _who(thread, cpus, roles):
    if thread is None or thread < 0 or thread >= len(cpus):
        return {"thread": None, "cpu": None, "role": None}
    return {"thread": thread, "cpu": cpus[thread], "role": ROLE_NAMES.get(roles[thread])}


def recorded_violations(view, cpus, roles, with_trace=10):
    """The C-recorded violations, named, with the frozen trace around them."""
    out = []
    n = min(view.sh.nviolations, lib.PH_MAX_VIOLATIONS)
    from .engine import EVENT_NAMES
    for i in range(n):
        raw = view.sh.violations[i]
        if raw.invariant == 0:
            continue
        inv = raw.invariant - 1
        v = {"a": raw.a, "b": raw.b, "site": raw.site, "seq": raw.round >> 3,
             "state": STATE_NAMES.get(raw.round & 7), "thread": raw.thread}
        name = NAMES[inv] if 0 <= inv < len(NAMES) else f"invariant-{inv}"
        item = {"invariant": name, "detail": _detail(name, v), **_who(raw.thread, cpus, roles),
                "site": raw.site if raw.site >= 0 else None, "seq": v["seq"], "state": v["state"],
                "ctx": CTX_NAMES.get(raw.ctx), "ts_ns": raw.ts, "source": "core"}
        if len(out) < with_trace:
            item["trace"] = [{"ts_ns": ev.ts, "type": EVENT_NAMES.get(ev.type, ev.type),
                              "ctx": CTX_NAMES.get(ev.ctx), "site": ev.site, "seq": ev.round >> 3,
                              "state": STATE_NAMES.get(ev.round & 7), "arg": ev.arg}
                             for ev in raw.around[0:raw.naround]]
        out.append(item)
    return out


def core_counts(view):
    """Every violation the core counted, per invariant (records are capped)."""
    return {NAMES[i]: view.sh.inv_count[i] for i in range(len(NAMES)) if view.sh.inv_count[i]}


def counter_violations(counters, config, complete, verify=True):
    """What the totals show.  ``complete``: the run ended normally, so
    every round finished and every thread verified."""
    out = []
    cpus, roles = config.cpus, config.roles()
    prim = counters[config.primary]
    published = prim["acks"]          # the primary acks each state it publishes
    acking = config.secondary_sync == "ack"

    def add(name, thread, detail):
        out.append({"invariant": name, "detail": detail, **_who(thread, cpus, roles),
                    "site": None, "seq": None, "state": None, "ctx": None, "source": "counters"})

    for i, c in enumerate(counters):
        if i == config.primary:
            continue
        if acking:
            for st in range(4):
                want, got = published[st], c["acks"][st]
                if got > want or (complete and got != want) or got < want - 1:
                    add("ack-once", i, f"acked {STATE_NAMES[st]} {got} times in {want} published rounds")
            if c["acks_unsynced"]:
                add("ack-once", i, f"{c['acks_unsynced']} acks given without a sync_one() before them")
            if c["acks_done_in_sync_loop"]:
                add("ack-once", i, f"SYNC_DONE acked {c['acks_done_in_sync_loop']} times inside the "
                                   f"sync loop (must be acked in the finish loop only)")
    for i, c in enumerate(counters):
        resolved = c["bp_native"] + c["bp_emulated"] + c["bp_late"]
        if complete and c["bp_hits"] != resolved:
            add("int3-resolved", i, f"{c['bp_hits']} breakpoint hits, {resolved} resolved")
        if c["bp_depth_max"] > MAX_BP_DEPTH:
            add("bp-depth", i, f"breakpoint depth reached {c['bp_depth_max']} (bound {MAX_BP_DEPTH})")
        if complete and verify and c["verified"] != config.sites:
            add("new-variant-after-done", i, f"verified {c['verified']} of {config.sites} sites after DONE")
    return out


def live_caught(counters, config):
    """Violations visible in counters while a run is still going (selftest
    stops early on them): only monotonic evidence, never a deficit."""
    return [v for v in counter_violations(counters, config, complete=False, verify=False)]


def fate_violations(exit_info, crash, cpus, roles):
    """What the parent saw happen to the worker."""
    out = []
    if crash and crash.get("code") != lib.PH_EXIT_RECURSION and crash.get("signo") != signal.SIGTRAP:
        out.append({"invariant": "no-fault",
                    "detail": (f"worker took {signal.Signals(crash['signo']).name} at rip {crash['rip']:#x}"
                               f" (address {crash['addr']:#x}, site {crash['site']}); bytes there: "
                               f"{crash['bytes']}"),
                    **_who(crash["thread"], cpus, roles), "site": crash["site"] if crash["site"] >= 0 else None,
                    "seq": crash["seq"], "state": crash["state"], "ctx": None, "source": "parent"})
    sig = exit_info.get("signal")
    faults = (signal.SIGILL, signal.SIGSEGV, signal.SIGBUS, signal.SIGTRAP, signal.SIGABRT)
    if sig and not crash and not exit_info.get("hung"):
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        # A fault signal is (b); anything else killed the worker from outside
        # (OOM killer, an operator): the run is incomplete, and says so.
        out.append({"invariant": "no-fault" if sig in faults else "worker-killed",
                    "detail": f"worker died of {name}" + ("" if sig in faults else
                                                           " sent from outside pyharness"),
                    "thread": None, "cpu": None, "role": None, "site": None, "seq": None,
                    "state": None, "ctx": None, "source": "parent"})
    if exit_info.get("hung"):
        out.append({"invariant": "deadline",
                    "detail": "the worker did not finish within its duration plus grace; stuck: "
                              + (", ".join(exit_info.get("stuck") or []) or "unknown"),
                    "thread": None, "cpu": None, "role": None, "site": None, "seq": None,
                    "state": None, "ctx": None, "source": "parent"})
    return out
