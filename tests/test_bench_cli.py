"""`pyharness bench --quick`: every figure the issue asks for is in the
JSON, with its samples and its ratio to a floor; bad input is one line.

This checks what is reported, never how fast: timings are the bench's
business (and `pyharness compare`'s), not a unit test's."""
import json

import pytest

from pyharness.engine import SYNCS, available_syncs
from pyharness._ffi import lib


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory):
    import subprocess
    import sys
    d = tmp_path_factory.mktemp("bench")
    r = subprocess.run([sys.executable, "-m", "pyharness", "bench", "--quick", "--json", "b.json"],
                       cwd=d, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout, json.loads((d / "b.json").read_text())


def test_quick_bench_reports_every_figure_with_its_floor(quick_bench):
    text, b = quick_bench
    assert b["schema"] == "pyharness.bench/1" and b["quick"] is True
    figs = b["figures"]
    syncs = available_syncs()
    pokes = [p for p in ("mprotect", "alias", "rwx") if f"poke {p}" not in b["skipped"]]
    assert pokes, b["skipped"]

    # primitives
    want = [f"primitive/sync_{s}" for s in syncs] + [
        "primitive/mprotect_pair", "primitive/alias_write", "primitive/int3_round_trip",
        "primitive/cacheline_round_trip", "primitive/handoff_round_trip"]
    if lib.ph_membarrier_sync_core_supported():
        want.append("primitive/membarrier_sync_core")
    for name in want:
        assert name in figs, name
        assert len(figs[name]["samples"]) == b["repeats"], name
        assert figs[name]["summary"]["median"] > 0, name
    for s in SYNCS:   # a sync this CPU lacks is said to be skipped, not silently absent
        assert (s in syncs) != (f"sync {s}" in b["skipped"]), s

    # the protocol, per poke and sync, 1 .. every usable secondary; upstream; batches
    nsec = len(b["cpus"]) - 1
    protocol = [f"rfc/{p}/{s}/secondaries={k}" for p in pokes for s in syncs
                for k in sorted({1, max(1, nsec)})]
    if lib.ph_membarrier_sync_core_supported():
        protocol += [f"upstream/{p}/{s}/secondaries={k}" for p in pokes for s in syncs
                     for k in sorted({1, max(1, nsec)})]
    bpoke = "alias" if "alias" in pokes else pokes[0]
    protocol += [f"batch/{bpoke}/cpuid/batch={n}" for n in (1, 16, 256)]
    for name in protocol:
        f = figs[name]
        assert len(f["samples"]) == b["repeats"], name
        assert len(f["floor_samples"]) == len(f["samples"]) == len(f["ratio_to_floor_samples"])
        assert f["floor_ns"] > 0 and f["ratio_to_floor"] > 0, name
        assert f["raw_samples"], name                 # per-site times, not only aggregates
        assert f["floor_formula"], name
        short = name.split("/", 1)[1]
        assert any(line.startswith(short) for line in text.splitlines()), name

    # metadata and targets
    for key in ("cpu_model", "flags", "hypervisor", "kernel", "governor", "loadavg", "affinity"):
        assert key in b["machine"], key
    kinds = [t["target"] for t in b["targets"]]
    assert any("Python" in t for t in kinds)
    assert any("batch=256" in t for t in kinds)
    assert sum("floor" in t for t in kinds) == len(pokes) * len(syncs)
    for t in b["targets"]:
        assert isinstance(t["pass"], bool) and t["measured"] > 0, t
    assert "targets:" in text


def test_compare_of_a_bench_with_itself_passes(quick_bench, tmp_path, run_cli):
    _, b = quick_bench
    (tmp_path / "b.json").write_text(json.dumps(b))
    r = run_cli("compare", "b.json", "b.json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no significant regression" in r.stdout


@pytest.mark.parametrize("args, words", [
    (["--inject-delay-ns", "-5"], "inject-delay-ns"),
    (["--cpus", "4096"], "4096"),
    (["--cpus", "banana"], "banana"),
])
def test_bench_bad_input_is_one_line_and_exit_2(run_cli, args, words):
    r = run_cli("bench", "--quick", *args)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip() and not x.startswith("usage:")]
    assert len(lines) == 1 and words in lines[0], r.stderr


def test_check_targets_fails_a_bench_whose_rounds_were_slowed(run_cli):
    """20 us of busy wait in each poke_sync round puts every RFC site far
    above its floor (which leaves the injection out): --check-targets says
    so in one line and exits 1."""
    r = run_cli("bench", "--quick", "--inject-delay-ns", "20000", "--check-targets", timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "[FAIL] rfc/" in r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "speed target(s) missed" in lines[0], r.stderr


def test_ctrl_c_keeps_what_was_measured(tmp_path):
    """SIGINT once the bench's pinned threads exist: exit 130 within a
    bounded time, the tables and the JSON of what was measured, marked."""
    import os
    import signal
    import subprocess
    import sys
    import time
    p = subprocess.Popen([sys.executable, "-m", "pyharness", "bench", "--quick", "--json", "b.json"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(os.listdir(f"/proc/{p.pid}/task")) < 2:     # measuring: threads started
        assert p.poll() is None and time.monotonic() < deadline, "bench never started its threads"
        time.sleep(0.01)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines() == ["pyharness bench: interrupted; what was measured is above "
                                        "and in b.json"]
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["interrupted_in_round"] is not None
    assert b["warnings"][0].startswith("INTERRUPTED")
    assert "warning: INTERRUPTED" in out
    for name, f in b["figures"].items():                  # only figures with samples
        assert f["samples"], name


def test_a_benchmark_run_that_breaks_the_protocol_is_a_finding(two_cpus):
    """A bench run with violations raises BenchRunError (exit 1), naming
    the figure and a `pyharness run` command that reproduces it."""
    from pyharness import BenchRunError, Config
    from pyharness.bench.figures import _Figure
    fig = _Figure("rfc/alias/cpuid/secondaries=1", "rfc",
                  Config(cpus=two_cpus, sites=64, poke="alias", sync="cpuid",
                         mutant="lost-tail", trace_len=0), "")
    prim = {"sync_cpuid": 1.0, "poke_alias": 1.0}
    with pytest.raises(BenchRunError, match=r"rfc/alias/cpuid/secondaries=1: .*violation.*"
                                            r"pyharness run --cpus .* --poke alias --sync cpuid"):
        fig.run_once(prim, 0, 64, "", lambda text: None, 10)
    assert BenchRunError.exit_code == 1
