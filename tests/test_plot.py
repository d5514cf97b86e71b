"""`pyharness plot`: bad input is one line and exit 2; with matplotlib
installed (an optional extra), a run report is drawn."""
import json
import os
import subprocess
import sys

import pytest

def plot(*args, cwd):
    return subprocess.run([sys.executable, "-m", "pyharness", "plot", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_plot_rejects_what_is_not_a_pyharness_result(tmp_path):
    (tmp_path / "other.json").write_text(json.dumps({"schema": "something/1"}))
    (tmp_path / "broken.json").write_text("{")
    for name in ("other.json", "broken.json", "missing.json"):
        r = plot(name, "--out", "plots", cwd=tmp_path)
        assert r.returncode == 2, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "Traceback" not in r.stderr
        assert name in r.stderr
    assert not (tmp_path / "plots").exists()


def test_plot_draws_a_run_report(tmp_path, run_cli):
    pytest.importorskip("matplotlib")
    r = run_cli("run", "--duration", "1", "--quiet", "--json", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    r = plot("r.json", "--out", "plots", "--format", "svg", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    made = r.stdout.split()
    assert made == [os.path.join("plots", "r-cdf.svg"), os.path.join("plots", "r-distributions.svg")]
    assert (tmp_path / made[0]).stat().st_size > 0
