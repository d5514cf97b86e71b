"""A log that survives the box: JSON Lines written while the run goes on.

A start record (the configuration and the evidence), a progress record every
second, each violation as soon as the parent sees it, and an end record.
Every line is flushed as it is written (a kill -9 of pyharness keeps all of
them: they are in the kernel's page cache) and the file is synced to disk at
least every SYNC_S seconds and at the end (a reboot keeps all but the last
few seconds).  Schema: "pyharness.log/1" on every record.
"""
import errno
import json
import os
import sys
import time

from ..documents import KINDS

SCHEMA = KINDS["log"]
SYNC_S = 2.0


class RunLog:
    def __init__(self, path):
        self.path = path
        self.f = open(path, "a", buffering=1)
        self.last_sync = time.monotonic()
        self.last_progress = 0.0
        self.logged = set()      # violations already written (by key)

    def _sync(self):
        try:
            os.fsync(self.f.fileno())
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EROFS):
                raise       # a pipe, a tty, /dev/null: nothing to sync

    def write(self, rec, sync=False):
        if self.f is None:
            return
        rec = {"schema": SCHEMA, "ts": time.time(), **rec}
        try:
            self.f.write(json.dumps(rec, default=str) + "\n")
            self.f.flush()
            now = time.monotonic()
            if sync or now - self.last_sync >= SYNC_S:
                self._sync()
                self.last_sync = now
        except OSError as exc:
            # the disk filled, the file went away: the run and its report go
            # on; the log stops, and says so once
            sys.stderr.write(f"pyharness: error: --log {self.path}: {exc.strerror}; "
                             f"the log stops here, the run goes on\n")
            try:
                self.f.close()
            except OSError:
                pass
            self.f = None

    def start(self, spec, evidence, pid):
        # Each run (each segment of a mixed scenario) counts its time from
        # 0: a progress clock left at the last segment's end would keep the
        # next segments silent.
        self.last_progress = 0.0
        self.write({"type": "start", "scenario": spec.scenario, "worker_pid": pid,
                    "config": {**spec.config.to_dict(), "kinds": list(spec.config.kinds)},
                    "run": {"sites": spec.sites, "duration": spec.duration,
                            "nmi_rate": spec.nmi_rate},
                    "replay": " ".join(spec.argv) if spec.argv else None,
                    "evidence": evidence}, sync=True)

    def progress(self, elapsed, totals):
        if elapsed - self.last_progress < 1.0:
            return
        self.last_progress = elapsed
        self.write({"type": "progress", "elapsed_s": round(elapsed, 3),
                    "sites_patched": totals["sites_patched"], "nmis": totals["nmis"],
                    "bp_hits": totals["bp_hits"], "violations": totals["violations"]})

    def violations(self, items, elapsed):
        for v in items:
            key = (v["invariant"], v.get("detail"), v.get("ts_ns"), v.get("thread"))
            if key in self.logged:
                continue
            self.logged.add(key)
            self.write({"type": "violation", "elapsed_s": round(elapsed, 3),
                        **{k: v.get(k) for k in ("invariant", "detail", "thread", "cpu", "role",
                                                 "site", "seq", "state", "ctx", "source")}},
                       sync=True)

    def end(self, rep):
        self.violations(rep.get("violations", []), rep.get("elapsed_s", 0.0))
        self.write({"type": "end", "verdict": rep["verdict"], "status": rep["status"],
                    "exit_code": rep["exit_code"], "elapsed_s": rep["elapsed_s"],
                    "violation_counts": rep["violation_counts"],
                    "sites_patched": rep["totals"].get("sites_patched")}, sync=True)

    def close(self):
        if self.f is None:
            return
        try:
            self._sync()
        except OSError:
            pass
        finally:
            self.f.close()
            self.f = None
