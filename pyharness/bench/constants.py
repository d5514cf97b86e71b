"""The bench's constants: its schema, what it measures and its targets."""
from ..documents import KINDS

SCHEMA = KINDS["bench"]
ROUNDS = 4                  # SYNC_0, SYNC_1, SYNC_2, SYNC_DONE: one state hand-off each
UPSTREAM_SYNCS = 3          # upstream: text_poke_sync() after INT3, tail, first byte
POKES = ("mprotect", "alias", "rwx")
SINGLE_INSN = ("movret", "call", "jmpnop")
RAW_PER_RUN = 200           # per-site samples kept per run (evenly thinned)
SPREAD_WARN = 0.10          # (p90 - p10) / median above this: do not trust to 10%
DRIFT_WARN = 1.5            # hand-off max/min across the run above this: the machine moved

# Targets of issue 4 (speed of our own code).
PYTHON_SHARE_BOUND = 0.05
FLOOR_RATIO_BOUND = 1.5
BATCH_GAIN_BOUND = 20.0
