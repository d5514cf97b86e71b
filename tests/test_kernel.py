"""pyharness kernel (issue 19): the running kernel's patching, every global
change restored -- after a clean run, after `kill -9` of pyharness (the
restorer), after a kill of its whole process group and restorer (the
record and `--restore`).  These tests change global kernel state (sysctls,
a tracefs mount, tracefs instances) and restore it, so they run only when
PYHARNESS_KERNEL_TESTS=1 (.ci/run sets it) and as root."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = [
    pytest.mark.skipif(os.environ.get("PYHARNESS_KERNEL_TESTS") != "1",
                       reason="changes global kernel state: set PYHARNESS_KERNEL_TESTS=1 to run"),
    pytest.mark.skipif(os.geteuid() != 0, reason="pyharness kernel needs root"),
]


@pytest.fixture
def record(tmp_path, monkeypatch):
    p = str(tmp_path / "kernel-restore.json")
    monkeypatch.setenv("PYHARNESS_KERNEL_RECORD", p)
    return p


def _snapshot():
    from pyharness.kernel.run import snapshot
    return snapshot()


def _settles_to(want, seconds=15):
    """The box comes back to `want` (the kernel frees a dead process's BPF
    objects a moment after it dies): a deadline, not a sleep."""
    import time
    deadline = time.monotonic() + seconds
    while True:
        got = _snapshot()
        if got == want or time.monotonic() > deadline:
            return got == want
        time.sleep(0.1)


def _cli(*args, env=None, timeout=120):
    # from "/": the installed package, never a source tree in the current directory
    return subprocess.run([sys.executable, "-m", "pyharness", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd="/")


def _start(record, duration, extra_env=None):
    env = dict(os.environ, PYHARNESS_KERNEL_RECORD=record, **(extra_env or {}))
    p = subprocess.Popen([sys.executable, "-m", "pyharness", "kernel", "--duration", str(duration)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         start_new_session=True, cwd="/")
    # until the run has changed something (its record lists the changes)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with open(record) as f:
                doc = json.load(f)
            if len(doc["entries"]) >= 5 and doc.get("restorer_pid"):
                return p, doc
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    p.kill()
    pytest.fail("the run never recorded its changes")


def _wait_gone(path, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and os.path.exists(path):
        time.sleep(0.05)
    return not os.path.exists(path)


def test_a_clean_run_patches_with_evidence_and_leaves_the_box_as_it_found_it(record, tmp_path):
    before = _snapshot()
    out, db = tmp_path / "k.json", tmp_path / "s.db"
    r = _cli("kernel", "--duration", "3", "--json", str(out), "--store", str(db),
             env=dict(os.environ, PYHARNESS_KERNEL_RECORD=record))
    assert r.returncode in (0, 1), r.stdout + r.stderr
    assert _settles_to(before) and not os.path.exists(record)
    doc = json.loads(out.read_text())
    assert doc["restored"] and doc["targets"]["static-key"]["available"]
    na = {x["target"] for x in doc["not_available"]}
    assert "nmi" in na and "not available" in r.stdout       # no PMU on this VM
    sk = {it["name"]: it for it in doc["targets"]["static-key"]["items"]}
    # the bpf_stats key's direction, seen where it acts: run counts move only while on
    if "kernel.bpf_stats_enabled" in sk:
        assert sk["kernel.bpf_stats_enabled"]["evidence_ok"] == sk["kernel.bpf_stats_enabled"]["flips"]
        assert "run count" in sk["kernel.bpf_stats_enabled"]["evidence_last"]
    for name in ("static-key", "trace-event", "uprobe", "bpf-jump"):
        items = doc["targets"][name]["items"]
        assert items and all(it["flips"] > 0 and it["latency_us"]["p50"] > 0 for it in items)
        # each flip patched text: IPIs net of the box's own, on a box of more than one CPU
        if len(doc["cpus"]) > 1 and name != "uprobe":
            assert all(it["ipis_per_flip"] and it["ipis_per_flip"] > 0 for it in items), items
        # and its evidence held on every flip (uprobe: our own mapping shows the INT3 come and go)
        assert all(it["evidence_ok"] == it["flips"] for it in items), items
    # history: one series per target and item
    h = _cli("history", "--store", str(db), "--kind", "kernel", "--by", "kernel", "--format", "json")
    assert h.returncode == 0, h.stderr
    names = h.stdout
    assert "kernel/static-key/kernel.timer_migration/flip_us/p50" in names
    assert "kernel/trace-event/sched:sched_switch/flip_us/p50" in names
    assert "kernel/uprobe/uprobe nop5/flip_us/p50" in names
    assert "kernel/bpf-jump/prog-array repoint/flip_us/p50" in names
    # every execution of our probed sites checked, and the kernel's writes to them seen
    up = doc["targets"]["uprobe"]
    assert up["executions"] > 1000 and up["write_sequence"]
    assert any(s["after"].startswith("cc") for s in up["write_sequence"])   # an INT3 appeared


def test_kill_9_of_pyharness_is_restored_by_the_restorer_that_outlives_it(record):
    before = _snapshot()
    p, doc = _start(record, 30)
    assert _snapshot() != before or True      # it changed something (its record says what)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=10)
    assert _wait_gone(record), "the restorer did not replay the record"
    assert _settles_to(before)


def test_a_kill_of_the_group_and_restorer_leaves_a_record_that_refuses_runs_until_restore(record):
    before = _snapshot()
    p, doc = _start(record, 30)
    # what systemd, Slurm or Kubernetes do to a cgroup: everything dies at once
    os.killpg(p.pid, signal.SIGKILL)
    os.kill(doc["restorer_pid"], signal.SIGKILL)
    p.wait(timeout=10)
    time.sleep(0.2)
    assert os.path.exists(record)
    env = dict(os.environ, PYHARNESS_KERNEL_RECORD=record)
    r = _cli("kernel", "--duration", "1", env=env)
    assert r.returncode == 3 and "pyharness kernel --restore" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = _cli("kernel", "--restore", env=env)
    assert r.returncode == 0 and "restored" in r.stdout, r.stdout + r.stderr
    assert _settles_to(before) and not os.path.exists(record)
    r = _cli("kernel", "--restore", env=env)
    assert r.returncode == 0 and "nothing to restore" in r.stdout


def test_the_snapshot_sees_a_restorer_that_does_not_restore(record):
    """A fault injected in the restorer: the record stays and the box is not
    as it was -- so the tests above would see a restorer that fails."""
    before = _snapshot()
    p, doc = _start(record, 30, {"PYHARNESS_KERNEL_RESTORER_FAULT": "skip"})
    time.sleep(0.5)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(doc["restorer_pid"], 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    assert os.path.exists(record)
    assert not _settles_to(before, seconds=2)   # an instance or a mount is left: visible
    r = _cli("kernel", "--restore", env=dict(os.environ, PYHARNESS_KERNEL_RECORD=record))
    assert r.returncode == 0, r.stderr
    assert _settles_to(before)


def test_a_flip_that_did_not_take_effect_is_seen():
    """The evidence is read, not assumed: a sysctl that reads back another
    value than the one written is a failed flip."""
    from pyharness.kernel.targets import SysctlKey
    import tempfile
    it = object.__new__(SysctlKey)
    with tempfile.NamedTemporaryFile("w", delete=False) as f:
        f.write("0\n")
    it.path, it.values, it.name = f.name, ("0", "1"), "fake.sysctl"
    assert it.evidence(False)["ok"]
    ev = it.evidence(True)                  # the kernel "ignored" the write of 1
    assert not ev["ok"] and "not 1" in ev["what"]
    os.unlink(f.name)


def test_without_root_it_says_so_in_one_line_and_exits_3(record):
    import shutil
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is not installed")
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run(nobody + [sys.executable, "-c", "import psutil, pyharness._ffi"], capture_output=True,
                           text=True, timeout=60, cwd="/")
    if probe.returncode:
        pytest.skip("this environment is not readable by an unprivileged user (a private virtualenv)")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        sys.executable, "-m", "pyharness", "kernel", "--duration", "1"],
                       capture_output=True, text=True, timeout=60, cwd="/",
                       env=dict(os.environ, PYHARNESS_KERNEL_RECORD=record))
    assert r.returncode == 3 and "needs root" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_trace_event_that_records_nothing_while_enabled_is_seen(tmp_path):
    """The trace-event evidence reads the instance's buffer: records that
    do not appear while the event is on (or appear while it is off) fail
    the flip."""
    from pyharness.kernel.targets import TraceEventItem
    inst = tmp_path / "inst"
    (inst / "per_cpu" / "cpu0").mkdir(parents=True)
    (inst / "events" / "sched" / "sched_switch").mkdir(parents=True)
    stats = inst / "per_cpu" / "cpu0" / "stats"
    stats.write_text("entries: 10\noverrun: 0\n")
    it = TraceEventItem(str(inst), "sched:sched_switch")
    assert not it.evidence(True)["ok"]          # nothing new while "enabled"
    assert it.evidence(False)["ok"]             # nothing new while disabled
    stats.write_text("entries: 5\noverrun: 40\n")   # a full buffer overwrote: 45 written
    assert it._entries() == 45
