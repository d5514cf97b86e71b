"""compare's decision and its statistics, on synthetic bench results:
same-distribution runs pass, a 20% slowdown fails, noise below the
threshold passes, and the basis (raw or relative to the floor) follows the
machine.  Seeded data only: nothing here depends on timing."""
import random

import pytest

from pyharness.compare import compare, compare_figures, load
from pyharness.stats import mann_whitney_u, summary

RUNS = 10          # per-run samples per figure, as a --quick bench keeps


def draw(seed, mean, n=RUNS, rel=0.03):
    r = random.Random(seed)
    return [r.gauss(mean, mean * rel) for _ in range(n)]


def figure(samples, floors=None):
    """A protocol figure when floors are given (one per run), else a primitive."""
    f = {"samples": samples, "summary": summary(samples)}
    if floors is not None:
        f["kind"] = "rfc"
        f["floor_samples"] = floors
        f["ratio_to_floor_samples"] = [s / fl for s, fl in zip(samples, floors)]
    else:
        f["kind"] = "primitive"
    return f


def bench(figs, hypervisor=False):
    return {"schema": "pyharness.bench/1", "machine": {"hypervisor": hypervisor},
            "cpus": [0, 1], "figures": figs, "warnings": []}


# -- the U test ----------------------------------------------------------

def test_u_test_matches_the_textbook_value_without_ties():
    # U = 0 for complete separation of 3 and 3; normal approximation with
    # continuity correction: z = (4.5 - 0.5) / sqrt(5.25), p = 0.0809 (as
    # scipy.stats.mannwhitneyu(method="asymptotic") gives).
    u, p = mann_whitney_u([1, 2, 3], [4, 5, 6])
    assert u == 0 and p == pytest.approx(0.080856, abs=1e-5)


def test_u_test_corrects_for_ties():
    # Ranks 1.5,1.5,4,4,7 -> U = 3; tie term 78 over n = 11: p = 0.03042.
    u, p = mann_whitney_u([1, 1, 2, 2, 3], [2, 3, 3, 4, 4, 4])
    assert u == 3 and p == pytest.approx(0.030424, abs=1e-5)


def test_u_test_of_identical_constant_samples_is_not_significant():
    assert mann_whitney_u([5, 5, 5], [5, 5, 5])[1] == 1.0
    assert mann_whitney_u([], [1, 2])[1] == 1.0


def test_u_test_detects_a_shift_and_not_noise():
    a, b = draw(1, 100, n=400), draw(2, 100, n=400)
    assert mann_whitney_u(a, b)[1] > 0.01
    assert mann_whitney_u(a, [x * 1.2 for x in b])[1] < 1e-10


def test_summary_records_the_spread():
    s = summary([10, 11, 12, 13, 100])
    assert s["min"] == 10 and s["median"] == 12 and s["max"] == 100
    assert s["p90"] > s["median"] > s["p10"] and s["stdev"] > 0
    assert s["spread"] == pytest.approx((s["p90"] - s["p10"]) / 12)
    assert summary([]) == {"n": 0}


# -- the decision ----------------------------------------------------------

def test_two_runs_of_the_same_build_pass_on_bare_metal_and_under_a_hypervisor():
    for hv in (False, True):
        old = bench({"rfc/x": figure(draw(1, 700), draw(11, 500)),
                     "primitive/y": figure(draw(3, 40))}, hypervisor=hv)
        new = bench({"rfc/x": figure(draw(2, 700), draw(12, 500)),
                     "primitive/y": figure(draw(4, 40))}, hypervisor=hv)
        text, code = compare(old, new)
        assert code == 0 and "no significant regression" in text


def test_many_same_distribution_pairs_are_almost_never_flagged():
    """The robust criterion: p < 0.01 AND beyond 10%.  Over 300 seeded pairs
    of same-distribution runs with 5% noise, none may fail."""
    flagged = 0
    for seed in range(300):
        old = bench({"rfc/x": figure(draw(seed, 700, rel=0.05), draw(seed + 1000, 500, rel=0.05))})
        new = bench({"rfc/x": figure(draw(seed + 5000, 700, rel=0.05),
                                     draw(seed + 9000, 500, rel=0.05))})
        flagged += compare(old, new)[1]
    assert flagged == 0


def test_a_twenty_percent_slowdown_fails_on_either_basis():
    for hv in (False, True):
        old = bench({"rfc/x": figure(draw(1, 700), draw(11, 500))}, hypervisor=hv)
        new = bench({"rfc/x": figure(draw(2, 840), draw(12, 500))}, hypervisor=hv)
        rows, summ, code = compare_figures(old, new, fail_above=0.10)
        assert code == 1 and rows[0]["verdict"] == "REGRESSED"
        assert rows[0]["basis"] == ("normalized" if hv else "raw")
        assert rows[0]["ratio"] == pytest.approx(1.2, rel=0.04)
        assert rows[0]["slower_in"].startswith("the protocol")
        text, code = compare(old, new)
        assert code == 1 and "REGRESSED: rfc/x" in text


def test_a_slowdown_below_the_threshold_passes():
    old = bench({"rfc/x": figure(draw(1, 700, rel=0.01))})
    new = bench({"rfc/x": figure(draw(2, 735, rel=0.01))})
    rows, summ, code = compare_figures(old, new)
    assert code == 0 and rows[0]["verdict"] == "changed<thr"


def test_fail_above_sets_the_threshold():
    old, new = bench({"rfc/x": figure(draw(1, 700))}), bench({"rfc/x": figure(draw(2, 840))})
    assert compare(old, new, fail_above=0.30)[1] == 0
    assert compare(old, new, fail_above=0.05)[1] == 1


def test_a_slower_machine_is_not_a_protocol_regression_under_a_hypervisor():
    """Raw 20% slower with a floor 20% higher too: the host, not the code."""
    old = bench({"rfc/x": figure(draw(1, 700), draw(11, 500))}, hypervisor=True)
    new = bench({"rfc/x": figure(draw(2, 840), draw(12, 600))}, hypervisor=True)
    rows, summ, code = compare_figures(old, new)
    assert code == 0 and rows[0]["verdict"] == "same"
    assert rows[0]["raw_ratio"] == pytest.approx(1.2, rel=0.04)
    assert rows[0]["slower_in"].startswith("the primitives")
    # The same data on bare metal gates on raw time: a regression.
    old["machine"]["hypervisor"] = new["machine"]["hypervisor"] = False
    assert compare(old, new)[1] == 1


def test_a_floor_that_moved_far_gates_when_time_and_ratio_are_both_slower():
    """Issue 27: a moved floor vetoed the gate, and a raw time that tripled
    beside it (1.30x -> 15.2x of the floor) was left 'ok'.  The rule is the
    one for every figure: slower when both the time and the ratio are."""
    old = bench({"rfc/x": figure(draw(1, 2884), draw(11, 2228))}, hypervisor=True)
    new = bench({"rfc/x": figure(draw(2, 8964), draw(12, 585))}, hypervisor=True)
    rows, summ, code = compare_figures(old, new)
    assert code == 1 and rows[0]["verdict"] == "REGRESSED" and rows[0]["gates"]
    assert rows[0]["floor_moved"] == pytest.approx(585 / 2228, rel=0.05)
    text = compare(old, new)[0]
    assert "floor moved 0.26x" in text and "REGRESSED" in text


@pytest.mark.parametrize("raw,floor", [
    (2400, 1500),     # the host put the vCPUs 3x apart: time up 3.4x, ratio up 14%
    (1900, 1500),     # ... time up 2.7x, ratio down
    (560, 150),       # the vCPUs 3x closer: ratio up 2.7x, time down
])
def test_a_moved_floor_alone_is_no_regression(raw, floor):
    """Only both together: a machine that moved the floor moves the time or
    the ratio, one against the other, unless the code slowed too."""
    old = bench({"rfc/x": figure(draw(1, 700), draw(11, 500))}, hypervisor=True)
    new = bench({"rfc/x": figure(draw(2, raw), draw(12, floor))}, hypervisor=True)
    rows, summ, code = compare_figures(old, new)
    both = rows[0]["raw_ratio"] > 1.1 and rows[0]["normalized_ratio"] > 1.1
    assert rows[0]["floor_moved"] and rows[0]["gates"]
    assert (code == 1) == both and (rows[0]["verdict"] == "REGRESSED") == both


def test_primitives_do_not_gate_under_a_hypervisor_but_do_on_bare_metal():
    old = {"primitive/cpuid": figure(draw(1, 4000))}
    new = {"primitive/cpuid": figure(draw(2, 5000))}
    assert compare(bench(old, hypervisor=True), bench(new, hypervisor=True))[1] == 0
    assert compare(bench(old), bench(new))[1] == 1
    assert compare(bench(old, hypervisor=True), bench(new, hypervisor=True), basis="raw")[1] == 1


def test_figures_in_one_run_only_are_listed_not_compared():
    old = bench({"rfc/x": figure(draw(1, 700)), "rfc/gone": figure(draw(3, 700))})
    new = bench({"rfc/x": figure(draw(2, 700)), "rfc/new": figure(draw(4, 700))})
    rows, summ, code = compare_figures(old, new)
    assert [r["figure"] for r in rows] == ["rfc/x"]
    assert summ["only_old"] == ["rfc/gone"] and summ["only_new"] == ["rfc/new"]


def test_load_rejects_what_is_not_a_bench_result(tmp_path):
    from pyharness.errors import UsageError
    (tmp_path / "run.json").write_text('{"schema": "pyharness.run/1"}')
    (tmp_path / "junk.json").write_text("[1, 2")
    (tmp_path / "future.json").write_text('{"schema": "pyharness.bench/9"}')
    for name in ("run.json", "junk.json", "future.json", "missing.json"):
        with pytest.raises(UsageError):
            load(str(tmp_path / name))


def test_compare_cli_rejects_a_non_bench_file(run_cli, tmp_path):
    (tmp_path / "x.json").write_text('{"schema": "pyharness.run/1"}')
    p = run_cli("compare", "x.json", "x.json")
    assert p.returncode == 2 and "not a pyharness bench result" in p.stderr


def test_compare_cli_exit_codes(run_cli, tmp_path):
    import json
    old = bench({"rfc/x": figure(draw(1, 700))})
    new = bench({"rfc/x": figure(draw(2, 840))})
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    assert run_cli("compare", "old.json", "old.json").returncode == 0
    p = run_cli("compare", "old.json", "new.json")
    assert p.returncode == 1 and "REGRESSED" in p.stdout
    assert run_cli("compare", "old.json", "new.json", "--fail-above", "0.5").returncode == 0


def test_slower_relative_to_the_floor_only_is_not_a_regression():
    """The floor's hand-off was timed 20% faster while the protocol took as
    long: normalized 1.25x, raw 1.0x.  Not a code regression."""
    old = bench({"rfc/x": figure(draw(1, 700), draw(11, 500))}, hypervisor=True)
    new = bench({"rfc/x": figure(draw(2, 700), draw(12, 400))}, hypervisor=True)
    rows, summ, code = compare_figures(old, new)
    assert rows[0]["normalized_ratio"] == pytest.approx(1.25, rel=0.05)
    assert code == 0 and rows[0]["verdict"] == "changed<thr"
