"""What a new user meets (issue 21): each point runs the command that showed
it, or the library call behind it, and checks the exit code and the line."""
import json
import os
import signal
import stat
import subprocess
import sys
import time

import psutil
import pytest

from _support import one_line as _one_line


def _wait_for(cond, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


# -- wrong or misleading verdicts --------------------------------------------

def test_a_jump_on_the_third_result_is_flagged_and_two_are_not_judged(run_cli, tmp_path, real):
    db = str(tmp_path / "s.db")
    files = []
    for i, d in enumerate(real["results"][:2] + [real["inject"]]):
        p = tmp_path / f"b{i}.json"
        p.write_text(json.dumps(d))
        files.append(str(p))
    assert run_cli("store", "import", "--store", db, *files[:2]).returncode == 0
    r = run_cli("history", "--store", db, "--check")
    assert r.returncode == 0, r.stdout + r.stderr            # a young history breaks no CI
    assert "not judged yet" in r.stdout and "a change needs 3" in r.stdout
    assert run_cli("store", "import", "--store", db, files[2]).returncode == 0
    r = run_cli("history", "--store", db, "--check")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "rfc/alias/iret/secondaries=1" in r.stdout and "REGRESSED" in r.stdout


@pytest.mark.parametrize("value,why", [("inf", "infinite"), ("nan", "NaN"), ("-1", "negative"),
                                       ("5 parsecs", "not a duration")])
def test_a_duration_that_cannot_end_is_bad_input(run_cli, value, why):
    r = run_cli("run", "--duration", value, "--sites", "10")
    assert r.returncode == 2 and why in _one_line(r)


def test_durations_take_units():
    from pyharness.units import parse_duration
    assert [parse_duration(t) for t in ("90", "90s", "5m", "2h", "1.5h", "250ms")] == \
        [90.0, 90.0, 300.0, 7200.0, 5400.0, 0.25]
    for bad in ("inf", "Infinity", "nan", "-5m", "5x", ""):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_a_run_with_a_unit_runs(run_cli, tmp_path):
    r = run_cli("run", "--duration", "500ms", "--quiet", "--json", "r.json")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "r.json").read_text())["run"]["duration"] == 0.5


def _interrupt_when_running(args, tmp_path, timeout=120):
    """Start pyharness, wait until a worker runs (a child process), then
    Ctrl-C it, as `timeout -s INT` does."""
    p = subprocess.Popen([sys.executable, "-m", "pyharness", *args], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    me = psutil.Process(p.pid)
    assert _wait_for(lambda: any("pyharness._worker" in " ".join(c.cmdline())
                                 for c in me.children(recursive=True)), 60)
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    so, se = p.communicate(timeout=timeout)
    return p.returncode, so, se


def test_ctrl_c_stops_the_selftest_with_130(tmp_path):
    rc, so, se = _interrupt_when_running(["selftest", "--seconds", "30"], tmp_path, timeout=60)
    assert rc == 130, so + se
    assert "selftest: interrupted" in so and "selftest: FAIL" not in so


def test_an_interrupted_run_did_not_pass(tmp_path):
    rc, so, se = _interrupt_when_running(["run", "--duration", "60", "--json", "r.json",
                                          "--junit", "r.xml"], tmp_path)
    assert rc == 130, so + se
    assert "INCOMPLETE (interrupted)" in so and "PASS" not in so
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["verdict"] == "incomplete" and rep["status"] == "interrupted"
    from junitparser import Failure, JUnitXml
    cases = {c.name: c for s in JUnitXml.fromfile(str(tmp_path / "r.xml")) for c in s}
    res = cases["run-completed"].result
    assert res and isinstance(res[0], Failure) and "interrupted" in res[0].message


def test_a_mutant_run_is_a_series_of_its_own():
    from pyharness.history.store import figures_of
    dist = {"count": 3, "p50": 1000, "p99": 2000}
    doc = {"schema": "pyharness.run/1", "scenario": "rfc-native",
           "distributions": {"site_ns": dist}, "config": {"mutant": "none", "protocol": "rfc"}}
    names = {f[0] for f in figures_of(doc)}
    bad = {f[0] for f in figures_of(dict(doc, config={"mutant": "no-int3", "protocol": "rfc"}))}
    posted = {f[0] for f in figures_of(dict(doc, config={"mutant": "none",
                                                         "protocol": "rfc-as-posted"}))}
    assert "run/rfc-native/site_ns/p50" in names
    assert not names & bad and not names & posted and not bad & posted
    assert "run/rfc-native+mutant=no-int3/site_ns/p50" in bad


def test_an_overloaded_worker_is_not_called_hung_without_names(run_cli, tmp_path):
    """The quoted command: 1024 threads at 200 NMIs/s on 2 CPUs asks ~200,000
    signals a second.  It is warned about before the run, and it ends as
    the README promises: finished (overloaded, if late) or hung with its
    stuck threads named; never hung with "stuck: unknown"."""
    r = run_cli("run", "--threads", "1024", "--duration", "5", "--nmi-rate", "200", "--json",
                "r.json", "--quiet", timeout=300)
    assert "warning: this run asks for" in r.stderr and "NMIs a second" in r.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["elapsed_s"] <= 5 + 5 * 5 + 2            # duration + grace x (1 + 4 overload)
    if rep["status"] == "hung":
        assert rep["stuck_threads"], rep["violations"][:2]
        assert "unknown" not in json.dumps([v["detail"] for v in rep["violations"]])
    else:
        assert rep["status"] == "complete", (rep["status"], rep["violations"][:2])


def test_the_signal_warning_names_the_rate():
    from pyharness.platform.capacity import signal_warning
    assert signal_warning(2, 2000, 2) is None                  # the default scenario's rate
    w = signal_warning(1024, 200, 2)
    assert "204,800 NMIs a second" in w and "--nmi-rate" in w


# -- inputs lost or harmed ----------------------------------------------------

def test_store_import_keeps_the_good_files(run_cli, tmp_path, real):
    (tmp_path / "garbage.json").write_text("garbage")
    (tmp_path / "good.json").write_text(json.dumps(real["results"][0]))
    r = run_cli("store", "import", "--store", "s.db", "garbage.json", "good.json")
    assert r.returncode == 2 and "garbage.json is not JSON" in r.stderr
    assert "good.json: result 1" in r.stdout and "1 of 2 imported" in r.stdout
    r = run_cli("store", "info", "--store", "s.db")
    assert "results: 1 (1 bench" in r.stdout


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/full"),
                    reason="/dev/full is writable by root only here")
def test_a_device_is_written_through_never_replaced(run_cli, tmp_path):
    r = run_cli("run", "--sites", "10", "--quiet", "--metrics", "/dev/full")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)            # still the device
    assert r.returncode == 3 and "could not write --metrics /dev/full" in r.stderr
    kept = r.stderr.split("kept in ")[1].split()[0]
    assert "pyharness_pass" in open(kept).read()
    os.unlink(kept)


def test_a_failed_report_write_exits_3_and_names_the_fallback(run_cli, tmp_path):
    if not os.access("/dev/full", os.W_OK):
        pytest.skip("/dev/full is not writable here")
    for opt, what in (("--json", '"schema": "pyharness.run/1"'), ("--junit", "<testsuite")):
        r = run_cli("run", "--sites", "10", "--quiet", opt, "/dev/full")
        assert r.returncode == 3, (opt, r.stderr)
        line = _one_line(r)
        assert f"could not write {opt} /dev/full" in line and "kept in " in line
        kept = line.split("kept in ")[1].strip()
        assert what in open(kept).read()
        os.unlink(kept)


def test_a_symlink_is_written_through_and_a_fifo_is_refused(run_cli, tmp_path):
    (tmp_path / "target.prom").write_text("old\n")
    os.symlink("target.prom", tmp_path / "link.prom")
    r = run_cli("run", "--sites", "10", "--quiet", "--metrics", "link.prom")
    assert r.returncode == 0, r.stderr
    assert os.path.islink(tmp_path / "link.prom")
    assert "pyharness_pass" in (tmp_path / "target.prom").read_text()
    os.mkfifo(tmp_path / "fifo.prom")
    t0 = time.monotonic()
    r = run_cli("run", "--sites", "10", "--quiet", "--metrics", "fifo.prom", timeout=30)
    assert r.returncode == 2 and "is a FIFO" in _one_line(r)
    assert time.monotonic() - t0 < 25                         # refused, not hung on open()


def test_standard_output_takes_the_json(run_cli):
    r = run_cli("run", "--sites", "10", "--json", "-")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["schema"] == "pyharness.run/1"
    assert "PASS (complete)" in r.stderr                        # the summary moved aside


# -- the store's ownership -----------------------------------------------------

def test_a_foreign_sqlite_file_is_refused_and_not_touched(run_cli, tmp_path, real):
    import sqlite3
    db = tmp_path / "theirs.db"
    with sqlite3.connect(db) as c:
        c.execute("create table invoices (id integer primary key, amount real)")
    before = db.read_bytes()
    (tmp_path / "b.json").write_text(json.dumps(real["results"][0]))
    r = run_cli("store", "import", "--store", str(db), "b.json")
    assert r.returncode == 2 and "belongs to something else" in _one_line(r)
    assert db.read_bytes() == before
    (tmp_path / "notadb.txt").write_text("hello\n")
    r = run_cli("history", "--store", "notadb.txt")
    assert r.returncode == 2 and "not an SQLite database" in _one_line(r)


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_an_empty_server_database_is_an_empty_store(run_cli, store_url, real, tmp_path):
    r = run_cli("store", "info", "--store", store_url)
    assert r.returncode == 0, r.stderr
    assert "results: 0" in r.stdout and "initialised on first write" in r.stdout


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_another_applications_alembic_database_is_refused(run_cli, store_url):
    import sqlalchemy as sa
    from pyharness.history.store import resolve_url
    eng = sa.create_engine(resolve_url(store_url))
    with eng.begin() as c:
        c.exec_driver_sql("create table alembic_version (version_num varchar(32) primary key)")
        c.exec_driver_sql("insert into alembic_version values ('ae1027a6acf')")
        c.exec_driver_sql("create table accounts (id int)")
    eng.dispose()
    for cmd in (["store", "info", "--store", store_url], ["history", "--store", store_url]):
        r = run_cli(*cmd)
        assert r.returncode == 2 and "belongs to another application" in _one_line(r), r.stderr


# -- conventions -----------------------------------------------------------------

def test_version_completion_and_man_page(run_cli):
    from pyharness import __version__
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith(f"pyharness {__version__}")
    r = run_cli("completion", "bash")
    assert r.returncode == 0 and "complete" in r.stdout and "--nmi-rate" in r.stdout
    r = run_cli("manpage")
    assert r.returncode == 0 and r.stdout.startswith(".TH PYHARNESS") and "selftest" in r.stdout


def test_help_shows_choices_and_defaults_and_errors_point_to_the_subcommand(run_cli):
    r = run_cli("run", "--help")
    assert "{mprotect,alias,rwx}" in r.stdout and "(default: mprotect)" in r.stdout
    assert "(default: cpuid)" in r.stdout
    r = run_cli("run", "--bogus")
    assert r.returncode == 2 and "(see pyharness run --help)" in _one_line(r)
    r = run_cli("store", "import", "--bogus", "x")
    assert r.returncode == 2 and "(see pyharness store import --help)" in _one_line(r)


def test_quiet_prints_only_the_verdict_line(run_cli):
    r = run_cli("run", "--duration", "0.5", "--quiet")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 1 and "PASS (complete)" in r.stdout
    assert r.stderr == ""


def test_merge_speaks_json(run_cli, tmp_path):
    d = tmp_path / "box-1"
    d.mkdir()
    (d / "summary.json").write_text(json.dumps({
        "schema": "pyharness.campaign/1", "host": "box-1", "steps": [
            {"name": "selftest", "rc": 0, "cmd": ["selftest"], "verdict": "pass", "note": ""}]}))
    r = run_cli("merge", str(tmp_path), "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "pyharness.merge/1" and doc["rows"][0]["boxes"] == ["box-1"]


def test_cpu_lists_are_printed_one_way():
    from pyharness.cpus import describe_cpus
    assert describe_cpus([0, 1]) == "0-1 (2 threads)"
    assert describe_cpus([0, 1, 0, 1]) == "0-1 (4 threads)"


def test_the_progress_line_labels_counts_as_counts(capsys, monkeypatch):
    from types import SimpleNamespace
    from pyharness.runner import _Progress
    view = SimpleNamespace(totals=lambda: {
        "sites_patched": 5, "nmis": 7, "violations": 0,
        "bp_hits": {"primary": 3, "secondary": 4, "primary_nmi": 1, "secondary_nmi": 2}})
    _Progress(True, SimpleNamespace(duration=10.0, sites=None, scenario="rfc-native"))(view, 1.0)
    line = capsys.readouterr().err
    assert "breakpoint hits primary 3 secondary 4 (in NMI 1/2)" in line and "p/s" not in line
