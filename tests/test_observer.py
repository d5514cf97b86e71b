"""The observer (csrc/observe/check.c) and the source mutation suite (tests/mutants):
the schedule derived twice, the serializing instruction's own token, the
evidence counts of a clean run, and `pyharness mutate` catching real source
bugs -- and saying so when it does not."""
import json
import os
import shutil
import subprocess

import pytest

from pyharness import Config, Engine, schedule
from pyharness._ffi import lib
from pyharness.checker import NAMES
from pyharness.mutate import load_mutants
from pyharness.scenarios import SCENARIOS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MUTANTS = os.path.join(ROOT, "tests", "mutants")


def test_every_mutant_is_described_and_applies_to_the_current_tree():
    ms = load_mutants(MUTANTS)
    scored = [m for m in ms if not m.equivalent]
    assert len(scored) >= 20
    assert len({m.name for m in ms}) == len(ms)
    for m in ms:
        assert m.models, m.name
        assert m.scenarios and set(m.scenarios) <= set(SCENARIOS), m.name
        assert set(m.expect) <= set(NAMES), (m.name, m.expect)
        assert m.equivalent or m.expect, m.name
        rc = subprocess.run(["patch", "-p1", "--dry-run", "-s", "-f", "-i", m.path], cwd=ROOT,
                            capture_output=True, text=True)
        assert rc.returncode == 0, (m.name, rc.stdout, rc.stderr)


@pytest.mark.skipif(not shutil.which("patch"), reason="patch(1) is not installed")
def test_mutate_catches_a_fast_subset(run_cli, tmp_path):
    """CI's subset: four bugs of different kinds, each by its expected
    invariant, within the cap (the campaign runs the whole suite)."""
    out = tmp_path / "m.json"
    r = run_cli("mutate", "--source", ROOT, "--only", "05,07,18,25", "--seconds", "8",
                "--json", str(out), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == "pyharness.mutate/1"
    assert doc["score"] == {"caught": 4, "scored": 4}
    for row in doc["rows"]:
        assert row["verdict"] == "caught", row
        assert set(row["expect"]) & set(row["invariants"]), row
        assert row["after_s"]["max"] <= 8
    assert "score: 4/4" in r.stdout


def test_mutate_says_missed_when_nothing_catches_a_mutant(run_cli, tmp_path):
    """An equivalent mutant presented as a real one is not caught: the tool
    says MISSED and exits 1 rather than passing it."""
    src = [m for m in load_mutants(MUTANTS) if m.name == "wait-change-relaxed"][0]
    d = tmp_path / "mut"
    d.mkdir()
    text = "".join(l for l in open(src.path) if not l.startswith("# equivalent:"))
    (d / "01-relaxed.diff").write_text(text)
    r = run_cli("mutate", "--source", ROOT, "--mutants", str(d), "--seconds", "1.5", timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "MISSED" in r.stdout and "score: 0/1" in r.stdout


def test_mutate_on_a_tree_without_sources_is_one_line_and_exit_2(run_cli, tmp_path):
    r = run_cli("mutate", "--source", str(tmp_path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "source tree" in r.stderr


@pytest.mark.parametrize("nsites,batch,total", [(50, 7, 120), (64, 64, None), (64, 5, None),
                                                (40, 1, 95)])
def test_python_derives_the_schedule_the_run_followed(two_cpus, nsites, batch, total):
    """The oracle's final variants (C) and the schedule derived in Python
    agree, for --sites runs with a short last round and for full passes."""
    with Engine(Config(cpus=two_cpus, sites=nsites, batch=batch, poke="alias", sync="iret")) as e:
        o = e.run(sites=total) if total else e.run(sites=nsites * 3 + batch * 2)
        assert o.status == "complete" and o.view.violations() == []
        rounds = o.view.sh.oracle_rounds
        want = schedule.final_variants(1, nsites, batch, rounds, total or nsites * 3 + batch * 2)
        assert want == o.view.final_variants()
        assert [e.site_variant(s) for s in range(nsites)] == list(want)


def test_whole_passes_need_no_shuffle():
    """The fast path (whole passes of equal rounds) equals the slow one."""
    fast = schedule.final_variants(9, 60, 6, 10 * 7 + 3)
    slow = bytearray(60)
    cursor, p = 60, 0
    for _ in range(10 * 7 + 3):
        if cursor + 6 > 60:
            order, p, cursor = schedule.pass_order(9, 60, p), p + 1, 0
        for s in order[cursor:cursor + 6]:
            slow[s] ^= 1
        cursor += 6
    assert fast == bytes(slow)
    assert schedule.final_variants(9, 60, 7, 5000, max_shuffles=3) is None


def test_the_cpuid_token_is_the_vendor_the_kernel_reports():
    """The serialization evidence is the instruction's output: CPUID leaf 0
    returns the vendor string /proc/cpuinfo shows; IRET's token is the
    RFLAGS.ID it loaded from its frame."""
    vendor = next(l.split(":")[1].strip() for l in open("/proc/cpuinfo") if l.startswith("vendor_id"))
    assert lib.ph_sync_token(lib.PH_SYNC_CPUID).to_bytes(4, "little").decode() == vendor[:4]
    assert lib.ph_sync_token(lib.PH_SYNC_CPUID) == lib.ph_sync_token_expect(lib.PH_SYNC_CPUID)
    assert lib.ph_sync_token(lib.PH_SYNC_IRET) == 1


def test_a_clean_run_shows_what_each_check_rested_on(run_cli, tmp_path):
    out = tmp_path / "r.json"
    r = run_cli("run", "--duration", "1.5", "--poke", "mprotect", "--json", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads(out.read_text())
    ev = rep["checks"]["evidence"]
    assert ev["flips_observed"] == ev["flips_scheduled"] == rep["totals"]["sites_patched"] > 0
    assert ev["states_read_back"] > 0 and ev["serializations_proven"] > 0
    assert ev["protection_checks"] >= 2            # sampled rounds and the end
    assert ev["sync_cost_ns"] > ev["plain_call_ns"]
    assert ev["sync_token"] == ev["sync_token_expected"]
    assert ev["nmi_probes"] > 0 and ev["traps_delivered"] > 0
    assert rep["checks"]["not_observable"]
    assert set(rep["invariants"]) == set(NAMES)
    assert "checked:" in r.stdout


def _brute(seed, ns, batch, total, sessions, paired):
    """csrc/observe/check.c's oracle, round by round, as a model."""
    sizes = schedule.round_sizes(1 << 40, batch, total, sessions, paired)
    par, cursor, p, order = bytearray(ns), ns, 0, None
    for n in sizes:
        if cursor + n > ns:
            order, p, cursor = schedule.pass_order(seed, ns, p, paired), p + 1, 0
        for s in order[cursor:cursor + n]:
            par[s] ^= 1
        cursor += n
    return bytes(par), len(sizes)


@pytest.mark.parametrize("seed,ns,batch,total,sessions,paired", [
    (1, 1000, 8, 1000, 3, False), (1, 1000, 4, 1000, 3, False), (1, 6, 2, 2, 2, False),
    (3, 40, 2, 30, 3, True), (1, 20, 2, 6, 2, True), (1, 1004, 2, 1004, 4, True),
    (5, 64, 1, 301, 7, True)])
def test_the_fast_schedule_equals_the_round_by_round_model(seed, ns, batch, total, sessions, paired):
    """Sessions put a short round mid-run: whole passes are skipped only when
    every round in them is full; paired sessions take whole pairs (and end)."""
    want, rounds = _brute(seed, ns, batch, total, sessions, paired)
    assert schedule.final_variants(seed, ns, batch, rounds, total, paired=paired,
                                   sessions=sessions) == want
    assert schedule.expected_rounds(total, batch, sessions, paired) == rounds
