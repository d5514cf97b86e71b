"""Runs a platform team can act on: evidence, machine health, a log that
survives a kill -9, and exports read back by real parsers."""
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest
from junitparser import JUnitXml
from prometheus_client.parser import text_string_to_metric_families


def _wait_for(pred, deadline_s=60.0, step=0.05):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return None


def _lines(path):
    """The complete lines of a log so far.  Before the run starts the file
    may come and go: checking an output path creates it and removes it."""
    out = []
    try:
        with open(path) as f:
            for ln in f:
                if ln.endswith("\n"):
                    out.append(json.loads(ln))
    except FileNotFoundError:
        return []
    return out


def test_a_report_holds_the_evidence_with_reasons_for_what_is_missing(run_cli, tmp_path):
    out = tmp_path / "r.json"
    r = run_cli("run", "--duration", "1", "--quiet", "--json", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    ev = json.loads(out.read_text())["evidence"]
    assert ev["schema"] == "pyharness.evidence/1"
    for c in ev["cpus"]:
        for k in ("cpu", "package", "die", "core", "smt_siblings", "numa_node", "family", "model",
                  "stepping", "microcode", "ppin", "freq_khz_start", "freq_khz_end"):
            assert k in c, k
    assert ev["kernel"]["cmdline"] and ev["kernel"]["mitigations"] and "pti" in ev["kernel"]
    assert ev["build"]["compiler"].startswith(("gcc", "clang")) and "-mno-red-zone" in ev["build"]["cflags"]
    missing = {m["what"]: m["reason"] for m in ev["not_collected"]}
    for c in ev["cpus"]:   # nothing silently absent: a None has its reason
        for k in ("ppin", "numa_node"):
            if c[k] is None:
                assert any(w.startswith(f"cpu{c['cpu']}") and k.split("_")[0] in w for w in missing)
    assert all(m["reason"] for m in ev["not_collected"])


def test_a_kernel_error_during_the_run_is_a_machine_health_violation(tmp_path):
    """A machine-check record appears in the kernel log while the run goes
    on (after its start record, so after the watch began).  The log is one
    the test controls, in /dev/kmsg's record format ($PYHARNESS_KMSG): no
    fake alarm is ever written into the box's real kernel log, where a
    run beside the tests, or a fleet's log watcher, would take it for one."""
    log, out, kmsg = tmp_path / "l.jsonl", tmp_path / "r.json", tmp_path / "kmsg"
    kmsg.write_text("6,100,1000,-;an old line, before the run: not ours to judge\n"
                    "3,101,1001,-;mce: [Hardware Error]: from before the run\n")
    env = dict(os.environ, PYHARNESS_KMSG=str(kmsg))
    p = subprocess.Popen([sys.executable, "-m", "pyharness", "run", "--duration", "3",
                          "--log", str(log), "--json", str(out)], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert _wait_for(lambda: any(r["type"] == "start" for r in _lines(log)))
    tag = f"synthetic record {os.getpid()}-{time.time_ns()}"
    with open(kmsg, "a") as k:
        k.write(f"6,102,2000,-;usb 1-1: an ordinary line\n"
                f"3,103,2001,-;mce: [Hardware Error]: {tag}\n SUBSYSTEM=machinecheck\n")
    so, se = p.communicate(timeout=120)
    assert p.returncode == 1, so + se
    rep = json.loads(out.read_text())
    hv = [v for v in rep["violations"] if v["invariant"] == "machine-health"]
    assert len(hv) == 1 and tag in hv[0]["detail"] and "machine-check" in hv[0]["detail"]
    kl = rep["health"]["kernel_log"]
    assert kl["checked"] and kl["records_read"] == 2
    assert "kernel log: checked, 1 error line(s)" in so


def test_a_clean_kernel_log_passes_and_an_unreadable_one_says_not_checked(tmp_path, run_cli):
    kmsg = tmp_path / "kmsg"
    kmsg.write_text("")
    r = run_cli("run", "--duration", "0.5", env={"PYHARNESS_KMSG": str(kmsg)})
    assert r.returncode == 0 and "kernel log: checked, clean" in r.stdout, r.stdout + r.stderr
    r = run_cli("run", "--duration", "0.5", env={"PYHARNESS_KMSG": str(tmp_path / "absent")})
    assert r.returncode == 0 and "kernel log: NOT CHECKED" in r.stdout, r.stdout + r.stderr


@pytest.mark.skipif(not os.environ.get("PYHARNESS_TEST_REAL_KMSG"),
                    reason="opt-in (PYHARNESS_TEST_REAL_KMSG=1): writes one informational line "
                           "to the box's real kernel log")
@pytest.mark.skipif(os.geteuid() != 0 or not os.access("/dev/kmsg", os.W_OK),
                    reason="writing to /dev/kmsg needs root")
def test_the_real_kernel_log_is_read(tmp_path):
    """Against the real /dev/kmsg: one informational line that no log
    watcher takes for an alarm (priority 6, no error words) is read back."""
    from pyharness.platform.health import HealthWatch
    w = HealthWatch([0]).start()
    tag = f"pyharness: kernel log reader check {os.getpid()}-{time.time_ns()}"
    with open("/dev/kmsg", "w") as k:
        k.write(f"<6>{tag}\n")
    w.stop()
    kl = w.report()["kernel_log"]
    assert kl["checked"] and any(tag in r for r in w.records) and not kl["matches"]


def test_the_log_keeps_start_progress_and_violations_after_kill_9(tmp_path):
    """kill -9 of pyharness mid-run: every line written is still there and
    parses, and the worker died with its parent."""
    log = tmp_path / "l.jsonl"
    p = subprocess.Popen([sys.executable, "-m", "pyharness", "run", "--mutant", "skip-sync-one",
                          "--duration", "60", "--quiet", "--log", str(log)], cwd=tmp_path,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    have = _wait_for(lambda: (lambda ls: ls if {"start", "progress", "violation"} <= {x["type"] for x in ls}
                              else None)(_lines(log)))
    assert have, _lines(log)
    p.send_signal(signal.SIGKILL)
    p.wait(30)
    lines = _lines(log)
    assert lines[0]["type"] == "start" and lines[0]["evidence"]["cpus"]
    assert lines[0]["schema"] == "pyharness.log/1"
    assert any(x["type"] == "violation" and x["invariant"] == "serialized" for x in lines)
    assert not any(x["type"] == "end" for x in lines)
    worker = lines[0]["worker_pid"]
    assert _wait_for(lambda: not os.path.exists(f"/proc/{worker}") or
                     open(f"/proc/{worker}/stat").read().split()[2] == "Z", 30)


def test_junit_and_prometheus_outputs_parse_back(run_cli, tmp_path):
    j, m = tmp_path / "j.xml", tmp_path / "m.prom"
    r = run_cli("run", "--mutant", "lost-tail", "--duration", "1", "--quiet", "--junit", str(j),
                "--metrics", str(m))
    assert r.returncode == 1, r.stdout + r.stderr
    xml = JUnitXml.fromfile(str(j))
    suite = next(iter(xml))
    cases = {c.name: c for c in suite}
    assert "bytes-intended" in cases and "known-variant" in cases and "run-completed" in cases
    assert cases["bytes-intended"].result and "violation" in cases["bytes-intended"].result[0].message
    assert not cases["membarrier"].result        # not reachable in rfc-native
    root = ET.parse(str(j)).getroot()          # and a plain XML parser agrees
    assert int(root.find("testsuite").get("failures")) >= 1
    fams = {f.name: f for f in text_string_to_metric_families(m.read_text())}
    assert fams["pyharness_pass"].samples[0].value == 0
    viol = {s.labels["invariant"]: s.value for s in fams["pyharness_violations"].samples}
    assert viol["bytes-intended"] >= 1 and viol["membarrier"] == 0
    assert fams["pyharness_sites_per_second"].samples[0].value > 0
    assert fams["pyharness_run_seconds"].samples[0].value > 0


# Two packages x two cores x two SMT siblings: cpu = pkg*4 + core*2 + smt... as
# Linux numbers them on many boxes: siblings far apart (0 and 4 share a core).
TOPO = {0: (0, 0), 1: (0, 1), 2: (1, 0), 3: (1, 1), 4: (0, 0), 5: (0, 1), 6: (1, 0), 7: (1, 1)}


def test_placements_on_a_two_package_smt_box():
    from pyharness.platform.placement import place
    cpus = list(range(8))
    assert place("default", cpus, topo=TOPO) == cpus
    spread = place("spread", cpus, topo=TOPO)
    assert [TOPO[c][0] for c in spread[:4]] == [0, 1, 0, 1]        # packages alternate
    assert len({TOPO[c] for c in spread[:4]}) == 4                  # four distinct cores first
    assert sorted(place("one-per-core", cpus, topo=TOPO)) == [0, 1, 2, 3]
    pair = place("smt-pairs", cpus, topo=TOPO)
    assert TOPO[pair[0]] == TOPO[pair[1]] and pair[0] != pair[1]
    cross = place("cross-package", cpus, topo=TOPO)
    assert TOPO[cross[0]][0] == 0 and all(TOPO[c][0] == 1 for c in cross[1:])
    assert place("spread", cpus, threads=10, topo=TOPO)[8:] == spread[:2]   # oversubscribed: wraps


def test_a_placement_the_box_cannot_give_is_exit_3(run_cli):
    import psutil
    if psutil.cpu_count(logical=True) != psutil.cpu_count(logical=False):
        pytest.skip("this box has SMT siblings")
    r = run_cli("run", "--placement", "smt-pairs", "--duration", "1")
    assert r.returncode == 3 and "SMT" in r.stderr and r.stderr.count("\n") == 1


def _r(cpus, failed):
    return {"cpu_set": cpus, "failed": failed}


def test_localization_verdicts():
    from pyharness.platform.retest import localize
    all8 = list(range(8))
    without = lambda c: [x for x in all8 if x != c]     # noqa: E731
    # failing only while CPU 5 takes part
    v = localize([_r(without(c), c != 5) for c in all8], TOPO)
    assert v["follows"] == {"cpu": 5, "package": 0, "core": 1} and "follows CPU 5" in v["verdict"]
    # failing while either SMT sibling of core 0 / package 1 (CPUs 2 and 6) takes part
    runs = [_r([0, 1, 3, 4, 5, 7], False), _r([2, 3], True), _r([6, 7], True), _r([0, 2, 6], True)]
    assert localize(runs, TOPO)["follows"]["core"] == 0
    # failing in every placement: not a core
    v = localize([_r(without(c), True) for c in all8], TOPO)
    assert v["follows"] == "software" and "not a core" in v["verdict"]
    # package 1 alone fails, package 0 alone passes
    runs = [_r([0, 1, 4, 5], False), _r([2, 3, 6, 7], True)]
    assert localize(runs, TOPO)["follows"]["package"] == 1


def test_retest_gives_a_rate_and_a_localization_verdict(run_cli, tmp_path):
    out = tmp_path / "r.json"
    r = run_cli("run", "--mutant", "skip-sync-one", "--duration", "3", "--retest", "3",
                "--json", str(out), timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    rt = json.loads(out.read_text())["retest"]
    assert rt["reproduction"]["rate"] == "failed 4 of 4"
    assert len(rt["reproduction"]["times_to_failure_s"]) == 4
    assert [x["seed"] for x in rt["reproduction"]["reruns"]] == [1, 2, 3]
    assert rt["localization"]["follows"] == "software"
    assert len(rt["localization"]["runs"]) >= 3
    assert "localization: fails in every placement" in r.stdout


def test_an_overloaded_run_is_let_finish_not_called_hung(run_cli, tmp_path):
    """Many threads on 2 CPUs with NMIs: still progressing past the limit and
    the grace period, it is overloaded, finishes within the bound, and is
    not judged hung."""
    out = tmp_path / "r.json"
    r = run_cli("run", "--threads", "96", "--nmi-rate", "200", "--duration", "1", "--grace", "0.3",
                "--sites", "200", "--quiet", "--json", str(out), timeout=120)
    rep = json.loads(out.read_text())
    assert rep["status"] != "hung", rep["stuck_threads"]
    assert rep["status"] == "complete" and r.returncode == 0, r.stdout + r.stderr
    if rep["overloaded"]:      # the host decides whether it ran late; if so, said so
        assert rep["overloaded"]["extra_s"] > 0.3


def test_campaign_end_to_end_and_merge_of_two_boxes(run_cli, tmp_path):
    """A campaign scaled to a small budget runs every step, keeps each
    step's output under <host>-<date>/, and two campaign directories merge
    into one table by CPU model, microcode and kernel."""
    out = tmp_path / "res"
    r = run_cli("campaign", "--budget", "15s", "--out", "res", timeout=600)   # relative to the cwd
    assert r.returncode == 0, r.stdout + r.stderr
    (camp,) = list(out.iterdir())
    s = json.loads((camp / "summary.json").read_text())
    assert s["schema"] == "pyharness.campaign/1" and s["evidence"]["cpus"]
    names = [st["name"] for st in s["steps"]]
    assert names[0] == "selftest" and "bench" in names and "run-mixed" in names
    assert any(n.startswith("run-rfc-selftest-") for n in names)
    for st in s["steps"]:
        for ext in (".out", ".err", ".rc"):
            assert (camp / (st["name"] + ext)).exists()
    for name in ("selftest", "bench", "run-mixed"):   # evidence in every kind of report
        ev = json.loads((camp / (name + ".json")).read_text())["evidence"]
        assert ev["cpus"] and ev["build"]["compiler"] and "not_collected" in ev
    posted = next(st for st in s["steps"] if st["name"] == "run-rfc-as-posted")
    assert posted["rc"] == 1 and posted["findings"]     # expected: the RFC's findings
    assert "(expected)" in r.stdout and "campaign: PASS" in r.stdout
    # a second "box": the same campaign copied under another host name, with a failure
    other = tmp_path / "box2" / "box2-20261125-000000"
    other.parent.mkdir()
    import shutil
    shutil.copytree(camp, other)
    s2 = dict(s, host="box2")
    s2["steps"] = [dict(st) for st in s["steps"]]
    s2["steps"][1].update(rc=1, violations={"known-variant": 3}, verdict="fail")
    (other / "summary.json").write_text(json.dumps(s2))
    mj = tmp_path / "m.json"
    r = run_cli("merge", str(out), str(tmp_path / "box2"), "--json", str(mj))
    assert r.returncode == 1, r.stdout + r.stderr        # a box failed
    doc = json.loads(mj.read_text())
    (row,) = doc["rows"]                                  # same CPU model, microcode, kernel
    assert sorted(row["boxes"]) == sorted([s["host"], "box2"])
    assert row["failed_boxes"] == ["box2"] and row["how"] == {"known-variant": 1}
    md = run_cli("merge", str(out), str(tmp_path / "box2"), "--format", "md").stdout
    assert md.startswith("| CPU model |") and "known-variant (1)" in md


def test_merge_of_nothing_is_one_line_and_exit_2(run_cli, tmp_path):
    r = run_cli("merge", str(tmp_path))
    assert r.returncode == 2 and "summary.json" in r.stderr and r.stderr.count("\n") == 1


def test_merge_names_an_unreadable_summary(run_cli, tmp_path):
    d = tmp_path / "box-1"
    d.mkdir()
    (d / "summary.json").write_text('{"schema": "pyharness.campaign/1", "host": "b", "st')
    r = run_cli("merge", str(tmp_path))
    assert r.returncode == 2 and "unreadable campaign summary" in r.stderr
    assert str(d / "summary.json") in r.stderr and r.stderr.count("\n") == 1


def test_a_log_to_a_device_or_pipe_does_not_break_the_run(run_cli):
    r = run_cli("run", "--duration", "0.5", "--quiet", "--log", "/dev/null")
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_kernel_log_scan_counts_kernel_errors_and_only_our_faults():
    """A kernel oops counts; another program's user-space trap does not (a
    30-minute soak once counted a neighbour's GPF); ours does."""
    from pyharness.platform.health import classify
    ours = {4242}
    assert classify("general protection fault, probably for non-canonical address 0xdead: "
                    "0000 [#1] PREEMPT SMP", ours) == "general-protection"
    assert classify("mce: [Hardware Error]: Machine check events logged", ours) == "machine-check"
    assert classify("mce: CPU2: Package temperature above threshold, cpu clock throttled", ours) is None
    assert classify("watchdog: BUG: soft lockup - CPU#1 stuck for 22s!", ours) == "soft-lockup"
    other = "traps: python3[26671] general protection fault ip:7fca4615ab00 sp:7fca45956328 error:0"
    assert classify(other, ours) is None
    assert classify(other.replace("26671", "4242"), ours) == "our-process-fault"
    assert classify("python3[4242]: segfault at 0 ip 00007f sp 00007f error 4", ours) == "our-process-fault"
    assert classify("python3[777]: segfault at 0 ip 00007f sp 00007f error 4", ours) is None


def test_every_segment_of_a_mixed_run_logs_its_progress(tmp_path):
    """Each segment's clock starts at 0: the second segment's progress must
    not wait for the first one's last elapsed time (it did: a 30-minute
    mixed soak logged progress for its first 5 minutes only)."""
    from types import SimpleNamespace
    from pyharness.platform.log import RunLog
    cfg = SimpleNamespace(to_dict=lambda: {}, kinds=("movret",))
    totals = {"sites_patched": 1, "nmis": 0, "bp_hits": {}, "violations": 0}
    log = RunLog(str(tmp_path / "l.jsonl"))
    for scen in ("rfc-native", "batch"):
        log.start(SimpleNamespace(scenario=scen, config=cfg, sites=None, duration=300,
                                  nmi_rate=0, argv=None), {}, 1)
        for t in (1.0, 2.0, 299.5):
            log.progress(t, totals)
    log.close()
    lines = _lines(tmp_path / "l.jsonl")
    assert [x["type"] for x in lines] == ["start"] + ["progress"] * 3 + ["start"] + ["progress"] * 3
