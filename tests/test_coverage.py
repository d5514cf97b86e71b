"""Stress as evidence (issue 16): what the configured stress did, counted
where the kernel delivered it, against floors derived from the run; the
primary's breakpoint path held to its sync; membarrier as the kernel
reports it."""
import json

import pytest

from pyharness import Config, Engine, checker
from pyharness._ffi import lib


def _run(run_cli, tmp_path, *args):
    out = tmp_path / "r.json"
    r = run_cli("run", *args, "--json", str(out), timeout=120)
    return r, json.loads(out.read_text())


@pytest.mark.parametrize("scenario,items", [
    ("rfc-native", {"nmis/thread-0", "nmis/thread-1", "primary-thread-breakpoints",
                    "primary-aim/int3", "primary-aim/tail", "primary-aim/first-byte",
                    "secondary-aim/SYNC_0", "secondary-aim/SYNC_1", "secondary-aim/SYNC_2"}),
    ("rfc-selftest", {"neighbour-nmis", "sessions/thread-1"}),
    ("upstream-emulated", {"executor-runs-under-patch"}),
])
def test_a_default_run_reports_its_coverage_above_every_floor(run_cli, tmp_path, scenario, items):
    r, rep = _run(run_cli, tmp_path, "--scenario", scenario, "--duration", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    cov = rep["coverage"]
    assert items <= set(cov), cov
    for name, it in cov.items():
        assert it["counted"] >= it["floor"], (name, it)
        # a loaded box may take more than half of a condition (reduced, said
        # so); the harness is never short of what the box could deliver
        assert it["judged"] in ("ok", "box-reduced"), (name, it)
        # the harness is held to what the box could deliver: three quarters
        # of it, so a halved condition fails; sessions: every one but a last
        # the stop cut short
        want = it["expected"] - 1 if name.startswith("sessions/") else it["could"] * checker.HARNESS_SHARE
        assert it["floor"] == int(want), (name, it)
        assert it["could"] == pytest.approx(it["configured"] - sum(it["box"].values()), abs=0.2)
    assert {x["name"] for x in rep["stress_reduced"]} == {
        k for k, it in cov.items() if it["judged"] == "box-reduced"}
    assert "stress coverage (delivered/could deliver/configured):" in r.stdout
    # every protocol wait kept its longest stall: short, and whom it waited for
    waits = rep["progress"]["longest_waits"]
    assert waits and all(w["net_s"] < rep["progress"]["bound_s"] for w in waits), waits
    assert all(w["awaited"].startswith(("thread ", "the published state", "any other thread"))
               for w in waits), waits


def test_a_run_short_of_its_stress_fails_by_name(two_cpus):
    """The floors are the run's own: a run whose counters show a tenth of
    the NMIs its rate implies is named, per thread."""
    class V:   # a view with the counts a broken timer would leave
        def __init__(self, view):
            self.sh = view.sh
            self._cs = view.all_counters()

        def all_counters(self):
            return [dict(c, nmi_timer=c["nmi_timer"] // 20) for c in self._cs]
    cfg = Config(cpus=two_cpus, sites=64)
    with Engine(cfg) as e:
        o = e.run(duration=1.5, nmi_rate=500)
        good = checker.stress_coverage(o.view, cfg, 500)
        assert not checker.coverage_violations(good), good
        bad = checker.coverage_violations(checker.stress_coverage(V(o.view), cfg, 500))
    assert {v["reason"] for v in bad} == {"nmis"} and len(bad) == 2
    assert all(v["invariant"] == "stress-coverage" and "below the floor" in v["detail"] for v in bad)


def _counts(view, **scale):
    class V:   # a view whose counters are the run's, some of them changed
        def __init__(self):
            self.sh = view.sh
            self._cs = view.all_counters()

        def all_counters(self):
            return [dict(c, **{k: f(c) for k, f in scale.items()}) for c in self._cs]
    return V()


def test_a_halved_condition_fails_and_a_box_that_took_it_does_not(two_cpus):
    """The harness is held to what the box could deliver: half the aimed
    NMIs landing, with nothing to show the box took the rest, is the
    harness's fault (a FAIL, now at a factor of two, not ten); the same
    shortfall with the box's evidence for it (timer NMIs that took the
    windows first, timer expirations merged) is reported as stress reduced
    by the box, with its cause and what to change, and fails nothing."""
    cfg = Config(cpus=two_cpus, sites=64, bp="native", secondary_sync="ack",
                 aim=lib.PH_AIM_PRIMARY | lib.PH_AIM_SECONDARY)
    with Engine(cfg) as e:
        o = e.run(duration=2, nmi_rate=500)
        good = checker.stress_coverage(o.view, cfg, 500)
        assert not checker.coverage_violations(good), good      # (a loaded box may reduce it)
        half = _counts(o.view, aim_landed=lambda c: [n // 2 for n in c["aim_landed"]],
                       nmi_timer=lambda c: c["nmi_timer"] // 2)
        bad = checker.coverage_violations(checker.stress_coverage(half, cfg, 500))
        names = {v["reason"] for v in bad}
        assert names == {"nmis", "primary-aim", "secondary-aim"}, bad
        assert all("could deliver" in v["detail"] for v in bad)
        # the same deficits, each with the box's own evidence for it
        took = _counts(o.view,
                       aim_landed=lambda c: [n // 5 for n in c["aim_landed"]],
                       aim_taken=lambda c: [c["aim_taken"][st] + c["aim_landed"][3 + st]
                                            - c["aim_landed"][3 + st] // 5 for st in range(3)],
                       aim_taken_timer=lambda c: [c["aim_taken_timer"][st] + c["aim_landed"][3 + st]
                                                  - c["aim_landed"][3 + st] // 5 for st in range(3)],
                       nmi_timer=lambda c: c["nmi_timer"] // 5,
                       nmi_overrun=lambda c: c["nmi_overrun"] + c["nmi_timer"] - c["nmi_timer"] // 5)
        cov = checker.stress_coverage(took, cfg, 500)
    assert {k.split("/")[0] for k, it in cov.items() if it["judged"] == "harness-short"} == {"primary-aim"}
    reduced = {r["name"]: r for r in checker.box_reductions(cov)}
    assert {"secondary-aim/SYNC_0", "secondary-aim/SYNC_1", "secondary-aim/SYNC_2",
            "nmis/thread-0", "nmis/thread-1"} <= set(reduced), reduced
    assert reduced["secondary-aim/SYNC_1"]["causes"][0]["cause"] == "taken"
    assert "--nmi-rate" in reduced["secondary-aim/SYNC_1"]["advice"]
    assert reduced["nmis/thread-0"]["causes"][0]["cause"] == "overrun"


def test_a_box_reduced_run_passes_and_says_so(run_cli, tmp_path):
    """20,000 timer NMIs a second take most secondary windows before the
    aimed NMI can (issue 26): not a FAIL, and not a silent PASS."""
    r, rep = _run(run_cli, tmp_path, "--scenario", "rfc-native", "--nmi-rate", "20000",
                  "--site-kinds", "block", "--duration", "3", "--seed", "2")
    assert r.returncode == 0 and rep["verdict"] == "pass", r.stdout + r.stderr
    assert not [v for v in rep["violations"] if v["invariant"] == "stress-coverage"]
    # (on this 2-vCPU VM the timer takes over 80% of them, every run; a
    # faster box may take fewer: then nothing is reduced, and nothing said)
    reduced = {x["name"] for x in rep["stress_reduced"]}
    assert reduced == {k for k, it in rep["coverage"].items() if it["judged"] == "box-reduced"}
    assert ("stress reduced by the box" in r.stdout.splitlines()[0]) == bool(reduced)
    assert ("a lower --nmi-rate" in r.stdout) == bool(reduced)
    # every secondary aim accounted for: landed, or taken by what the box did
    for st in range(3):
        it = rep["coverage"][f"secondary-aim/SYNC_{st}"]
        assert it["delivered"] + sum(it["box"].values()) + sum(it["harness"].values()) == \
            pytest.approx(it["configured"], abs=max(3, it["configured"] * 0.002)), it


def test_the_primarys_breakpoint_writes_are_held_to_a_sync(run_cli, tmp_path):
    r, rep = _run(run_cli, tmp_path, "--scenario", "rfc-native", "--duration", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert rep["checks"]["evidence"]["breakpoint_writes_held_to_a_sync"] > 0
    assert any("signal handler" in g for g in rep["checks"]["not_observable"])


def test_membarrier_registrations_are_the_kernels_word(run_cli, tmp_path):
    r, rep = _run(run_cli, tmp_path, "--scenario", "upstream-emulated", "--duration", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    regs = rep["checks"]["evidence"]["membarrier_registrations"]
    # Linux 6.3+ answers MEMBARRIER_CMD_GET_REGISTRATIONS; older kernels say so
    assert regs == "not checked" or int(regs, 16) & (1 << 6), regs


def test_a_published_state_that_stands_still_past_the_runs_own_bound_is_named(monkeypatch):
    """Progress as evidence: the bound is the run's (50 mean rounds, at
    least 1 s, at most half the deadline), the standstill is net of the
    host's steal, and the finding names each thread's wait."""
    from pyharness import runner
    from pyharness._ffi import lib

    class Sh:
        t_start, t_end, status, final_session, oracle_rounds, round = 1, 0, 0, 0, 1000, (7 << 3) | 1

    class View:
        sh = Sh()

        def all_counters(self):
            return [{"where": lib.PH_WHERE_WAIT_ACKS, "seen_round": 0},
                    {"where": lib.PH_WHERE_SESSION_WAIT, "seen_round": (7 << 3) | 1}]

        def wait_stalls(self):
            return []

    clock = {"t": 100.0, "ns": 2_000_000_000}           # 2 s of run, 1000 rounds: 2 ms each
    monkeypatch.setattr(runner.time, "monotonic", lambda: clock["t"])
    monkeypatch.setattr(runner, "lib", type("Lib", (), {"ph_now_ns": staticmethod(lambda: clock["ns"])}))
    steal = {"s": 0.0}
    monkeypatch.setattr(runner, "_steal_s", lambda cpus: steal["s"])
    w = runner._StallWatch(View(), Config(cpus=[0, 1], sites=8))
    assert w.bound() == pytest.approx(1.0, abs=0.3)     # 50 x 2 ms is below the 1 s floor
    w.sample()
    clock["t"] += 0.9
    w.sample()
    assert not w.violations()                           # a wobble below the bound
    steal["s"] += 0.8                                   # the host took 0.8 s of it
    clock["t"] += 0.7
    w.sample()
    assert not w.violations()                           # 1.6 s still, 0.8 s net: not a stall
    clock["t"] += 1.5
    w.sample()
    (v,) = w.violations()
    assert v["invariant"] == "progress" and v["reason"] == "stall"
    assert "thread 0 wait-acks" in v["detail"] and "thread 1 between sessions" in v["detail"]
    View.sh.round += 1                                  # it moved on: the watch starts again
    w.sample()
    assert w.last == View.sh.round


def test_a_wait_on_a_thread_that_makes_no_progress_is_named(monkeypatch):
    """Each wait's own record (ph_spin_step): how long the thread it waited
    for made no progress, netted of the host's steal over that stretch and
    held to the run's bound; the finding names the waiter, whom it waited
    for, where, and the state."""
    from pyharness import runner
    from pyharness._ffi import lib

    class Sh:
        t_start, t_end, status, final_session, oracle_rounds, round = 1, 0, 0, 0, 1000, (9 << 3) | 2

    recs = []

    class View:
        sh = Sh()
        nthreads = 2

        def all_counters(self):
            return [{"where": 0, "seen_round": 0}] * 2

        def wait_stalls(self):
            return list(recs)

    clock = {"t": 100.0, "ns": 2_000_000_000}
    monkeypatch.setattr(runner.time, "monotonic", lambda: clock["t"])
    monkeypatch.setattr(runner, "lib", type("Lib", (), {"ph_now_ns": staticmethod(lambda: clock["ns"])}))
    steal = {"s": 0.0}
    monkeypatch.setattr(runner, "_steal_s", lambda cpus: steal["s"])
    w = runner._StallWatch(View(), Config(cpus=[0, 1], sites=8))
    w.sample()
    # 1.5 s of stall, of which the host stole 0.8 s meanwhile: 0.7 s net, below the bound
    clock["ns"] += 1_500_000_000
    steal["s"] += 0.8
    recs[:] = [(0, 1_500_000_000, clock["ns"], 1, lib.PH_WHERE_WAIT_ACKS, (9 << 3) | 2)]
    w.sample()
    assert not w.violations() and w.wait_table()[0]["net_s"] == pytest.approx(0.7, abs=0.01)
    # it grew to 3 s with no more steal: 2.2 s net, past the bound
    clock["ns"] += 1_500_000_000
    recs[:] = [(0, 3_000_000_000, clock["ns"], 1, lib.PH_WHERE_WAIT_ACKS, (9 << 3) | 2)]
    w.sample()
    (v,) = w.violations()
    assert v["invariant"] == "progress" and v["reason"] == "wait-stall" and v["thread"] == 0
    assert "wait-acks" in v["detail"] and "thread 1 make no progress" in v["detail"]
    assert v["seq"] == 9 and v["state"] == "SYNC_2"
    (row,) = w.wait_table()
    assert row["awaited"] == "thread 1" and row["net_s"] == pytest.approx(2.2, abs=0.01)


def test_a_thread_starved_by_the_guest_is_not_the_protocol_standing_still(monkeypatch):
    """Time the run's threads sat runnable but off CPU (schedstat's
    run_delay: the guest's own competition, as steal is the host's) is
    netted like steal; a standstill past that is still a stall."""
    from pyharness import runner
    from pyharness._ffi import lib

    class Sh:
        t_start, t_end, status, final_session, oracle_rounds, round = 1, 0, 0, 0, 1000, (5 << 3) | 1

    class View:
        sh = Sh()
        nthreads = 2

        def all_counters(self):
            return [{"where": lib.PH_WHERE_WAIT_ACKS, "seen_round": 0}] * 2

        def wait_stalls(self):
            return []

        def tids(self):
            return [11, 12]

    clock = {"t": 100.0, "ns": 2_000_000_000}
    monkeypatch.setattr(runner.time, "monotonic", lambda: clock["t"])
    monkeypatch.setattr(runner, "lib", type("Lib", (), {"ph_now_ns": staticmethod(lambda: clock["ns"])}))
    monkeypatch.setattr(runner, "_steal_s", lambda cpus: 0.0)
    delay = {0: 0.0, 1: 0.0}
    w = runner._StallWatch(View(), Config(cpus=[0, 1], sites=8), pid=1)
    monkeypatch.setattr(w, "_run_delays", lambda: dict(delay))
    w.sample()
    clock["t"] += 1.6
    delay[1] += 1.2                                   # thread 1 sat runnable, off CPU
    w.sample()
    assert not w.violations()                         # 1.6 s still, 0.4 s net
    clock["t"] += 1.5
    w.sample()
    (v,) = w.violations()
    assert v["reason"] == "stall" and "off CPU" in v["detail"]


def test_the_false_positive_matrix_subset_finds_no_fail(run_cli, tmp_path):
    """The correct protocols under six of the matrix's conditions, 20,000
    NMIs a second on block sites among them (issue 26: 2 runs in 6 of it
    failed stress-coverage before the accounting): no FAIL, and a table
    that says so per configuration."""
    out = tmp_path / "fp.json"
    r = run_cli("selftest", "--false-positives", "--subset", "--seeds", "1", "--seconds", "2",
                "--json", str(out), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    assert doc["pass"] and len(doc["matrix"]) == 6
    assert all(row["verdict"] == "pass" for row in doc["matrix"]), doc["matrix"]
    assert "0 FAIL of a correct protocol" in r.stdout
    assert "--nmi-rate 20000 --site-kinds block" in r.stdout
