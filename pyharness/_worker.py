"""The worker process: runs one engine on the shared memfd its parent gave
it, and prints one JSON line with how it ended.

Invoked as `python -m pyharness._worker FD` with the spec as JSON on stdin.
"""
import json
import os
import signal
import sys


def main():
    fd = int(sys.argv[1])
    spec = json.load(sys.stdin)
    # Ctrl-C belongs to the parent: it asks us to stop through the shared region.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # If the parent dies (kill -9), so do we: nobody would stop or read us.
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:
            sys.exit(1)
    except (OSError, AttributeError):
        pass
    from .engine import Config, Engine
    from .errors import PyharnessError
    cfg = dict(spec["config"])
    cfg["kinds"] = tuple(cfg["kinds"])
    try:
        if spec.get("mdwe"):
            from ._ffi import lib
            if lib.ph_set_mdwe() < 0:
                raise PyharnessError("prctl(PR_SET_MDWE) is not supported by this kernel")
        with Engine(Config(**cfg), shm_fd=fd) as eng:
            out = eng.run(sites=spec.get("sites"), duration=spec.get("duration"),
                          nmi_rate=spec.get("nmi_rate", 0.0))
            result = {"ok": True, "status": out.status, "elapsed": out.elapsed,
                      "thread_rc": out.thread_rc, "stuck": out.stuck}
    except PyharnessError as exc:
        result = {"ok": False, "error": {"type": type(exc).__name__, "message": str(exc),
                                         "exit_code": exc.exit_code}}
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
