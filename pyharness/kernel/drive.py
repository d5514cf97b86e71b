"""A driver of the paths behind the kernel's keys, one per CPU (python -m
pyharness.kernel.drive CPU SECONDS): fork and exit (delayacct, the
scheduler's keys), short sleeps (timers, timer migration), loopback UDP
(RPS/RFS), pipe round trips (context switches: perf software events,
sched_switch).  Every syscall's result is checked; one JSON line at the
end: {"cpu", "ops": {...}, "errors": [...]}.  A wrong result is a finding
about the kernel, with what was expected and what came back."""
import json
import os
import socket
import sys
import time


def main(argv):
    cpu, seconds = int(argv[0]), float(argv[1])
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, 9)        # PR_SET_PDEATHSIG, SIGKILL: no orphan outlives the run
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:
        return 0
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        pass
    ops = {"fork": 0, "sleep": 0, "udp": 0, "pipe": 0}
    errors = []

    def bad(what, want, got):
        if len(errors) < 20:
            errors.append({"op": what, "expected": want, "got": got})

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(1.0)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r, w = os.pipe()
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
        pid = os.fork()
        if pid == 0:
            os._exit(42)
        _, status = os.waitpid(pid, 0)
        if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 42:
            bad("fork", "exit 42", status)
        ops["fork"] += 1
        t0 = time.monotonic()
        time.sleep(50e-6)
        if time.monotonic() - t0 < 50e-6:
            bad("sleep", ">= 50 us", time.monotonic() - t0)
        ops["sleep"] += 1
        payload = f"pyharness {cpu} {n}".encode()
        tx.sendto(payload, rx.getsockname())
        try:
            got = rx.recv(256)
            if got != payload:
                bad("udp", payload.decode(), got.decode("latin-1"))
        except socket.timeout:
            bad("udp", payload.decode(), "nothing within 1 s")
        ops["udp"] += 1
        os.write(w, b"x")
        if os.read(r, 1) != b"x":
            bad("pipe", "x", "?")
        ops["pipe"] += 1
    print(json.dumps({"cpu": cpu, "ops": ops, "errors": errors}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
