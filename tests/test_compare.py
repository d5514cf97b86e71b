"""compare's decision on synthetic bench results: same-distribution runs
pass, a 20% slowdown fails, noise below the threshold passes."""
import random

import pytest

from pyharness.compare import compare
from pyharness.stats import mann_whitney_u, summary


def bench(figs, hypervisor=False, warnings=()):
    out = {"schema": "pyharness.bench/1", "machine": {"hypervisor": hypervisor},
           "figures": {}, "warnings": list(warnings)}
    for name, samples in figs.items():
        f = {"samples": samples[:11], "raw_samples": samples, "summary": summary(samples[:11])}
        if not name.startswith("primitive/"):
            f["floor_ns"] = 500.0
        out["figures"][name] = f
    return out


def draw(seed, mean, n=400, rel=0.03):
    r = random.Random(seed)
    return [r.gauss(mean, mean * rel) for _ in range(n)]


def test_mann_whitney_detects_a_shift_and_not_noise():
    a, b = draw(1, 100), draw(2, 100)
    assert mann_whitney_u(a, b)[1] > 0.01
    assert mann_whitney_u(a, [x * 1.2 for x in b])[1] < 1e-10


def test_two_runs_of_the_same_build_pass():
    old = bench({"rfc/x": draw(1, 700), "primitive/y": draw(3, 40)})
    new = bench({"rfc/x": draw(2, 700), "primitive/y": draw(4, 40)})
    rows, summ, code = compare(old, new)
    assert code == 0 and summ["regressed"] == 0


def test_a_twenty_percent_slowdown_fails():
    old = bench({"rfc/x": draw(1, 700)})
    new = bench({"rfc/x": draw(2, 840)})
    rows, summ, code = compare(old, new, fail_above=0.10)
    assert code == 1 and rows[0]["verdict"] == "REGRESSED"
    assert rows[0]["ratio"] == pytest.approx(1.2, rel=0.03)


def test_a_slowdown_below_the_threshold_passes():
    rows, summ, code = compare(bench({"rfc/x": draw(1, 700)}), bench({"rfc/x": draw(2, 735)}))
    assert code == 0 and rows[0]["verdict"] == "changed<thr"


def test_primitives_do_not_gate_under_a_hypervisor_but_do_on_bare_metal():
    old = {"primitive/cpuid": draw(1, 4000)}
    new = {"primitive/cpuid": draw(2, 5000)}
    assert compare(bench(old, hypervisor=True), bench(new, hypervisor=True))[2] == 0
    assert compare(bench(old), bench(new))[2] == 1


def test_an_unstable_run_is_reported_not_gated():
    warn = ["machine state changed during the run: the reference figure moved +40%"]
    old = bench({"rfc/x": draw(1, 700)})
    new = bench({"rfc/x": draw(2, 900)}, warnings=warn)
    rows, summ, code = compare(old, new)
    assert code == 0 and rows[0]["verdict"].startswith("slower")


def test_compare_cli_rejects_a_non_bench_file(run_cli, tmp_path):
    (tmp_path / "x.json").write_text('{"schema": "pyharness.run/1"}')
    p = run_cli("compare", "x.json", "x.json")
    assert p.returncode == 2 and "not a pyharness bench result" in p.stderr
