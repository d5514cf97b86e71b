"""--protocol rfc-as-posted: the RFC's code as posted (csrc/proto/posted.c).

It runs in stop_machine (no executors, acks only), its acks are one shared
map, and its finish loop sets its bit on each session's starting SYNC_DONE
too.  Its own findings of a hang (the primary waiting for acks) come from
each thread's wait against the map; pyharness/diagnose.py names the ones
every protocol shares.  The selftest runs it under the RFC's own
selftest's conditions, where it must be caught.
"""
from . import Protocol


def diagnose(view, config, d, waits, amap, find):
    """The hang's findings: whose bit is missing, and why (lost-ack,
    stale-bit, same-value)."""
    sh = view.sh
    for w in waits:
        if w["role"] != "secondary" or w["bit_in_map"]:
            continue
        seen = w["last_seen"]
        same_round = seen == d["published"]
        if w["where"].startswith("finish-loop: waiting") and same_round:
            find("lost-ack", f"the primary waits for acks of {seen['state']} (seq {seen['seq']}) "
                             f"with {len(amap)} of {sh.num_acks} bits; thread {w['thread']} saw "
                             f"that state, set its bit, and waits for the state to change -- its "
                             f"bit is not in the map", [w["thread"]])
        elif w["where"].startswith("sync-loop: waiting") and same_round:
            find("stale-bit", f"the primary waits for acks of {seen['state']} (seq {seen['seq']}); "
                              f"thread {w['thread']} saw exactly that state, did not ack it, and "
                              f"waits for it to change: its bit test found an ack that the "
                              f"clear then removed", [w["thread"]])
        elif w["where"].startswith("sync-loop: waiting") and seen["state"] == d["published"]["state"] \
                and seen["seq"] < d["published"]["seq"]:
            find("same-value", f"thread {w['thread']} waits for the state to leave "
                               f"{seen['state']}, which it saw for seq {seen['seq']}; the primary "
                               f"published {seen['state']} again for seq "
                               f"{d['published']['seq']} and waits for its ack: the same value",
                 [w["thread"]])


PROTOCOL = Protocol("rfc-as-posted", secondary_syncs=("ack",), executors=False,
                    why="it runs in stop_machine: no executors, and membarrier is the upstream "
                        "style",
                    ack_map=True,
                    extra_done_acks_per_session=1, diagnose=diagnose,
                    must_fail=("rfc-selftest", {"deadline": 1.0}))
