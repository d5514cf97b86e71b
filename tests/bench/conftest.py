"""The benchmark suite runs apart from the unit tests: set PYHARNESS_BENCH=1.

    PYHARNESS_BENCH=1 pytest tests/bench --benchmark-autosave
    PYHARNESS_BENCH=1 pytest tests/bench --benchmark-compare --benchmark-compare-fail=median:10%
"""
import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.environ.get("PYHARNESS_BENCH") == "1":
        return
    skip = pytest.mark.skip(reason="benchmarks run with PYHARNESS_BENCH=1 (see README)")
    for item in items:
        if "bench" in item.keywords:
            item.add_marker(skip)
