"""The bpf-jump target's observation can fail: its executors hold every
return value to what the slot held during that run.  BPF objects are
fd-scoped (nothing global is left), so this runs wherever BPF is allowed."""
import os
import time

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loading BPF programs needs root here")


def _target():
    from pyharness.kernel.bpf import BpfJump
    t = BpfJump()
    why = t.available()
    if why:
        pytest.skip(why)
    return t


def _drive(t, flips):
    items = t.setup(None, {"not_available": []})
    t.start([0])
    try:
        for k in range(flips):
            it = items[k % len(items)]
            it.flip(k % 4 < 2)
            time.sleep(0.002)
    finally:
        return t.stop()


def test_every_run_returns_what_the_slot_held():
    r = _drive(_target(), 40)
    assert r["runs"] > 100 and not r["errors"], r


def test_a_wrong_expectation_is_seen():
    """An executor told the slot only ever held program A (the states never
    move) sees B's and the empty slot's values as errors."""
    t = _target()
    t.transition = lambda new, do: do()       # the bookkeeping forgets the flips
    r = _drive(t, 40)
    assert r["errors"] and "where the slot held only [1]" in r["errors"][0], r
