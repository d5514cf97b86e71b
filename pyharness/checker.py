"""The invariants, and the checks that turn counters, C records and the
worker's fate into named violations.

The C observer (csrc/observe/check.c) records violations at the spot, with the
trace events around them, from evidence the protocol code does not produce
about itself (bytes read back, the instruction's own token, the kernel's
view of the mappings, the schedule derived from the seed).  This module
adds what only totals can show (ack counts, flips observed against flips
scheduled, unresolved traps), derives the schedule once more in Python
(pyharness.schedule), and adds what only the parent can see (a crash, a
hang).
"""
import signal

from . import schedule
from .engine import CTX_NAMES, ROLE_NAMES, STATE_NAMES, lib, table_descriptions

from ._ffi import ffi

# (name, description) of every invariant, by its number: from the one table
# (csrc/observe/invariants.def) that also makes the C enum.
INVARIANTS = list(table_descriptions(lib.PH_TABLE_INVARIANT).items())
NAMES = [n for n, _ in INVARIANTS]
MAX_BP_DEPTH = 1


def _st(r):
    return f"seq {r >> 3} {STATE_NAMES.get(r & 7, r & 7)}"


_PATTERNS = {1: "the old variant", 2: "INT3 + the old tail", 3: "INT3 + the new tail",
             4: "the new variant", 5: "INT3 + a mixed tail", 6: "bytes of neither variant"}


def _detail(name, v):
    a, b = v["a"], v["b"]
    if name == "known-variant":
        return f"site {v['site']} returned {a:#010x}, which is neither of its variants (variant 0 is {b:#010x})"
    if name == "no-fault":
        return f"{signal.Signals(a).name if a in signal.Signals._value2member_map_ else a} at rip {b:#x}"
    if name == "new-variant-after-done":
        return f"after DONE site {v['site']} returned {a:#010x}; the schedule implies {b:#010x}"
    if name == "acked-before-publish":
        return (f"published seq {v['seq']} {v['state']} while thread {v['thread']} had acked only "
                f"{_st(b)} of the previous {_st(a)}")
    if name == "int3-resolved":
        if b >> 32 == 3:
            holder = b & 0xFFFFFFFF
            where = "a fill byte outside any site" if holder == 0xFFFFFFFF else f"inside site {holder}, not its start"
            return (f"INT3 at {a:#x} is {where}: nothing can resolve it (a bad jump, rewind or torn "
                    f"site reached it); the worker ended with the evidence")
        if b >> 32 == 4 and b & 0xFF == 5:
            return (f"the native breakpoint on site {v['site']} resumed at {a:#x}, not at the site "
                    f"it must re-execute")
        if b >> 32 == 4:
            what = {1: f"left RIP at {a:#x}", 2: f"left EAX = {a:#010x}",
                    3: f"pushed return address {a:#x}"}.get(b & 0xFF, f"a={a:#x}")
            return (f"the emulated breakpoint on site {v['site']} {what}: not what the scheduled "
                    f"instruction does")
        if b == 1:
            return f"breakpoint on site {v['site']} cannot be emulated (opcode {a:#04x}): not one instruction"
        return (f"breakpoint descriptor (generation {a}) was retired, or rewritten, while this handler "
                f"still held a reference")
    if name == "bytes-intended":
        return (f"site {v['site']} byte {a} is {b >> 8:#04x} after its round, read through the view "
                f"that runs; the schedule intends {b & 0xff:#04x}")
    if name == "bp-depth":
        return f"breakpoint taken at depth {a} (bound {MAX_BP_DEPTH}) at {b:#x}: a site on the handler's own path"
    if name == "deadline":
        kind = b >> 40
        if kind == 1:
            where = "its sync loop" if b >> 32 & 1 else "its finish loop"
            return (f"thread {v['thread']} waited {a / 1e9:g} s in {where} for the state to leave "
                    f"{STATE_NAMES.get(b & 0xff, b & 0xff)} (it was {v['state']} of seq {v['seq']})")
        if kind == 2:
            return (f"the primary waited {a / 1e9:g} s for acks of {v['state']} (seq {v['seq']}): "
                    f"{(b >> 16) & 0xffff} bits set in the map against num_acks {b & 0xffff}")
        if kind == 3:
            return f"thread {v['thread']} did not enter the session within {a / 1e9:g} s"
        if kind == 5:
            return f"thread {v['thread']} did not leave the session within {a / 1e9:g} s"
        if kind == 4:
            return (f"thread {v['thread']} could not send itself the NMI that runs its session for "
                    f"100 ms (the kernel refused to queue the signal)")
        return (f"a wait exceeded its {a / 1e9:g} s deadline in seq {v['seq']} {v['state']}"
                + (f"; thread {v['thread']} had acked up to {_st(b)}" if b else ""))
    if name == "int3-guard":
        code, low = b >> 32, b & 0xFFFFFFFF
        return {
            1: f"a write of {low} bytes at {a:#x} lies outside any site's patchable bytes",
            2: f"a write changed site {v['site']}, which the current round (seq {a}) does not patch",
            3: f"a write of bytes {a:#x} at offset {low} of site {v['site']} is neither INT3 nor the "
               f"scheduled variant's bytes",
            4: f"byte 0 of site {v['site']} was written together with the tail, not behind INT3 "
               f"(byte 0 was {a:#04x})",
            5: f"byte 0 of site {v['site']} was written before its tail was complete (byte 0 was {a:#04x})",
            6: f"the tail of site {v['site']} was written while byte 0 was {a:#04x}, not INT3",
        }.get(code, f"a={a:#x} b={b:#x}")
    if name == "serialized":
        return (f"thread {v['thread']} acked {_st(a)} without a serializing instruction that ran after "
                f"it saw the state (the last one proven ran after {_st(b)})" if b or a else
                "an ack without any serializing instruction proven to have run")
    if name == "state-bytes":
        who = "a secondary read through the view that runs" if a & 0x100 else "the primary published it"
        return (f"{v['state']} of seq {v['seq']} ({who}) while site {v['site']} held "
                f"{_PATTERNS.get(a & 0xff, a & 0xff)} (bytes {b.to_bytes(8, 'little').hex(' ')})")
    if name == "schedule":
        if b >> 63:
            want, traps = b & 0xFFFFFFFF, (b >> 32) & 0x7FFFFFFF
            how = f"after {traps} trap(s) resolved it" if traps else "while no round was patching it"
            return (f"site {v['site']} returned {a:#010x} {how}; the schedule implies {want:#010x} "
                    f"(a stale or wrong variant ran)")
        return f"round seq {a} was published, but the schedule issued rounds up to seq {b} only"
    if name == "text-protection":
        perms = (b & 0xFFFFFFFF).to_bytes(4, "little").decode("ascii", "replace").strip("\x00") or "unmapped"
        view = "the alias's written view" if b >> 40 & 1 else "the text"
        return (f"{view} at {a:#x} is '{perms}' in /proc/self/maps outside any patch window "
                f"(promised {'rw-' if b >> 40 & 1 else 'r-x'})")
    if name == "trap-bound":
        return (f"one execution took {a} breakpoint traps at {b:#x} (bound {lib.PH_TRAP_BOUND}): the "
                f"breakpoint path re-executes without moving the patch along")
    if name == "nmi-held-off":
        return (f"a NMI was delivered at breakpoint depth {a}, NMI depth {b}: NMIs must be held off "
                f"there")
    if name == "membarrier":
        return (f"{_st(a)} was followed by the next state without a membarrier(SYNC_CORE) that "
                f"returned 0 after it (the last one followed {_st(b)})")
    if name == "sync-in-build":
        if b >> 63:
            return (f"the serializing instruction returned {a:#x}, not the {b & 0xFFFFFFFF:#x} only "
                    f"the instruction produces: it did not run")
        return (f"a sync_one() costs {a} ns against {b} ns for a plain call: the instruction is not "
                f"in this build")
    if name == "pair-matched":
        return (f"a NMI ran variant {a} of lock site {v['site']} and variant {b} of its unlock "
                f"site {v['site'] + 1}: the pair was not switched together for it")
    if name == "rfc-bug":
        return (f"text_poke_sync_finish() saw {STATE_NAMES.get(a, a)} in {CTX_NAMES.get(b, b)} "
                f"context: BUG() (it expects SYNC_DONE, SYNC_0 or DONE; in NMI context any SYNC "
                f"state)")
    if name == "ack-once":
        return (f"thread {v['thread']} acked {_st(a)} inside the sync loop: SYNC_DONE must be acked in "
                f"the finish loop only, after every breakpoint context was left")
    if name == "state-order":
        return f"{_st(b)} was published right after {_st(a)}: out of the protocol's order"
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

    posted = getattr(config, "protocol", "rfc") == "rfc-as-posted"
    for i, c in enumerate(counters):
        if i == config.primary:
            continue
        if acking:
            for st in range(4):
                want, got = published[st], c["acks"][st]
                # The posted finish loop also sets its bit on each session's
                # starting SYNC_DONE, when it sees it.
                if posted and st == 3 and want <= got <= want + config.sessions:
                    continue
                if got > want or (complete and got != want) or got < want - 1:
                    add("ack-once", i, f"acked {STATE_NAMES[st]} {got} times in {want} published rounds")
            if c["acks_done_in_sync_loop"]:
                add("ack-once", i, f"SYNC_DONE acked {c['acks_done_in_sync_loop']} times inside the "
                                   f"sync loop (must be acked in the finish loop only)")
    for i, c in enumerate(counters):
        if c["sync_bad"]:
            add("serialized", i, f"{c['sync_bad']} of {c['sync_calls']} sync_one() calls left no token "
                                 f"from the serializing instruction: it did not run")
        resolved = c["bp_native"] + c["bp_emulated"] + c["bp_late"]
        if complete and c["bp_hits"] != resolved:
            add("int3-resolved", i, f"{c['bp_hits']} breakpoint hits, {resolved} resolved")
        bound = MAX_BP_DEPTH + (1 if getattr(config, "nmi_mode", False) else 0)
        if c["bp_depth_max"] > bound:
            add("bp-depth", i, f"breakpoint depth reached {c['bp_depth_max']} (bound {bound})")
        if complete and verify and c["verified"] != config.sites:
            add("new-variant-after-done", i, f"verified {c['verified']} of {config.sites} sites after DONE")
    return out


def schedule_violations(view, spec, complete, stopped=False):
    """(m) from totals: every flip the schedule issued was observed; a
    ``--sites`` run took exactly the rounds its size implies; and the
    schedule derived again in Python agrees with the one the run followed."""
    out = []
    cfg = spec.config
    sh = view.sh

    def add(detail):
        out.append({"invariant": "schedule", "detail": detail, "thread": None, "cpu": None,
                    "role": None, "site": None, "seq": None, "state": None, "ctx": None,
                    "source": "schedule"})
    if not complete:
        return out
    rounds, sched, seen = sh.oracle_rounds, sh.flips_scheduled, sh.flips_observed
    checked = sh.flips_checked
    asked = spec.sites if spec.duration is None else None
    paired = "paired" in cfg.stress
    want_rounds = (schedule.expected_rounds(asked, cfg.batch, cfg.sessions, paired)
                   if asked is not None else None)
    # (a --sites run the parent stopped -- its time limit, the first
    # evidence -- ends early by design: its round count proves nothing)
    if asked is not None and rounds != want_rounds and not stopped:
        add(f"{asked} sites in rounds of {cfg.batch} over {cfg.sessions} session(s) take "
            f"{want_rounds} rounds; the run took {rounds}")
    if (asked is None or asked > 0) and (spec.duration is None or spec.duration > 0) and seen == 0:
        add("the run patched nothing: no scheduled flip was ever read back")
    elif seen != checked or checked < min(rounds, sched) or checked > sched:
        # Every round's SYNC_DONE reads back its sites (up to DONE_SITES of a
        # large round, rotating): at least one per round, never more than
        # were scheduled, and each one the new variant.
        add(f"{sched} site flips scheduled in {rounds} rounds, {checked} read back at "
            f"SYNC_DONE, {seen} of them the new variant")
    done_seq = sh.round >> 3
    if (sh.round & 7) == 4 and done_seq != rounds:
        add(f"DONE was published after seq {done_seq}; the schedule issued {rounds} rounds")
    derived = schedule.final_variants(cfg.seed, cfg.sites, cfg.batch, rounds, asked,
                                      paired="paired" in cfg.stress, sessions=cfg.sessions)
    if derived is not None:
        followed = view.final_variants()
        bad = [s for s in range(cfg.sites) if derived[s] != followed[s]]
        if bad:
            add(f"the schedule derived in Python and the one the run followed disagree on "
                f"{len(bad)} sites (first: site {bad[0]})")
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
                    "detail": "the worker did not finish within its duration plus grace (no progress "
                              "for a second, or past the overload bound); stuck: "
                              + (", ".join(exit_info.get("stuck") or []) or "unknown"),
                    "thread": None, "cpu": None, "role": None, "site": None, "seq": None,
                    "state": None, "ctx": None, "source": "parent"})
    return out
