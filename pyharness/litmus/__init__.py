"""pyharness litmus: the cross-modifying-code shapes that JITs and patchers
ship, run on this CPU, with outcome histograms and litmus7-style verdicts
(spec.py: tests as TOML data; run.py: each in a worker of its own;
verdict.py: the verdicts and controls)."""
