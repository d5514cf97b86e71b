"""Named presets for `pyharness run --scenario`; every field can be
overridden by its flag."""
from .engine import AIMS, KINDS, SINGLE_INSN_KINDS

ALL_KINDS = tuple(KINDS)

SCENARIOS = {
    "rfc-native": {
        "description": "stop_machine style, as the RFC: secondaries parked in the finish loop, "
                       "NMIs on every thread execute the sites being patched, native breakpoints "
                       "(secondaries ack re-entrantly, the primary finishes locally); "
                       "multi-instruction blocks included",
        "config": {"bp": "native", "secondary_sync": "ack", "kinds": ALL_KINDS, "batch": 1},
        "nmi_rate": 1000.0,
        "executors": 0,
        "aim": ("primary", "secondary"),
    },
    "upstream-emulated": {
        "description": "text_poke_bp style: executor threads call single-instruction sites at "
                       "full speed while the primary patches; breakpoints are emulated; "
                       "secondaries are serialized by membarrier(SYNC_CORE) (or --secondary-sync ack)",
        "config": {"bp": "emulate", "secondary_sync": "membarrier", "kinds": SINGLE_INSN_KINDS,
                   "batch": 1},
        "nmi_rate": 0.0,
        "executors": "all",
        "aim": ("executor", "descriptor"),
    },
    "batch": {
        "description": "text_poke_bp_batch: many sites per poke_sync round; the breakpoint "
                       "handler finds the site in the batch by binary search",
        "config": {"bp": "native", "secondary_sync": "ack", "kinds": ALL_KINDS, "batch": 64},
        "nmi_rate": 1000.0,
        "executors": 0,
        "aim": ("primary", "secondary"),
    },
    "rfc-selftest": {
        "description": "the conditions of the RFC's own selftest (patch 21), all together: NMI "
                       "mode (patch 19), a NMI to the neighbouring thread at every state change, "
                       "secondaries running the site under patch from their sync loop, the primary "
                       "running it after SYNC_0, NMIs that take a lock shared by all and hold it "
                       "1 us, lock/unlock pairs switched together, repeated sessions",
        "config": {"bp": "native", "secondary_sync": "ack", "kinds": ALL_KINDS, "batch": 2,
                   "nmi_mode": True, "nmi_level": 3,
                   "stress": ("neighbour-nmi", "sync-loop-exec", "primary-exec", "paired")},
        "nmi_rate": 1000.0,
        "executors": 0,
        "aim": ("primary", "secondary"),
        "sessions_per_s": 8,
    },
    "mixed": {
        "description": "rfc-native, upstream-emulated and batch interleaved across the run "
                       "(segments of the duration, in turn)",
        "segments": ["rfc-native", "upstream-emulated", "batch"],
    },
}
DEFAULT = "rfc-native"

# --aim: where aimed NMIs and executions go (AIMS: csrc/stress/stress.def)


def parse_names(text, table, option):
    """'a,b' | 'all' | 'none' -> a tuple of names from ``table`` (None: not given)."""
    from .errors import UsageError
    if text is None:
        return None
    text = text.strip()
    if text == "none":
        return ()
    if text == "all":
        return tuple(table)
    names = tuple(a.strip() for a in text.split(",") if a.strip())
    for a in names:
        if a not in table:
            raise UsageError(f"unknown {option} '{a}'; choose from {', '.join(table)}, all or none")
    return names


def parse_aim(text):
    return parse_names(text, AIMS, "--aim")


def aim_bits(names):
    return sum(AIMS[a] for a in set(names))


def parse_stress(text):
    from .engine import STRESS
    return parse_names(text, STRESS, "--stress")
