"""The command line: reports, listings, and every bad input's one line."""
import json
import subprocess
import sys
import os

import pytest

from pyharness.cpus import usable_cpus
from pyharness.engine import available_syncs


def stderr_line(proc):
    """The one line a bad input must print; fails the test if there is more."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_run_sites_writes_a_passing_report(run_cli, tmp_path):
    p = run_cli("run", "--sites", "2000", "--json", "r.json", "--quiet")
    assert p.returncode == 0, p.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["schema"] == "pyharness.run/1"
    assert rep["verdict"] == "pass" and rep["violations"] == []
    assert rep["totals"]["sites_patched"] == 2000
    assert {"primary", "secondary", "primary_nmi", "secondary_nmi"} <= set(rep["totals"]["bp_hits"])
    assert rep["config"]["sites"] == 2000 and rep["machine"]["cpu_count"] >= 1
    assert rep["distributions"]["site_ns"]["count"] == 2000
    assert rep["replay"].startswith("pyharness run ")
    assert "PASS" in p.stdout


def test_console_script_and_module_are_the_same_cli(run_cli):
    p = run_cli("scenarios")
    assert p.returncode == 0
    for name in ("rfc-native", "upstream-emulated", "batch", "mixed"):
        assert name in p.stdout


def test_replay_command_reproduces_the_schedule(run_cli, tmp_path):
    p = run_cli("run", "--sites", "300", "--seed", "7", "--nmi-rate", "0", "--json", "a.json", "--quiet")
    assert p.returncode == 0, p.stderr
    a = json.loads((tmp_path / "a.json").read_text())
    args = a["replay"].split()[1:] + ["--json", "b.json", "--quiet"]
    p = run_cli(*args)
    assert p.returncode == 0, p.stderr
    b = json.loads((tmp_path / "b.json").read_text())
    assert a["config"] == b["config"]
    assert a["totals"]["sites_patched"] == b["totals"]["sites_patched"] == 300


@pytest.mark.parametrize("args,code,needle", [
    (["run", "--cpus", "999"], 2, "CPU 999 does not exist"),
    (["run", "--cpus", "0-x"], 2, "bad CPU list"),
    (["run", "--cpus", "3-1"], 2, "bad CPU list"),
    (["run", "--duration", "-1"], 2, "must not be negative"),
    (["run", "--sites", "0"], 2, "at least 1"),
    (["run", "--poke", "bogus"], 2, "invalid choice: 'bogus' (choose from 'mprotect'"),
    (["run", "--sync", "bogus"], 2, "argument --sync: invalid choice"),
    (["run", "--bp", "bogus"], 2, "argument --bp: invalid choice"),
    (["run", "--scenario", "nope"], 2, "unknown scenario"),
    (["run", "--mutant", "nope"], 2, "unknown mutant"),
    (["run", "--site-kinds", "block", "--bp", "emulate"], 2, "--bp native"),
    (["run", "--nmi-rate", "-5"], 2, "must not be negative"),
    (["run", "--primary", "999"], 2, "not in the CPU list"),
    (["frobnicate"], 2, "invalid choice"),
])
def test_bad_input_exits_2_with_one_line(run_cli, args, code, needle):
    p = run_cli(*args, "--quiet") if args[0] == "run" else run_cli(*args)
    assert p.returncode == code, (p.returncode, p.stderr)
    assert needle in stderr_line(p)


@pytest.mark.skipif(len(usable_cpus()) < 2, reason="needs a second CPU to exclude")
def test_cpu_outside_the_affinity_mask(run_cli):
    first, other = usable_cpus()[0], usable_cpus()[1]
    p = run_cli("run", "--cpus", str(other), "--quiet",
                preexec_fn=lambda: os.sched_setaffinity(0, {first}))
    assert p.returncode == 2
    assert "outside this process's affinity mask" in stderr_line(p)


@pytest.mark.skipif("serialize" in available_syncs(), reason="this CPU has SERIALIZE")
def test_missing_serialize_exits_3_never_sigill(run_cli):
    p = run_cli("run", "--sync", "serialize", "--sites", "10", "--quiet")
    assert p.returncode == 3
    assert "--sync cpuid" in stderr_line(p)


@pytest.mark.parametrize("poke", ["mprotect", "rwx"])
def test_mdwe_refuses_exec_memory_and_names_the_alias_method(run_cli, poke):
    p = run_cli("run", "--mdwe", "--poke", poke, "--sites", "10", "--quiet")
    assert p.returncode == 3, p.stderr
    assert "--poke alias" in stderr_line(p)


def test_alias_method_works_under_mdwe(run_cli):
    p = run_cli("run", "--mdwe", "--poke", "alias", "--sites", "500", "--quiet")
    assert p.returncode == 0, p.stderr


def test_one_cpu_alone_runs_primary_and_secondary_on_it(run_cli, tmp_path):
    """--cpus 0 alone (as on a one-CPU box or under taskset -c 0) works: the
    primary and a secondary share the CPU."""
    out = tmp_path / "r.json"
    p = run_cli("run", "--cpus", str(usable_cpus()[0]), "--duration", "1", "--quiet",
                "--json", str(out))
    assert p.returncode == 0, p.stdout + p.stderr
    rep = json.loads(out.read_text())
    assert rep["config"]["cpus"] == [usable_cpus()[0]] * 2
    assert f"({2} threads)" in p.stdout


def test_one_cpu_through_taskset_works_with_no_options(run_cli):
    p = run_cli("run", "--duration", "1", "--quiet",
                preexec_fn=lambda: os.sched_setaffinity(0, {usable_cpus()[0]}))
    assert p.returncode == 0, p.stdout + p.stderr


def test_a_single_thread_is_refused(run_cli):
    p = run_cli("run", "--threads", "1", "--quiet")
    assert p.returncode == 2
    assert "at least one other thread" in stderr_line(p)


def test_bp_emulate_alone_uses_the_kinds_emulation_can_run(run_cli, tmp_path):
    out = tmp_path / "r.json"
    p = run_cli("run", "--bp", "emulate", "--duration", "1", "--quiet", "--json", str(out))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "block" not in json.loads(out.read_text())["config"]["kinds"]


@pytest.mark.parametrize("opt", ["--json", "--log", "--junit", "--metrics"])
def test_output_paths_are_checked_before_the_run(run_cli, tmp_path, opt):
    p = run_cli("run", "--duration", "30", opt, str(tmp_path / "missing" / "r.out"), timeout=20)
    assert p.returncode == 2 and "does not exist" in stderr_line(p)


def test_a_report_that_cannot_be_written_at_the_end_goes_to_the_temp_dir(run_cli, tmp_path):
    """The directory exists when the run starts and is gone when it ends:
    the report is not lost, the error line says where it is."""
    d = tmp_path / "going"
    d.mkdir()
    script = (f"import os, sys, shutil; from pyharness import runner; real = runner.run_stress\n"
              f"def run_stress(*a, **k):\n    rep = real(*a, **k); shutil.rmtree({str(d)!r}); return rep\n"
              f"runner.run_stress = run_stress\n"
              f"from pyharness.cli import main; sys.exit(main(['run', '--duration', '0.5', '--quiet', "
              f"'--json', {str(d / 'r.json')!r}]))")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                       cwd=tmp_path)
    assert p.returncode == 3, p.stdout + p.stderr      # the environment failed, not the run
    line = stderr_line(p)
    assert "could not write --json" in line and "it is kept in " in line
    alt = line.split("it is kept in ")[1].strip()
    assert json.loads(open(alt).read())["verdict"] == "pass"
    os.unlink(alt)
