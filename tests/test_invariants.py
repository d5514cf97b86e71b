"""Each invariant fails on its mutant and passes on the correct protocol.

Mutant runs are contained (a worker process): several of them crash or
end their worker on purpose.  They stop at the first evidence; the cap is
the 10 s the selftest allows."""
import pytest

from pyharness import selftest
from pyharness.checker import NAMES, counter_violations
from pyharness.run import resolve
from pyharness.engine import Config
from pyharness.runner import run_stress

# mutant -> the invariant it must trip (others may fire too)
EXPECTED = {
    "no-int3": "int3-guard",
    "first-byte-first": "int3-guard",
    "skip-ack-wait": "acked-before-publish",
    "skip-sync-one": "serialized",
    "double-ack": "ack-once",
    "early-retract": ("int3-resolved", "trap-bound"),
    "patch-sync-loop": "bp-depth",
    "lost-tail": "bytes-intended",
}
PLAN = {m: (sc, extra) for m, sc, extra in selftest.PLAN
        if m != "none" and m not in selftest.PROTOCOL_ROWS}


def contained(mutant, scenario, seconds, stop=True, invariant=None, **extra):
    spec = resolve(scenario, selftest.options(None, mutant, seconds, **extra))
    spec.stop_on_violation = stop
    spec.stop_on_invariant = invariant
    return run_stress(spec, progress=False)


def _expected(mutant):
    want = EXPECTED[mutant]
    return want if isinstance(want, tuple) else (want,)


def test_every_mutant_has_an_expected_invariant():
    assert set(EXPECTED) == set(PLAN)
    assert {n for m in EXPECTED for n in _expected(m)} <= set(NAMES)


@pytest.mark.parametrize("mutant", sorted(EXPECTED))
def test_mutant_is_caught_by_its_invariant(mutant):
    scenario, extra = PLAN[mutant]
    want = _expected(mutant)
    rep = contained(mutant, scenario, selftest.MUTANT_CAP_S,
                    invariant=want[0] if len(want) == 1 else None, **extra)
    assert rep["verdict"] == "fail"
    hit = [n for n in want if n in rep["violation_counts"]]
    assert hit, rep["violation_counts"]
    assert rep["first_evidence_s"] is not None and rep["first_evidence_s"] <= selftest.MUTANT_CAP_S
    named = [v for v in rep["violations"] if v["invariant"] == hit[0]]
    assert named and named[0]["detail"]
    if mutant == "patch-sync-loop":
        # a diagnosed recursion that ended the worker, not a hang
        assert rep["status"] == "crashed" and rep["worker"]["returncode"] == 97
        assert rep["crash"] and rep["crash"]["site"] is not None


@pytest.mark.parametrize("scenario", ["rfc-native", "upstream-emulated", "batch", "rfc-selftest"])
def test_correct_protocol_is_clean(scenario):
    rep = contained("none", scenario, 1.5, stop=False)
    assert rep["status"] == "complete"
    assert rep["verdict"] == "pass", rep["violation_counts"]
    assert rep["violations"] == [] and rep["exit_code"] == 0
    assert rep["totals"]["sites_patched"] > 0


def test_rfc_native_hits_breakpoints_in_nmi_context_on_both_sides():
    rep = contained("none", "rfc-native", 2.0, stop=False, nmi_rate=2000.0)
    assert rep["verdict"] == "pass"
    bp = rep["totals"]["bp_hits"]
    assert bp["primary_nmi"] > 0 and bp["secondary_nmi"] > 0
    assert rep["distributions"]["bp_handler_ns"]["count"] > 0


def test_torn_execution_is_seen_as_an_unknown_variant():
    """(a) for real: movret immediates rewritten in place under an executor."""
    rep = contained("no-int3", "upstream-emulated", 3.0, stop=False, site_kinds="movret",
                    poke="rwx")
    assert "known-variant" in rep["violation_counts"], rep["violation_counts"]
    torn = next(v for v in rep["violations"] if v["invariant"] == "known-variant")
    assert torn["site"] is not None and "neither" in torn["detail"]


def test_torn_branch_faults_and_the_crash_is_recorded():
    """(b) for real: a torn call/jmp jumps into the weeds; the worker dies
    and the parent reports the signal, the site and the bytes there."""
    rep = contained("no-int3", "upstream-emulated", 5.0, stop=False, site_kinds="call,jmpnop",
                    poke="rwx")
    assert rep["status"] == "crashed"
    assert "no-fault" in rep["violation_counts"]
    assert rep["crash"]["signo"] in (4, 7, 11) and len(rep["crash"]["bytes"].split()) == 16


def test_counter_checks_fail_on_bad_counts_and_pass_on_good_ones():
    """(c)/(d)/(f)/(h) from totals, on counters built by hand."""
    cfg = Config(cpus=[0, 0], sites=10)
    good = [{"acks": [3, 3, 3, 3], "sync_bad": 0, "sync_calls": 9, "acks_done_in_sync_loop": 0, "bp_hits": 2,
             "bp_native": 2, "bp_emulated": 0, "bp_late": 0, "bp_depth_max": 1, "verified": 10}
            for _ in range(2)]
    assert counter_violations(good, cfg, complete=True) == []
    bad = [dict(c) for c in good]
    bad[1].update(acks=[4, 3, 3, 3], sync_bad=1, bp_hits=3, bp_depth_max=2, verified=9)
    names = {v["invariant"] for v in counter_violations(bad, cfg, complete=True)}
    assert names == {"ack-once", "serialized", "int3-resolved", "bp-depth", "new-variant-after-done"}


def test_every_reason_belongs_to_an_invariant_and_its_sentence_fills_in():
    """The reasons table (csrc/observe/invariants.def): each reason names
    one invariant, reason names are unique within it, and each sentence
    formats from a violation's fields -- a typo in a sentence fails here,
    not in a user's report."""
    from pyharness._ffi import lib
    from pyharness.checker import REASONS, _detail
    assert REASONS[0][0] == "none" and len(REASONS) == lib.PH_NREASONS > 40
    seen = set()
    for code, (name, sentence) in enumerate(REASONS[1:], 1):
        inv = lib.ph_reason_invariant(code)
        assert 0 <= inv < len(NAMES), name
        assert (inv, name) not in seen
        seen.add((inv, name))
        v = {"a": 3, "b": 2, "c": 1, "site": 7, "seq": 5, "state": "SYNC_1", "thread": 1}
        text = _detail(code, v)
        assert text and not text.startswith("a=") and "{" not in text, (name, text)
    assert lib.ph_reason_invariant(0) == -1 and lib.ph_reason_invariant(lib.PH_NREASONS) == -1
    # every invariant the core records has at least one reason
    core = {lib.ph_reason_invariant(i) for i in range(1, len(REASONS))}
    assert {NAMES[i] for i in range(len(NAMES))} - {NAMES[i] for i in core} == {
        "machine-health", "stress-coverage", "progress"}   # judged in Python, from the parent's evidence
