"""A protocol added as the README says (csrc/proto/ticket.c, its line in
protocols.def, pyharness/protocols/rfc_ticket.py): the CLI takes it, the
observer and the stress conditions hold it to every invariant without being
told of it, and the seeded bugs, which replace its steps, are caught in it."""
import json

import pytest

from pyharness import Config, Engine
from pyharness.engine import PROTOCOLS


def test_the_table_line_is_all_the_cli_and_the_engine_need():
    assert "rfc-ticket" in PROTOCOLS


@pytest.mark.parametrize("scenario", ["rfc-native", "upstream-emulated", "batch", "rfc-selftest"])
def test_it_runs_clean_under_every_check(run_cli, tmp_path, scenario):
    out = tmp_path / "r.json"
    r = run_cli("run", "--protocol", "rfc-ticket", "--scenario", scenario, "--duration", "2",
                "--json", str(out), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads(out.read_text())
    assert rep["verdict"] == "pass" and rep["config"]["protocol"] == "rfc-ticket"
    ev = rep["checks"]["evidence"]
    assert ev["flips_observed"] == ev["flips_checked"] > 0   # every flip read back was new
    assert sum(t["bp_hits"] for t in rep["threads"]) > 0


@pytest.mark.parametrize("mutant,invariants", [
    ("skip-ack-wait", {"acked-before-publish", "ack-once"}),
    ("first-byte-first", {"int3-guard", "state-bytes"}),
])
def test_a_seeded_bug_in_its_steps_is_caught(run_cli, tmp_path, mutant, invariants):
    out = tmp_path / "r.json"
    r = run_cli("run", "--protocol", "rfc-ticket", "--scenario", "rfc-native", "--mutant", mutant,
                "--duration", "5", "--stop-on-violation", "--json", str(out), timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    rep = json.loads(out.read_text())
    assert rep["verdict"] == "fail" and set(rep["violation_counts"]) & invariants


def test_its_acks_are_counted_like_any_protocols(two_cpus):
    with Engine(Config(cpus=two_cpus, sites=64, protocol="rfc-ticket")) as e:
        o = e.run(sites=64)
        assert o.status == "complete" and o.view.violations() == []
        prim = o.view.counters(0)
        sec = o.view.counters(1)
        assert sec["acks"] == prim["acks"] and sec["sync_calls"] >= sum(prim["acks"][:3])
