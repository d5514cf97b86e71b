"""Shared fixtures.  Tests run on 2-CPU machines and never rely on timing
luck: waits have deadlines and count; nothing asserts a duration."""
import os
import subprocess
import sys

import pytest

from pyharness.cpus import usable_cpus


@pytest.fixture
def two_cpus():
    """Two threads' CPUs: two distinct CPUs where we have them."""
    cpus = usable_cpus()
    return cpus[:2] if len(cpus) >= 2 else [cpus[0], cpus[0]]


@pytest.fixture
def run_cli(tmp_path):
    """Run `python -m pyharness ...` from a scratch directory (so a source
    checkout never shadows the installed package) and return the result."""
    def run(*args, timeout=120, preexec_fn=None):
        return subprocess.run([sys.executable, "-m", "pyharness", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=timeout,
                              preexec_fn=preexec_fn)
    return run


def pytest_report_header(config):
    return f"pyharness tests: usable CPUs {usable_cpus()}, pid {os.getpid()}"
