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

# (name, description) of every invariant, by its number: from the one table
# (csrc/observe/invariants.def) that also makes the C enum.
INVARIANTS = list(table_descriptions(lib.PH_TABLE_INVARIANT).items())
NAMES = [n for n, _ in INVARIANTS]
MAX_BP_DEPTH = 1


def _st(r):
    return f"seq {r >> 3} {STATE_NAMES.get(r & 7, r & 7)}"


_PATTERNS = {1: "the old variant", 2: "INT3 + the old tail", 3: "INT3 + the new tail",
             4: "the new variant", 5: "INT3 + a mixed tail", 6: "bytes of neither variant"}


# Every reason a violation can give, by its number: (name, sentence), from
# the PH_REASON lines of csrc/observe/invariants.def.  A sentence is a format
# string over the violation's values and the fields _fields() derives.
REASONS = list(table_descriptions(lib.PH_TABLE_REASON).items())


def _perms(p4):
    return (p4 & 0xFFFFFFFF).to_bytes(4, "little").decode("ascii", "replace").strip("\x00") or "unmapped"


def _fields(v):
    """A recorded violation's values as its reason's sentence reads them."""
    a, b = v["a"], v["b"]
    return {**v, "a_st": _st(a), "b_st": _st(b), "a_state": STATE_NAMES.get(a, a),
            "b_state": STATE_NAMES.get(b, b), "a_s": a / 1e9,
            "a_pattern": _PATTERNS.get(a & 0xff, a & 0xff),
            "a_signal": signal.Signals(a).name if a in signal.Signals._value2member_map_ else a,
            "b_bytes": (b & (2 ** 64 - 1)).to_bytes(8, "little").hex(" "), "b_perms": _perms(b),
            "b_ctx": CTX_NAMES.get(b, b), "next_site": (v["site"] or 0) + 1}


def _detail(reason, v):
    """The sentence of a violation's reason, filled in (a reason the table
    does not know prints its values)."""
    if 0 < reason < len(REASONS):
        try:
            return REASONS[reason][1].format(**_fields(v))
        except (KeyError, ValueError, IndexError):
            pass
    return f"a={v['a']:#x} b={v['b']:#x} c={v['c']:#x}"


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
        v = {"a": raw.a, "b": raw.b, "c": raw.c, "site": raw.site, "seq": raw.round >> 3,
             "state": STATE_NAMES.get(raw.round & 7), "thread": raw.thread}
        name = NAMES[inv] if 0 <= inv < len(NAMES) else f"invariant-{inv}"
        reason = REASONS[raw.reason][0] if 0 < raw.reason < len(REASONS) else None
        item = {"invariant": name, "reason": reason, "detail": _detail(raw.reason, v),
                **_who(raw.thread, cpus, roles),
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

    def add(name, thread, detail, reason=None):
        out.append({"invariant": name, "reason": reason, "detail": detail, **_who(thread, cpus, roles),
                    "site": None, "seq": None, "state": None, "ctx": None, "source": "counters"})

    from .protocols import get as protocol
    extra_done = protocol(getattr(config, "protocol", "rfc")).extra_done_acks_per_session
    for i, c in enumerate(counters):
        if i == config.primary:
            continue
        if acking:
            for st in range(4):
                want, got = published[st], c["acks"][st]
                # A protocol may ack more SYNC_DONEs than were published per
                # session (the posted finish loop sets its bit on each
                # session's starting SYNC_DONE, when it sees it).
                if extra_done and st == 3 and want <= got <= want + extra_done * config.sessions:
                    continue
                if got > want or (complete and got != want) or got < want - 1:
                    add("ack-once", i, f"acked {STATE_NAMES[st]} {got} times in {want} published rounds")
            if c["acks_done_in_sync_loop"]:
                add("ack-once", i, f"SYNC_DONE acked {c['acks_done_in_sync_loop']} times inside the "
                                   f"sync loop (must be acked in the finish loop only)",
                    reason="done-in-sync-loop")
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


# Stress accounting.  Each condition is counted three ways: configured
# (what the options and the run's length ask for), could (what this box
# could have delivered: configured less what it took, each cause counted
# where it happened), delivered (what arrived, counted by the observer where
# the kernel delivered it).  The harness is held to what the box could
# deliver: below HARNESS_SHARE of it fails (stress-coverage), so a halved
# condition fails.  The box is held to nothing, but a box that took more
# than half of a condition (could below BOX_SHARE of configured) is
# reported as "stress reduced by the box": the verdict stays pass, exit 0
# (no defect was found, and none is claimed), the summary's first line and
# the JSON's stress_reduced say which conditions, why and what to change.
HARNESS_SHARE = 0.75
BOX_SHARE = 0.5

_CAUSES = {
    "overrun": "timer expirations merged into one pending signal (the thread off CPU, or in a "
               "handler that holds NMIs off)",
    "taken": "timer NMIs took the aimed windows first (their breakpoint path acked the state "
             "before the thread's own loop reached it)",
    "taken-by-neighbour": "neighbour NMIs took the aimed windows first (their breakpoint path "
                          "acked the state before the thread's own loop reached it)",
    "taken-by-other": "the harness's other NMIs (probes, --force-nmi) or a breakpoint took the "
                      "aimed windows first, acking the state before the thread's own loop",
    "behind": "aimed NMIs arrived behind another NMI whose handler closed the window",
    "refused": "the kernel refused to queue NMIs (the signal queue was full)",
    "inflight": "neighbour NMIs not sent: the last one had not yet arrived (a NMI latches)",
}
_ADVICE = {
    "overrun": "a lower --nmi-rate or fewer --threads",
    "taken": "a lower --nmi-rate",
    "behind": "a lower --nmi-rate",
    "taken-by-other": "fewer competing conditions (--force-nmi, --stress)",
    "taken-by-neighbour": "fewer --threads, or no neighbour-nmi in --stress",
    "refused": "a lower --nmi-rate, or a higher RLIMIT_SIGPENDING (ulimit -i)",
    "inflight": "fewer --threads than CPUs",
}


_BY_STRESS = ("taken-by-neighbour", "taken-by-other")


def _aimed(rounds, k):
    """Rounds 1..rounds whose number is k modulo 4 (round k aims at k % 4)."""
    return rounds // 4 if k == 0 else (rounds - k) // 4 + 1 if rounds >= k else 0


def stress_coverage(view, config, nmi_rate, live=False):
    """What the configured stress did, held to what this box could deliver.

    Returns {name: item}; only the conditions the configuration asks for.
    An item: configured, could, delivered, box ({cause: count} the box
    took), harness ({cause: count} the harness's own misses), what, and
    its judgement: "ok", "harness-short" (delivered below HARNESS_SHARE of
    could: a defect of the harness, a FAIL) or "box-reduced" (could below
    BOX_SHARE of configured: the box, not the harness).  counted /
    expected / floor are delivered / configured / the harness floor.
    live: while the run goes on (what it implies so far, up to now)."""
    sh = view.sh
    if not sh.t_start:
        return {}
    end = lib.ph_now_ns() if live else sh.t_end
    cs = view.all_counters()
    elapsed = max(0.0, (end - sh.t_start) / 1e9)
    rounds = sh.oracle_rounds
    out = {}

    def item(name, delivered, configured, what, box=None, harness=None, could=None, floor=None):
        box = {k: int(v) for k, v in (box or {}).items() if v}
        could = max(0.0, configured - sum(box.values())) if could is None else could
        floor = int(could * HARNESS_SHARE) if floor is None else int(floor)
        if floor >= 1 and delivered < floor:
            judged = "harness-short"
        elif configured >= 10 and max(could, delivered) < configured * BOX_SHARE:
            judged = "box-reduced"
        else:
            judged = "ok"
        out[name] = {"counted": int(delivered), "expected": round(configured, 1), "floor": floor,
                     "delivered": int(delivered), "could": round(could, 1),
                     "configured": round(configured, 1), "box": box,
                     "harness": {k: int(v) for k, v in (harness or {}).items() if v},
                     "judged": judged, "what": what}

    if nmi_rate > 0 and not config.nmi_mode:   # NMI mode holds NMIs off for whole sessions
        for i, c in enumerate(cs):
            item(f"nmis/thread-{i}", c["nmi_timer"], nmi_rate * elapsed,
                 f"timer NMIs the kernel delivered to thread {i} (--nmi-rate {nmi_rate:g} for "
                 f"{elapsed:.1f} s)", box={"overrun": c["nmi_overrun"]})
    prim = cs[config.primary]
    aimed = bool(config.aim & lib.PH_AIM_PRIMARY)
    if not config.nmi_mode and (aimed or "primary-exec" in config.stress):
        # the RFC selftest's run after SYNC_0, less the rounds whose site the
        # primary's own breakpoint path had finished already (no INT3 left)
        want = (_aimed(rounds, 3) if aimed else 0) + (
            rounds - prim["pexec_done"] if "primary-exec" in config.stress else 0)
        item("primary-thread-breakpoints", prim["bp_thread"], want,
             "breakpoints the primary took in thread context (its aimed rounds run a site right "
             "after its INT3" + ("; the RFC selftest's primary after SYNC_0" if "primary-exec" in config.stress
                                 else "") + ")")
    if not config.nmi_mode and aimed:
        # Round k aims at step k % 4 + 1 (the fourth runs a site instead),
        # counted where the aimed NMI landed against where it was aimed.
        for k, step in enumerate(("int3", "tail", "first-byte")):
            item(f"primary-aim/{step}", prim["aim_landed"][k], _aimed(rounds, k),
                 f"aimed NMIs that reached the primary between its {step} writes and their "
                 "publication (aimed at a quarter of the rounds)",
                 box={"behind": prim["aim_behind"][k], "refused": prim["aim_refused"][k]},
                 harness={"missed": prim["aim_missed"][k],
                          "not-sent": max(0, _aimed(rounds, k) - prim["aim_sent"][k]
                                          - prim["aim_refused"][k])})
    roles = config.roles()
    secs = [i for i, r in enumerate(roles) if r == lib.PH_ROLE_SECONDARY]
    if (not config.nmi_mode and config.aim & lib.PH_AIM_SECONDARY and secs
            and config.secondary_sync == "ack"):
        # Round k aims each secondary at state k % 4 (SYNC_0..2; none for 3).
        for st in range(3):
            slot = 3 + st
            sent = sum(cs[i]["aim_sent"][slot] for i in secs)
            box = {c: sum(cs[i][f"aim_{c}"][st if c == "taken" else slot] for i in secs)
                   for c in ("taken", "behind", "refused")}
            nb = sum(cs[i]["aim_taken_nb"][st] for i in secs)
            timer = sum(cs[i]["aim_taken_timer"][st] for i in secs)
            box = {"taken": timer, "taken-by-neighbour": nb,
                   "taken-by-other": box["taken"] - nb - timer,
                   "behind": box["behind"], "refused": box["refused"]}
            want = _aimed(rounds, st) * len(secs)
            item(f"secondary-aim/SYNC_{st}", sum(cs[i]["aim_landed"][slot] for i in secs), want,
                 f"aimed NMIs that reached a secondary between its reading SYNC_{st} and its ack "
                 "(aimed at a quarter of the rounds, each secondary)", box=box,
                 harness={"missed": sum(cs[i]["aim_missed"][slot] for i in secs),
                          "not-sent": max(0, want - sent - timer - nb - box["taken-by-other"]
                                          - box["refused"])})
    if config.sessions > 1 and rounds:
        # Every secondary takes part in every session (stop_machine): all
        # but the one a stop may have cut short.
        ran = sh.session + 1
        for i in secs:
            item(f"sessions/thread-{i}", min(cs[i]["sessions_seen"], cs[i]["sessions_done"]), ran,
                 f"sessions thread {i} entered and left (read a state of, and its DONE) of the {ran} "
                 "the primary ran", floor=ran - 1)
    execs = [i for i, r in enumerate(roles) if r == lib.PH_ROLE_EXECUTOR]
    if execs and config.aim & lib.PH_AIM_EXECUTOR:
        # Half of an executor's runs go to a site under patch, by design,
        # and its aim adds more at each state change: of the runs it made
        # while a round was under way (the observer's count), at least half.
        item("executor-runs-under-patch", sum(cs[i]["exec_in_window"] for i in execs),
             sum(cs[i]["exec_in_round"] for i in execs) / 2,
             "executors' runs of a site while a round patched it (half their runs while a round "
             "was under way, and the aimed ones at each state change)")
    if "neighbour-nmi" in config.stress and secs:
        # One chance per state new to a sender; the chances a neighbour held
        # off by design (inside a breakpoint, or its NMI-mode session) are
        # not asked for; the ones the box held (one still in flight: a NMI
        # latches) or refused are the box's.
        published = sum(prim["acks"])
        chances = sum(cs[i]["nb_chances"] for i in secs)
        held = sum(cs[i]["nb_held"] for i in secs)
        box = {"inflight": sum(cs[i]["nb_inflight"] for i in secs),
               "refused": sum(cs[i]["nb_refused"] for i in secs)}
        item("neighbour-nmis", sum(cs[(i + 1) % len(cs)]["nmi_neighbour"] for i in secs),
             max(0, chances - held),
             "NMIs received from a neighbour's state change (queued by another thread, as the "
             "kernel delivered them; those the receiver held off by design not asked for)", box=box,
             harness={"stale-latch": sum(cs[i]["nb_stale"] for i in secs),
                      "states-not-seen": max(0, published * len(secs) - chances)})
    return out


def coverage_violations(coverage):
    """A stress condition the harness delivered less of than the box could:
    the run exercised less than it claimed, and the harness is at fault."""
    out = []
    for name, it in coverage.items():
        if it.get("judged", "harness-short" if it["floor"] >= 1 and it["counted"] < it["floor"]
                  else "ok") != "harness-short":
            continue
        box = it.get("box") or {}
        took = (f"; the box took {sum(box.values())}: " + ", ".join(f"{k} {v}" for k, v in box.items())
                if box else "")
        misses = ", ".join(f"{k} {v}" for k, v in (it.get("harness") or {}).items())
        out.append({"invariant": "stress-coverage", "reason": name.split("/")[0],
                    "detail": f"{it['what']}: {it['counted']}, below the floor {it['floor']} "
                              f"({HARNESS_SHARE:g} of the {it.get('could', it['expected']):g} this box "
                              f"could deliver of the {it['expected']:g} configured{took})"
                              + (f"; the harness's own misses: {misses}" if misses else ""),
                    "thread": None, "cpu": None, "role": None, "site": None, "seq": None,
                    "state": None, "ctx": None, "source": "counters"})
    return out


def box_reductions(coverage):
    """The conditions the box delivered less than half of: [{name, configured,
    could, delivered, causes: [(cause, count, sentence)], advice}], largest
    cause first."""
    out = []
    for name, it in coverage.items():
        if it.get("judged") != "box-reduced":
            continue
        causes = sorted((it.get("box") or {}).items(), key=lambda kv: -kv[1])
        top = causes[0][0] if causes else None
        out.append({"name": name, "configured": it["configured"], "could": it["could"],
                    "delivered": it["delivered"],
                    # what took it: the box (its timers, its CPUs, its queues), or
                    # another stress condition of this very run
                    "by": "stress" if top in _BY_STRESS else "box",
                    "causes": [{"cause": k, "count": v, "what": _CAUSES.get(k, k)} for k, v in causes],
                    "advice": "; ".join(dict.fromkeys(_ADVICE.get(k, "") for k, _ in causes if k in _ADVICE))})
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
