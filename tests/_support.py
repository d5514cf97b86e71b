"""Helpers the test modules import (conftest.py holds the fixtures; a
module named conftest is ambiguous once tests/bench/ is collected too)."""


def one_line(proc):
    """The one line on stderr a bad input must print; fails the test if there
    is more, or a traceback."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]
