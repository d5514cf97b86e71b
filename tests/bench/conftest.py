"""The benchmark suite runs apart from the unit tests: its tests carry the
`bench` marker and are skipped unless PYHARNESS_BENCH=1 (an environment
variable, since a command-line option registered here would be unknown to
`pytest tests` run from the root).  See tests/bench/README.md.

    PYHARNESS_BENCH=1 pytest tests/bench --benchmark-autosave
    PYHARNESS_BENCH=1 pytest tests/bench --benchmark-compare --benchmark-compare-fail=median:10%
"""
import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.environ.get("PYHARNESS_BENCH") == "1":
        return
    skip = pytest.mark.skip(reason="benchmarks run only with PYHARNESS_BENCH=1 (tests/bench/README.md)")
    for item in items:
        if item.get_closest_marker("bench") is not None:
            item.add_marker(skip)
