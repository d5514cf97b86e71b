"""The RFC as posted (--protocol rfc-as-posted), its NMI mode and its
selftest's conditions: the posted code is run, not fixed; what it does is
diagnosed from evidence; our fixed protocol stays clean under the same
conditions."""
import json

import pytest

from pyharness import Config, Engine, schedule
from pyharness.diagnose import FINDINGS


def _run(run_cli, tmp_path, *args, timeout=120):
    out = tmp_path / "r.json"
    r = run_cli("run", *args, "--json", str(out), timeout=timeout)
    return r, (json.loads(out.read_text()) if out.exists() else None)


def test_the_posted_code_splits_its_test_and_set_and_the_report_says_where(run_cli, tmp_path):
    """The selftest's own sync-loop execution sits between the posted sync
    loop's test_bit and set_bit: the breakpoint path acks the remaining
    states and the resumed set lands in SYNC_DONE's map -- every round.
    The finding names the RFC step, and the hang that follows is diagnosed
    thread by thread."""
    r, rep = _run(run_cli, tmp_path, "--protocol", "rfc-as-posted", "--scenario", "rfc-selftest",
                  "--duration", "5", "--deadline", "1", "--grace", "3")
    assert r.returncode == 1, r.stdout + r.stderr
    assert rep["verdict"] == "fail"
    d = rep["diagnosis"]
    ids = {f["id"] for f in d["findings"]}
    assert "split-ack" in ids, d["findings"]
    assert ids <= set(FINDINGS)
    for f in d["findings"]:
        assert f["rfc_step"] and f["evidence"]
    assert d["num_acks"] == 2 and d["map"] is not None
    assert {w["role"] for w in d["threads"]} == {"primary", "secondary"}
    assert all("last_seen" in w and "bit_in_map" in w for w in d["threads"])
    assert "finding split-ack" in r.stdout and "from the RFC's step" in r.stdout
    assert "--protocol rfc-as-posted" in rep["replay"] and "--nmi-mode" in rep["replay"]


def test_our_protocol_stays_clean_under_the_same_conditions(run_cli, tmp_path):
    r, rep = _run(run_cli, tmp_path, "--scenario", "rfc-selftest", "--duration", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert rep["verdict"] == "pass" and rep["status"] == "complete"
    cfg = rep["config"]
    assert cfg["nmi_mode"] and cfg["sessions"] > 1 and cfg["nmi_level"] == 3
    assert set(cfg["stress"]) == {"neighbour-nmi", "sync-loop-exec", "primary-exec", "paired"}
    assert sum(t["bp_hits"] for t in rep["threads"]) > 0
    assert rep["checks"]["evidence"]["flips_observed"] == rep["checks"]["evidence"]["flips_scheduled"] > 0


def test_nmi_mode_runs_each_session_inside_the_threads_own_nmi(two_cpus):
    """The primary's execution right after SYNC_0 traps inside its NMI, and
    a run of several sessions patches exactly the sites the schedule says."""
    cfg = Config(cpus=two_cpus, sites=40, batch=2, nmi_mode=True, sessions=3,
                 stress=("primary-exec", "paired"), poke="alias", sync="iret")
    with Engine(cfg) as e:
        o = e.run(sites=30)
        assert o.status == "complete" and o.view.violations() == []
        prim = o.view.counters(0)
        assert prim["bp_hits_nmi"] > 0 and prim["bp_hits_nmi"] == prim["bp_hits"]
        assert o.view.sh.session == 2
        rounds = o.view.sh.oracle_rounds
        assert rounds == schedule.expected_rounds(30, 2, sessions=3, paired=True)
        want = schedule.final_variants(1, 40, 2, rounds, 30, paired=True, sessions=3)
        assert want == o.view.final_variants()


def test_paired_sites_one_per_round_are_switched_within_one_session(two_cpus):
    """--batch 1 patches a lock and its unlock in consecutive rounds: a
    session never ends between them, so the counts stay whole pairs."""
    cfg = Config(cpus=two_cpus, sites=20, batch=1, sessions=3, stress=("paired",),
                 poke="alias", sync="iret")
    with Engine(cfg) as e:
        o = e.run(sites=11)        # shares 3, 3, 5: each session ends on a whole pair
        assert o.status == "complete"
        assert o.view.sh.oracle_rounds == schedule.expected_rounds(11, 1, sessions=3, paired=True) == 14
        assert o.view.final_variants() == schedule.final_variants(1, 20, 1, 14, 11, paired=True,
                                                                  sessions=3)


@pytest.mark.parametrize("args,needle", [
    (["--mutant", "rfc-bitmap"], "--protocol rfc-as-posted"),
    (["--protocol", "rfc-as-posted", "--scenario", "upstream-emulated"], "stop_machine"),
    (["--protocol", "nope"], "argument --protocol: invalid choice"),
    (["--stress", "paired", "--nmi-mode", "--sites", "7"], "even"),
    (["--stress", "paired"], "--nmi-mode"),
    (["--nmi-level", "4"], "--nmi-level"),
])
def test_bad_rfc_options_are_one_line_and_exit_2(run_cli, args, needle):
    r = run_cli("run", "--duration", "1", *args)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
