"""pyharness: a stress tester for runtime code patching on Linux x86_64.

Public API: :class:`Config`, :class:`Engine`, the exceptions in
:mod:`pyharness.errors`, and :func:`pyharness.runner.run_stress` for runs
contained in a worker process.
"""
__version__ = "0.1.0"

from .errors import (BenchRunError, CoreError, DeadlineError, EngineBusyError,  # noqa: F401
                     ExecMemoryRefusedError, PyharnessError, SyncUnavailableError,
                     UnsupportedError, UsageError)


def __getattr__(name):
    # The C core loads on first use, so `pyharness --help` works without it.
    if name in ("Config", "Engine", "SharedView"):
        from . import engine
        return getattr(engine, name)
    raise AttributeError(name)
