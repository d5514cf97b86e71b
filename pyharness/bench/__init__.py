"""`pyharness bench`: what the protocol costs on this machine, how it
scales, and how close it is to the floor its primitives allow.

    result = run_bench(quick=True, out_json="b.json")
    print(format_tables(result))

By role: pinning.py (C loops on pinned threads), primitives.py (what a
floor is made of), figures.py (the figure matrix and each figure's floor
model), rounds.py (warm-up and repeat rounds, the result document),
targets.py (speed targets and warnings), tables.py (the printed tables).
"""
from .constants import SCHEMA
from .rounds import run_bench
from .tables import format_tables
from .targets import targets, warnings

__all__ = ["SCHEMA", "run_bench", "format_tables", "targets", "warnings"]
