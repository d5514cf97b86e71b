"""Runs from keyword arguments: RunOptions -> resolve() -> RunSpec ->
pyharness.runner.run_stress(); the mixed scenario's segments."""
from .mixed import merge_reports, run_mixed  
from .spec import RunOptions, resolve, resolve_cpus  

__all__ = ["RunOptions", "resolve", "resolve_cpus", "run_mixed", "merge_reports"]
