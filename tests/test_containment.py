"""A run whose worker is killed, hangs or is interrupted still writes its
report, and always ends within its duration plus the grace period."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import psutil

from pyharness.engine import Config
from pyharness.runner import RunSpec, run_stress


def wait_for_worker(parent_pid, deadline_s=30.0):
    """The pid of the worker process, once it exists (deadline, no sleep luck)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        for child in psutil.Process(parent_pid).children(recursive=True):
            try:
                if "pyharness._worker" in " ".join(child.cmdline()):
                    return child.pid
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.02)
    raise AssertionError("no worker process appeared")


def wait_for_progress(path_unused=None, pid=None, deadline_s=30.0):
    """Wait until the worker has run for a moment: its CPU time grows."""
    end = time.monotonic() + deadline_s
    proc = psutil.Process(pid)
    while time.monotonic() < end:
        t = proc.cpu_times()
        if t.user + t.system > 0.2:
            return
        time.sleep(0.02)
    raise AssertionError("worker made no progress")


def run_in_thread(spec):
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("rep", run_stress(spec, progress=False)))
    t.start()
    return t, out


def test_killed_worker_still_yields_a_report(two_cpus):
    spec = RunSpec(config=Config(cpus=two_cpus, sites=500), duration=30.0, nmi_rate=1000.0)
    t, out = run_in_thread(spec)
    pid = wait_for_worker(os.getpid())
    wait_for_progress(pid=pid)
    os.kill(pid, signal.SIGKILL)
    t.join(60)
    assert not t.is_alive()
    rep = out["rep"]
    assert rep["status"] == "crashed" and rep["verdict"] == "fail" and rep["exit_code"] == 1
    assert "worker-killed" in rep["violation_counts"]
    assert rep["totals"]["sites_patched"] > 0          # the counters survived the worker


def test_hung_worker_is_killed_after_the_grace_period_and_named(two_cpus):
    spec = RunSpec(config=Config(cpus=two_cpus, sites=500), duration=1.0, grace=1.0)
    t0 = time.monotonic()
    t, out = run_in_thread(spec)
    pid = wait_for_worker(os.getpid())
    wait_for_progress(pid=pid)
    os.kill(pid, signal.SIGSTOP)                         # the whole worker freezes
    t.join(60)
    elapsed = time.monotonic() - t0
    assert not t.is_alive()
    rep = out["rep"]
    assert rep["status"] == "hung" and rep["exit_code"] == 1
    assert "deadline" in rep["violation_counts"]
    assert rep["stuck_threads"] and rep["stuck_threads"][0].startswith("thread ")
    # duration + grace + start-up and kill, with room for a loaded machine
    assert elapsed < spec.duration + spec.grace + 30


def test_interrupt_writes_a_partial_report_and_exits_130(tmp_path):
    report = tmp_path / "r.json"
    proc = subprocess.Popen([sys.executable, "-m", "pyharness", "run", "--duration", "60",
                             "--json", str(report), "--quiet"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pid = wait_for_worker(proc.pid)
        wait_for_progress(pid=pid)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    rep = json.loads(report.read_text())
    assert rep["status"] == "interrupted" and rep["exit_code"] == 130
    assert rep["totals"]["sites_patched"] > 0
    assert "Traceback" not in err
