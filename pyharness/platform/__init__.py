"""What a platform team needs from a run on a real box: evidence of the
machine (evidence.py), its health during the run (health.py), a log that
survives the box (log.py), exports fleet tools read (exports.py), where
the threads ran (placement.py), and retests that localize a failure
(retest.py)."""
