"""The restore record: every piece of global kernel state `pyharness kernel`
changes, written down (and fsync'd) *before* it is changed, at a fixed
per-box path, so that whatever ends the run -- a clean exit, Ctrl-C, a
crash, `kill -9`, a kill of the whole process group or cgroup -- the box
can be put back: by the run itself, by the restorer that outlives it
(restorer.py), or by `pyharness kernel --restore`, which replays the record.
A run refuses to start while an unrestored record exists.

What is fd-scoped (perf events) needs no entry: the kernel removes it when
the process dies.  The entries, replayed newest first:

    {"kind": "sysctl", "path": "/proc/sys/...", "value": "<before>"}
    {"kind": "mount", "target": "/sys/kernel/tracing", "fstype": "tracefs"}
    {"kind": "tracefs-instance", "path": "/sys/kernel/tracing/instances/<name>"}
    {"kind": "uprobe-event", "tracefs": "/sys/kernel/tracing", "group": "...", "event": "..."}
    {"kind": "file", "path": "..."}       (the uprobe target's sites, which the events name)
"""
import json
import os
import subprocess
import time

from .. import errors

DEFAULT_PATH = "/var/lib/pyharness/kernel-restore.json"
SCHEMA = "pyharness.kernel-restore/1"


def path():
    """The record's path: fixed per box; PYHARNESS_KERNEL_RECORD moves it
    (tests, a box whose /var/lib is read-only)."""
    return os.environ.get("PYHARNESS_KERNEL_RECORD") or DEFAULT_PATH


class Record:
    def __init__(self, where=None):
        self.path = where or path()
        self.doc = {"schema": SCHEMA, "pid": os.getpid(), "started": time.time(),
                    "restorer_pid": None, "entries": []}

    @staticmethod
    def pending(where=None):
        """The unrestored record at the path, or None."""
        p = where or path()
        try:
            with open(p) as f:
                doc = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise errors.UsageError(f"{p}: an unreadable restore record ({exc}): inspect it, put the "
                                    "box back by hand, and remove it") from None
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or \
                not isinstance(doc.get("entries"), list):
            raise errors.UsageError(f"{p}: not a pyharness restore record: inspect it and remove it")
        return doc

    def create(self):
        """Claim the path: it must not exist (an unrestored record refuses the run)."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise errors.UnsupportedError(
                f"an unrestored record of an earlier `pyharness kernel` is at {self.path}: run "
                "`pyharness kernel --restore` first") from None
        os.close(fd)
        self.save()
        return self

    def save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.doc, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dfd = os.open(os.path.dirname(self.path), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def add(self, entry):
        """Write the entry down before the change it undoes is made."""
        self.doc["entries"].append(entry)
        self.save()

    def set_restorer(self, pid):
        self.doc["restorer_pid"] = pid
        self.save()

    def restore(self):
        """Undo every entry, newest first; then remove the record."""
        problems = restore_entries(self.doc["entries"])
        if problems:
            raise errors.UnsupportedError("could not restore: " + "; ".join(problems)
                                          + f" (the record stays at {self.path})")
        remove(self.path)


def remove(p):
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass


def append(p, line):
    """One write with O_APPEND and no seek (tracefs refuses Python's "a" mode's seek)."""
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _write(p, value):
    with open(p, "w") as f:
        f.write(value)


def restore_entries(entries):
    """Undo the entries newest first; returns what could not be undone."""
    problems = []
    for e in reversed(entries):
        try:
            kind = e.get("kind")
            if kind == "sysctl":
                with open(e["path"]) as f:
                    now = f.read().strip()
                if now != e["value"]:
                    _write(e["path"], e["value"])
            elif kind == "tracefs-instance":
                if os.path.isdir(e["path"]):
                    try:
                        _write(os.path.join(e["path"], "events", "enable"), "0")
                    except OSError:
                        pass
                    os.rmdir(e["path"])
            elif kind == "uprobe-event":
                ev = os.path.join(e["tracefs"], "events", e["group"], e["event"])
                if os.path.isdir(ev):
                    try:
                        _write(os.path.join(ev, "enable"), "0")
                    except OSError:
                        pass
                    append(os.path.join(e["tracefs"], "uprobe_events"), f"-:{e['group']}/{e['event']}\n")
            elif kind == "file":
                if os.path.exists(e["path"]):
                    os.unlink(e["path"])
            elif kind == "mount":
                if _mounted(e["target"], e["fstype"]):
                    r = subprocess.run(["umount", e["target"]], capture_output=True, text=True)
                    if r.returncode:
                        raise OSError(r.stderr.strip() or f"umount exited {r.returncode}")
            else:
                problems.append(f"an entry of unknown kind {kind!r}")
        except (OSError, KeyError) as exc:
            problems.append(f"{e.get('kind')} {e.get('path') or e.get('target') or e.get('event')}: {exc}")
    return problems


def _mounted(target, fstype):
    try:
        with open("/proc/self/mounts") as f:
            return any(ln.split()[1] == target and ln.split()[2] == fstype for ln in f)
    except OSError:
        return False


def mounted(target, fstype):
    return _mounted(target, fstype)
