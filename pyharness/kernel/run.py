"""A `pyharness kernel` run: the targets' items flipped in turn for the
run's duration while drivers on every CPU run the paths behind them, each
flip timed and its IPIs counted, the kernel's health read before and after,
and every global change undone -- by the run, or by the restorer that
outlives it (record.py, restorer.py)."""
import json
import os
import signal
import statistics
import subprocess
import sys
import time

from .. import errors
from ..machine import machine_info
from ..platform import evidence
from ..platform.health import HealthWatch, read_interrupts
from . import record as recmod
from .targets import TARGETS

SCHEMA = "pyharness.kernel/1"
COUNTERS = ("warn_count", "oops_count", "softlockup_count", "hardlockup_count", "rcu_stall_count")
FLIP_GAP_S = 0.01          # between flips: the drivers run the paths meanwhile


def kernel_counters():
    out = {}
    for c in COUNTERS:
        try:
            with open(f"/sys/kernel/{c}") as f:
                out[c] = int(f.read())
        except (OSError, ValueError):
            out[c] = None
    try:
        with open("/proc/sys/kernel/tainted") as f:
            out["tainted"] = int(f.read())
    except (OSError, ValueError):
        out["tainted"] = None
    return out


def _cal_total():
    """(function-call IPIs, TLB shootdowns) summed over every CPU."""
    irq = read_interrupts()
    if not irq:
        return None
    return (sum(irq.get("CAL", {}).values()), sum(irq.get("TLB", {}).values()))


def choose(names):
    if names is None:
        return list(TARGETS.values())
    out = []
    for n in names.split(","):
        n = n.strip()
        if n not in TARGETS:
            raise errors.UsageError(f"--targets: no target {n!r} (known: {', '.join(TARGETS)})")
        out.append(TARGETS[n])
    return out


def dry_run(targets):
    """What a run would touch, without touching it."""
    lines = []
    for t in targets:
        why = t.available()
        if why:
            lines.append(f"{t.name}: not available: {why}")
            continue
        if t.name == "static-key":
            for name, values, _ in t.SYSCTLS:
                p = os.path.join("/proc/sys", *name.split("."))
                if os.path.exists(p):
                    lines.append(f"{t.name}: sysctl {name} flipped {values[0]} <-> {values[1]}, restored")
            lines.append(f"{t.name}: perf software event opened and closed (fd-scoped)")
        elif t.name == "trace-event":
            if not recmod.mounted("/sys/kernel/tracing", "tracefs"):
                lines.append(f"{t.name}: tracefs mounted at /sys/kernel/tracing, unmounted after")
            lines.append(f"{t.name}: a tracefs instance pyharness-<pid>-<n> per event "
                         f"({', '.join(t.EVENTS)}) created, the event enabled and disabled, removed after")
    lines.append(f"restore record: {recmod.path()}")
    return lines


def _spawn_restorer(rec):
    r, w = os.pipe()
    from ..spawn import worker_env
    child = subprocess.Popen([sys.executable, "-m", "pyharness.kernel.restorer", rec.path, str(r)],
                             pass_fds=(r,), start_new_session=True, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **worker_env())
    os.close(r)
    rec.set_restorer(child.pid)
    return child, w


def _dist(xs):
    if not xs:
        return None
    s = sorted(xs)
    return {"count": len(s), "p50": s[len(s) // 2], "p99": s[min(len(s) - 1, int(len(s) * 0.99))],
            "max": s[-1]}


def run(targets, cpus, duration, progress=None):
    if os.geteuid() != 0:
        raise errors.UnsupportedError("pyharness kernel changes global kernel state and needs root")
    pending = recmod.Record.pending()
    if pending is not None:
        raise errors.UnsupportedError(
            f"an unrestored record of an earlier run (pid {pending.get('pid')}) is at "
            f"{recmod.path()}: run `pyharness kernel --restore` first")
    env = {"not_available": []}
    chosen = []
    for t in targets:
        why = t.available()
        if why:
            env["not_available"].append({"target": t.name, "item": "*", "reason": why})
        else:
            chosen.append(t)
    if not chosen:
        raise errors.UnsupportedError("no kernel target is available here: " + "; ".join(
            f"{x['target']}: {x['reason']}" for x in env["not_available"]))
    rec = recmod.Record().create()
    restorer, pipe_w = _spawn_restorer(rec)
    before = kernel_counters()
    health = HealthWatch(cpus).start()
    drivers = []
    items = []
    stopped = {"sig": None}

    def on_signal(sig, frame):
        stopped["sig"] = sig
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    t0 = time.monotonic()
    try:
        for t in chosen:
            for it in t.setup(rec, env):
                items.append((t, it))
        for t in chosen:
            if hasattr(t, "start"):
                t.start(cpus, duration)   # the target's own executors (bpf-jump, uprobe)
        from ..spawn import worker_env
        drivers = [subprocess.Popen([sys.executable, "-m", "pyharness.kernel.drive", str(c),
                                     f"{duration:g}"], stdout=subprocess.PIPE, text=True, **worker_env())
                   for c in cpus]
        stats = {(t.name, it.name): {"lat": [], "ipis": [], "tlb": [], "ok": 0, "bad": [], "flips": 0}
                 for t, it in items}
        base, base_tlb = [], []
        state = {(t.name, it.name): False for t, it in items}
        end = t0 + duration
        k = 0
        while time.monotonic() < end and items and stopped["sig"] is None:
            t, it = items[k % len(items)]
            key = (t.name, it.name)
            on = not state[key]
            if progress:
                progress(f"kernel {t.name} {it.name} {'on' if on else 'off'} "
                         f"({time.monotonic() - t0:.0f}/{duration:g} s)")
            c0 = _cal_total()
            f0 = time.perf_counter()
            it.flip(on)
            f1 = time.perf_counter()
            c1 = _cal_total()
            state[key] = on
            s = stats[key]
            s["flips"] += 1
            s["lat"].append((f1 - f0) * 1e6)
            if c0 is not None and c1 is not None:
                s["ipis"].append(c1[0] - c0[0])
                s["tlb"].append(c1[1] - c0[1])
            ev = it.evidence(on)
            if ev["ok"]:
                s["ok"] += 1
            elif len(s["bad"]) < 5:
                s["bad"].append(f"{'on' if on else 'off'}: {ev['what']}")
            s["last"] = ev["what"]
            # the same reads with no flip between them: the IPIs the box takes anyway
            b0 = _cal_total()
            b1 = _cal_total()
            if b0 is not None and b1 is not None:
                base.append(b1[0] - b0[0])
                base_tlb.append(b1[1] - b0[1])
            k += 1
            time.sleep(FLIP_GAP_S)
        # every item back off (its state before the run: the record holds it)
        for t, it in items:
            if state[(t.name, it.name)]:
                it.flip(False)
    finally:
        for t, it in items:
            if hasattr(it, "close"):
                it.close()
        runs = {}
        for t in chosen:
            if hasattr(t, "stop"):
                runs[t.name] = t.stop()
        outs = []
        for d in drivers:
            try:
                out, _ = d.communicate(timeout=duration + 30)
            except subprocess.TimeoutExpired:
                d.kill()
                out, _ = d.communicate()
            try:
                outs.append(json.loads((out or "").strip().splitlines()[-1]))
            except (ValueError, IndexError):
                outs.append({"cpu": None, "ops": {}, "errors": [{"op": "driver", "expected": "a report",
                                                                  "got": f"exit {d.returncode}"}]})
        restore_problem = None
        try:
            rec.restore()
        except errors.PyharnessError as exc:
            restore_problem = str(exc)
        os.close(pipe_w)            # the restorer finds no record and exits
        try:
            restorer.wait(timeout=10)
        except subprocess.TimeoutExpired:
            restorer.kill()
        for s, h in old.items():
            signal.signal(s, h)
    health.stop()
    after = kernel_counters()
    bl = statistics.median(base) if base else 0
    bt = statistics.median(base_tlb) if base_tlb else 0
    tres = {}
    for t in targets:
        tres[t.name] = {"description": t.description, "available": t in chosen, "items": []}
    for t, it in items:
        s = stats[(t.name, it.name)]
        ipis = [x - bl for x in s["ipis"]]
        tlb = [x - bt for x in s["tlb"]]
        tres[t.name]["items"].append({
            "name": it.name, "patches": it.patches, "flips": s["flips"],
            "latency_us": _dist(s["lat"]),
            "ipis_per_flip": round(statistics.median(ipis), 1) if ipis else None,
            "tlb_shootdowns_per_flip": round(statistics.median(tlb), 1) if tlb else None,
            "evidence_ok": s["ok"], "evidence_bad": s["bad"], "evidence_last": s.get("last")})
    violations = []
    for name, t in tres.items():
        for it in t["items"]:
            if it["evidence_bad"]:
                violations.append({"invariant": "kernel-flip", "target": name, "item": it["name"],
                                   "detail": f"{name} {it['name']}: the flip did not take effect "
                                             f"{it['flips'] - it['evidence_ok']} of {it['flips']} times: "
                                             + "; ".join(it["evidence_bad"])})
    for name, r in runs.items():
        tres[name]["executions"] = r["runs"]
        if r.get("sequence") is not None:
            # the kernel's writes to our text as our sampler saw them
            tres[name]["write_sequence"] = r["sequence"][:200]
        for e in r["errors"]:
            violations.append({"invariant": "kernel-paths", "target": name, "item": None, "detail": e})
    for o in outs:
        for e in o.get("errors", []):
            violations.append({"invariant": "kernel-paths", "target": None, "item": None,
                               "detail": f"driver on CPU {o.get('cpu')}: {e['op']} expected {e['expected']}, "
                                         f"got {e['got']}"})
    for c in COUNTERS + ("tainted",):
        if before.get(c) is not None and after.get(c) is not None and after[c] != before[c]:
            violations.append({"invariant": "kernel-health", "target": None, "item": None,
                               "detail": f"/sys/kernel/{c if c != 'tainted' else '../proc/sys/kernel/tainted'}"
                                         f" went from {before[c]} to {after[c]} during the run"})
    hrep = health.report()
    for v in health.violations(hrep):
        violations.append({"invariant": "kernel-health", "target": None, "item": None, "detail": v["detail"]})
    if restore_problem:
        violations.append({"invariant": "kernel-restore", "target": None, "item": None,
                           "detail": restore_problem})
    return {"schema": SCHEMA, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "duration_s": duration, "elapsed_s": round(time.monotonic() - t0, 3),
            "interrupted": stopped["sig"] is not None, "cpus": list(cpus),
            "targets": tres, "not_available": env["not_available"],
            "baseline_ipis_per_read": bl,
            "drivers": [{"cpu": o.get("cpu"), "ops": o.get("ops", {}), "errors": len(o.get("errors", []))}
                        for o in outs],
            "counters": {"before": before, "after": after}, "health": hrep,
            "violations": violations, "verdict": "fail" if violations else "pass",
            "restored": restore_problem is None,
            "replay": f"pyharness kernel --targets {','.join(t.name for t in chosen)} --duration {duration:g}",
            "evidence": evidence.collect(cpus), "machine": machine_info()}


def snapshot():
    """Everything a run may change, as it is now: the targets' sysctls,
    tracefs mounts, tracefs instances, the enabled events, uprobe_events and
    the kernel's BPF objects (the tests hold a run to leaving it as it found
    it)."""
    from .targets import TRACEFS, StaticKeys
    from .bpf import object_ids
    out = {"sysctls": {}, "tracefs_mounts": [], "instances": None, "uprobe_events": None,
           "events_enabled": None, "bpf": object_ids()}
    for name, _, _ in StaticKeys.SYSCTLS:
        p = os.path.join("/proc/sys", *name.split("."))
        try:
            with open(p) as f:
                out["sysctls"][name] = f.read().strip()
        except OSError:
            out["sysctls"][name] = None
    with open("/proc/self/mounts") as f:
        out["tracefs_mounts"] = sorted(ln.split()[1] for ln in f if ln.split()[2] == "tracefs")
    if os.path.isdir(os.path.join(TRACEFS, "instances")):
        out["instances"] = sorted(os.listdir(os.path.join(TRACEFS, "instances")))
        for key, name in (("uprobe_events", "uprobe_events"), ("events_enabled", "set_event")):
            try:
                with open(os.path.join(TRACEFS, name)) as f:
                    out[key] = f.read()
            except OSError:
                pass
    return out


def restore_pending():
    """`pyharness kernel --restore`: replay an unrestored record."""
    doc = recmod.Record.pending()
    if doc is None:
        return None
    rpid = doc.get("restorer_pid")
    if rpid:
        try:
            with open(f"/proc/{rpid}/cmdline", "rb") as f:
                alive = b"pyharness.kernel.restorer" in f.read()
        except OSError:
            alive = False
        if alive:
            raise errors.UnsupportedError(f"the restorer of that run (pid {rpid}) is still alive: it "
                                          "restores when the run ends")
    problems = recmod.restore_entries(doc["entries"])
    if problems:
        raise errors.UnsupportedError("could not restore: " + "; ".join(problems)
                                      + f" (the record stays at {recmod.path()})")
    recmod.remove(recmod.path())
    return doc
