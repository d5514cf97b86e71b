"""The restorer that outlives `pyharness kernel` (python -m
pyharness.kernel.restorer RECORD FD): started in a session of its own, so
that neither Ctrl-C at the terminal nor a kill of pyharness's process group
reaches it; it blocks on a pipe whose write end only pyharness holds, and
when that closes -- a clean exit, a crash, `kill -9` -- it replays the
record if it is still there (a clean exit removed it first).  A kill of the
whole cgroup (systemd, Slurm, Kubernetes) takes it too: then
`pyharness kernel --restore` replays the record, and the next run refuses
to start until someone does."""
import os
import signal
import sys


def main(argv):
    where, fd = argv[0], int(argv[1])
    # Hang-ups and terminal signals are not ours to die of.
    for s in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGPIPE):
        signal.signal(s, signal.SIG_IGN)
    while True:
        try:
            if not os.read(fd, 4096):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    from .record import Record, remove, restore_entries
    doc = Record.pending(where)
    if doc is None:
        return 0
    if os.environ.get("PYHARNESS_KERNEL_RESTORER_FAULT") == "skip":
        return 4            # a fault injected by the tests: the record stays
    problems = restore_entries(doc["entries"])
    if problems:
        sys.stderr.write("pyharness kernel restorer: " + "; ".join(problems) + "\n")
        return 1
    remove(where)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
