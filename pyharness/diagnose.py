"""Findings diagnosed, not just counted.

When a run fails, this reads what the shared region holds after the worker
is gone and names, for every thread, what it was waiting for: the state it
last saw (with the site sequence the RFC's plain state values hide), its bit
in the RFC's ack map, the map, set bits against num_acks, where in its loop
it was, and the trace events that led there.  From that evidence it names
the findings and the step of the RFC's code each one comes from.

Findings (ids are stable; README "What pyharness finds in the RFC as posted"):

  lost-ack        poke_sync() publishes the state, then clears the map: a
                  secondary's set_bit() landing between the two is wiped,
                  and the primary waits for it forever;
  stale-bit       ... a secondary that sees the new state and tests its bit
                  before the clear finds its previous state's ack, skips
                  sync_one() and its ack; the primary waits forever;
  split-ack       text_poke_sync_site()'s test_bit ... set_bit split by a
                  breakpoint (a NMI, or the selftest's own execution): the
                  breakpoint path acks the remaining states, and the
                  resumed set_bit lands in a later state's map;
  late-set        ... a set_bit() meant for one state lands after the primary
                  published the next and cleared: it is counted as an ack of
                  a state this thread never serialized for;
  same-value      states are plain values: a sync loop still waiting for the
                  state to leave SYNC_0 cannot tell the next site's SYNC_0
                  from the one it saw, and waits while the primary waits on it;
  trap-storm      between a site's INT3 and its SYNC_0 a trapping secondary
                  sees the previous site's SYNC_DONE, returns and re-traps;
  local-finish    poke_int3_native() on the primary finishes a site locally
                  (tail, then byte 0) without any CPU's ack: a CPU that
                  entered a multi-instruction site before its INT3 and is
                  still between its instructions runs a mix of both
                  variants (found by a 30-minute soak in pyharness's own
                  protocol, which kept this step; it now runs such a site
                  out of line instead);
  finish-bug      text_poke_sync_finish() meets a state it never expects
                  (BUG());
  pair-mismatch   a NMI runs one variant's lock with the other's unlock.
"""
from .engine import ROLE_NAMES, STATE_NAMES, WHERE_NAMES

FINDINGS = {
    "lost-ack": "poke_sync(): smp_store_release(state) then cpumask_clear(sync_ack_map) -- an ack "
                "set between the two is wiped",
    "stale-bit": "poke_sync()'s publish-then-clear seen from text_poke_sync_site(): "
                 "cpumask_test_cpu() before the clear finds the previous state's ack",
    "split-ack": "text_poke_sync_site(): cpumask_test_cpu() ... sync_one(); cpumask_set_cpu() split "
                 "by a breakpoint whose handler re-enters text_poke_sync_site()",
    "late-set": "poke_sync()'s publish-then-clear seen from a late cpumask_set_cpu(): the bit "
                "counts for the next state, which this CPU never serialized for",
    "same-value": "text_poke_sync_site(): smp_cond_load_acquire(&tps->state, prevstate != VAL) "
                  "on plain state values shared by every site",
    "trap-storm": "poke_int3_native() -> text_poke_sync_site() returning at once on the previous "
                  "site's PATCH_SYNC_DONE, before this site's PATCH_SYNC_0 is published",
    "local-finish": "poke_int3_native(), primary branch: __text_do_poke() of the tail and byte 0 "
                    "without waiting for the other CPUs, under a CPU inside a multi-instruction site",
    "finish-bug": "text_poke_sync_finish(): BUG() on a state other than SYNC_DONE, SYNC_0, DONE",
    "pair-mismatch": "paired sites patched one round at a time (or a NMI spanning a round): the "
                     "lock and unlock of different variants",
}


def _kind(config, site):
    """The kind of a site, as csrc/kinds/text.c lays them out (enum order, round robin)."""
    order = [k for k in ("movret", "call", "jmpnop", "block") if k in config.kinds]
    return order[site % len(order)] if order else None


def _st(r):
    return {"seq": r >> 3, "state": STATE_NAMES.get(r & 7, r & 7)}


def _abort_map(view):
    sh = view.sh
    return {w * 64 + b for w in range(16) for b in range(64) if sh.abort_map[w] >> b & 1}


def thread_waits(view, config, frozen=False):
    """For every thread: role, where, the state it last saw, its ack, its bit
    (as frozen when the run aborted, if it did: then they all left)."""
    amap = _abort_map(view) if frozen else view.ack_map()
    out = []
    roles = config.roles()
    for i in range(view.nthreads):
        c = view.counters(i)
        where = c["where_abort"] if frozen else c["where"]
        seen = c["seen_abort"] if frozen else c["seen_round"]
        out.append({"thread": i, "cpu": config.cpus[i], "role": ROLE_NAMES.get(roles[i]),
                    "where": WHERE_NAMES.get(where, where),
                    "last_seen": _st(seen), "last_ack": _st(c["acked_round"]),
                    "bit_in_map": i in amap,
                    "trace": view.trace(i, 12)})
    return out


def diagnose(view, config, violations, status):
    """A dict: the published state, the map, each thread's wait, and the
    findings with their evidence and the RFC step they come from."""
    sh = view.sh
    frozen = bool(sh.abort_round >> 63)
    published = sh.abort_round & ((1 << 63) - 1) if frozen else sh.round
    amap = _abort_map(view) if frozen else view.ack_map()
    waits = thread_waits(view, config, frozen)
    from .protocols import get
    proto = get(config.protocol)
    posted = proto.ack_map        # the RFC's shared map: what the diagnosis shows
    d = {"frozen_at_abort": frozen, "published": _st(published),
         "num_acks": sh.num_acks if posted else None,
         "map": sorted(amap) if posted else None, "map_weight": len(amap) if posted else None,
         "threads": waits, "findings": []}
    names = {v["invariant"] for v in violations}

    def find(fid, evidence, threads=()):
        if not any(f["id"] == fid for f in d["findings"]):
            d["findings"].append({"id": fid, "rfc_step": FINDINGS[fid], "evidence": evidence,
                                  "threads": list(threads)})
    hung = status in ("hung", "aborted") or "deadline" in names
    prim = next((w for w in waits if w["role"] == "primary"), None)
    if hung and prim and prim["where"] == "wait-acks":
        proto.diagnose_hang(view, config, d, waits, amap, find)   # its own findings
    for v in violations:
        if v.get("reason") == "done-in-sync-loop" and posted:
            find("split-ack", v["detail"], [v.get("thread")])
        elif (v["invariant"] == "known-variant" and v.get("site") is not None
              and _kind(config, v["site"]) == "block"
              and any(ev["type"] == "bp-enter" and ev["site"] == v["site"] and ev["ctx"] != "thread"
                      for ev in v.get("trace", []))
              and v.get("role") != "primary"):
            find("local-finish", f"{v['detail']}: a multi-instruction site, run by thread "
                                 f"{v.get('thread')} while the primary's breakpoint finished it",
                 [v.get("thread")])
        elif v["invariant"] == "trap-bound":
            find("trap-storm", v["detail"], [v.get("thread")])
        elif v["invariant"] == "rfc-bug":
            find("finish-bug", v["detail"], [v.get("thread")])
        elif v["invariant"] == "pair-matched":
            find("pair-mismatch", v["detail"], [v.get("thread")])
        elif v["invariant"] == "serialized" and posted and v.get("source") == "core":
            find("late-set", v["detail"], [v.get("thread")])
    return d
