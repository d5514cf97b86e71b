"""The run report: a versioned JSON document and a short human summary."""
import shlex


from .checker import INVARIANTS
from .engine import ROLE_NAMES, WHERE_NAMES

from .documents import KINDS

SCHEMA = KINDS["run"]


CDF_POINTS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0)


def distribution(samples):
    """count, min, p50, p99, max of a list of numbers (nearest rank), and
    the CDF at CDF_POINTS as [[fraction, value], ...] for the charts."""
    if not samples:
        return {"count": 0, "min": None, "p50": None, "p99": None, "max": None, "cdf": []}
    s = sorted(samples)
    n = len(s)

    def rank(p):
        return s[min(n - 1, max(0, int(round(p * n + 0.5)) - 1))]
    return {"count": n, "min": s[0], "p50": rank(0.50), "p99": rank(0.99), "max": s[-1],
            "cdf": [[q, s[0] if q == 0 else rank(q)] for q in CDF_POINTS]}


def distributions(view):
    d = {"site_ns": distribution(view.series("site_ns")),
         "ack_wait_ns": {st: distribution(view.series("ack_ns_" + st))
                         for st in ("SYNC_0", "SYNC_1", "SYNC_2", "SYNC_DONE")}}
    bp = []
    for i in range(view.nthreads):
        bp.extend(view.bp_samples(i))
    d["bp_handler_ns"] = distribution(bp)
    if len(view.series("batch_ns")):
        d["batch_ns"] = distribution(view.series("batch_ns"))
    return d


def thread_table(view, config):
    roles = config.roles()
    out = []
    for i, c in enumerate(view.all_counters()):
        out.append({"thread": i, "cpu": config.cpus[i], "role": ROLE_NAMES.get(roles[i]),
                    "where": WHERE_NAMES.get(c["where"], c["where"]), **{
                        k: c[k] for k in ("exec", "exec_torn", "bp_hits", "bp_hits_nmi", "bp_native",
                                          "bp_emulated", "bp_late", "bp_foreign", "bp_depth_max",
                                          "acks", "acks_bp", "sync_calls", "wait_ns", "nmis",
                                          "nmi_execs", "sites_patched", "verified")}})
    return out


def checks_section(view, config):
    """What each check rested on in this run, and what it could not see."""
    ev = view.checks()
    gaps = [
        "whether a CPU that ran its serializing instruction then fetched stale bytes is visible "
        "only if it returns a wrong value (known-variant, schedule): the hardware's own "
        "instruction fetch cannot be read from user space",
        "sampled, so that the observer costs a site little: a secondary reads back one site "
        "of one state every 16 rounds (rotating); the primary reads back up to 32 sites of "
        "every round at SYNC_DONE (rotating through larger batches) and up to 8 sites of "
        "SYNC_0..2 on one round in 4, as its write guard checks thread-context writes (the "
        "breakpoint path's writes always); the run view is swept every 16th round and at the "
        "end. An ordering bug that hits every round is caught on the first checked one",
        "the text's protection is read from /proc/self/maps after a round at most every 10 ms "
        "and at the end, not inside every window",
    ]
    if config.sync == "serialize":
        gaps.append("SERIALIZE has no output: each call's evidence is only that its wrapper ran; "
                    "that the instruction is in the build rests on its cost at start")
    if config.secondary_sync == "membarrier":
        gaps.append("membarrier(SYNC_CORE): the kernel's return value is the evidence that every "
                    "CPU running us was serialized; the IPI itself is not observable from user space")
        if ev.get("membarrier_registrations") == "not checked":
            gaps.append("membarrier registrations: not checked (MEMBARRIER_CMD_GET_REGISTRATIONS "
                        "needs Linux 6.3)")
    gaps.append("the primary's breakpoint path is held to its own sync_one() after it writes; "
                "whether the return from the signal handler serializes too (it probably does on "
                "x86 Linux) is not what the protocol may rely on, and is not observed")
    if config.poke == "rwx":
        gaps.append("--poke rwx promises no protection: the text stays writable and executable")
    return {"evidence": ev, "not_observable": gaps}


def replay_command(argv):
    return " ".join(shlex.quote(a) for a in argv)


def _cpus(cpus):
    from .cpus import describe_cpus
    return describe_cpus(cpus)


def summary_text(rep):
    t = rep["totals"]
    bp = t["bp_hits"]
    lines = [
        f"pyharness {rep['scenario']}: {rep['verdict'].upper()} ({rep['status']}) "
        f"in {rep['elapsed_s']:.2f} s on CPUs {_cpus(rep['config']['cpus'])}",
        f"  sites patched {t['sites_patched']}, site executions {sum(t['exec'])}, "
        f"NMIs {t['nmis']}",
        f"  breakpoint hits: primary {bp['primary']} (in NMI {bp['primary_nmi']}), "
        f"secondary {bp['secondary']} (in NMI {bp['secondary_nmi']}); "
        f"native {bp['native']}, emulated {bp['emulated']}, late {bp['late']}",
    ]
    if rep["verdict"] == "incomplete":
        lines.insert(1, f"  no violation in the {rep['elapsed_s']:.2f} s that ran, but the run was "
                        "interrupted before its end: it did not pass")
    reduced = rep.get("stress_reduced") or []
    if reduced:
        bys = {r.get("by", "box") for r in reduced}
        lines[0] += ", stress reduced by " + " and ".join(
            w for b, w in (("box", "the box"), ("stress", "competing stress")) if b in bys)
        # one line per leading cause: the conditions it reduced, and what to change
        by = {}
        for r in reduced:
            top = r["causes"][0] if r["causes"] else {"cause": "?", "what": "unknown", "count": 0}
            by.setdefault((top["cause"], top["what"], r["advice"]), []).append(r)
        for at, ((_, what, advice), rs) in enumerate(by.items(), 1):
            got = ", ".join(f"{r['name']} {r['delivered']} of {r['configured']:.0f}" for r in rs)
            by = "competing stress" if rs[0].get("by") == "stress" else "the box"
            lines.insert(at, f"  stress reduced by {by} (no defect found; not the stress asked for): "
                             f"{got} delivered: {what}; for the full stress, {advice or 'a larger box'}")
    d = rep.get("distributions", {}).get("site_ns", {})
    if d.get("count"):
        lines.append(f"  per-site patch time: p50 {d['p50'] / 1000:.1f} us, p99 {d['p99'] / 1000:.1f} us, "
                     f"max {d['max'] / 1000:.1f} us ({d['count']} samples)")
    ck = rep.get("checks", {}).get("evidence")
    if ck:
        lines.append(f"  checked: {ck['flips_observed']}/{ck['flips_scheduled']} scheduled flips read back "
                     f"as the new variant at SYNC_DONE, "
                     f"{ck['states_read_back']} states read back by secondaries, "
                     f"{ck['executions_held_to_schedule']} executions held to the schedule, "
                     f"{ck['serializations_proven']} serializations proven, "
                     f"{ck['protection_checks']} protection reads")
    pg = rep.get("progress") or {}
    if pg.get("bound_s"):
        still = pg["longest_standstill_s"]
        lines.append("  progress: the published state "
                     + (f"stood still at most {still:g} s" if still else
                        "never stood still across two of the supervisor's looks")
                     + f" (net of host steal and time off CPU; bound {pg['bound_s']:g} s from this run's rounds)")
        w = (pg.get("longest_waits") or [None])[0]
        if w:
            lines.append(f"  longest wait stall: thread {w['thread']} {w['net_s']:g} s in {w['where']}, "
                         f"{w['awaited']} making no progress (net of host steal and its time off CPU)")
    cov = rep.get("coverage") or {}
    if cov:
        # per condition: delivered / could deliver / configured
        short = [k for k, v in cov.items() if v.get("judged") == "harness-short"]
        nmis = [v for k, v in cov.items() if k.startswith("nmis/")]
        parts = []

        def three(d, c, f):
            return f"{d:.0f}/{c:.0f}/{f:.0f}"
        def dcf(v):     # a report from before the accounting has counted/expected only
            return (v.get("delivered", v["counted"]), v.get("could", v["expected"]),
                    v.get("configured", v["expected"]))
        if nmis:
            parts.append("NMIs " + three(*(sum(dcf(v)[i] for v in nmis) for i in range(3)))
                         + f" over {len(nmis)} threads")
        for k, v in cov.items():
            if not k.startswith("nmis/"):
                parts.append(f"{k} {three(*dcf(v))}")
        lines.append("  stress coverage (delivered/could deliver/configured): " + ", ".join(parts)
                     + (f" -- {len(short)} short of what the box could deliver" if short else ""))
    h = rep.get("health") or {}
    logs = [h.get("kernel_log")] if "kernel_log" in h else [x.get("kernel_log") for x in
                                                            h.get("segments", []) if x]
    unchecked = [k.get("reason") for k in logs if k and not k.get("checked")]
    if unchecked:
        lines.append(f"  kernel log: NOT CHECKED ({unchecked[0]})")
    elif logs:
        lines.append("  kernel log: checked, " + (f"{sum(len(k.get('matches', [])) for k in logs)} "
                                                  f"error line(s)" if any(k.get('matches') for k in logs)
                                                  else "clean"))
    if rep["violations"]:
        lines.append(f"  {sum(rep['violation_counts'].values())} violation(s):")
        for name, n in rep["violation_counts"].items():
            first = next(v for v in rep["violations"] if v["invariant"] == name)
            where = f" [thread {first['thread']} cpu {first['cpu']}]" if first.get("thread") is not None else ""
            lines.append(f"    {name} x{n}: {first['detail']}{where}")
    dg = rep.get("diagnosis")
    if dg:
        for f in dg["findings"]:
            lines.append(f"  finding {f['id']}: {f['evidence']}")
            lines.append(f"    from the RFC's step: {f['rfc_step']}")
        if any(w["where"] not in ("exited", "verify") for w in dg["threads"]) and rep["status"] != "complete":
            pub = dg["published"]
            head = f"  at the end: {pub['state']} of seq {pub['seq']} published"
            if dg.get("map") is not None:
                head += f"; ack map {dg['map']} ({dg['map_weight']} of num_acks {dg['num_acks']})"
            lines.append(head)
            for w in dg["threads"]:
                ls = w["last_seen"]
                lines.append(f"    thread {w['thread']} ({w['role']}, cpu {w['cpu']}): {w['where']}; "
                             f"last saw {ls['state']} of seq {ls['seq']}"
                             + (f"; bit {'set' if w['bit_in_map'] else 'clear'}"
                                if dg.get("map") is not None else ""))
    if rep.get("crash"):
        c = rep["crash"]
        lines.append(f"  worker crash: signal {c['signo']} at {c['rip']:#x} site {c['site']} bytes {c['bytes']}")
    rt = rep.get("retest")
    if rt:
        r = rt["reproduction"]
        tt = ", ".join(f"{t:.2f}" for t in r["times_to_failure_s"][:8])
        lines.append(f"  retest: {r['rate']} (times to failure, s: {tt})")
        lines.append(f"  localization: {rt['localization']['verdict']}")
        for x in rt["localization"]["runs"]:
            lines.append(f"    {x['move']:24s} CPUs {x['cpus']:10s} "
                         f"{'FAIL ' + ','.join(x['invariants']) if x['failed'] else 'pass'}")
    if rep["verdict"] == "fail":
        lines.append(f"  replay: {rep['replay']}")
    return "\n".join(lines)


def invariant_table(counts):
    """Every invariant, its description and how often it was violated."""
    return {name: {"description": desc, "violations": counts.get(name, 0)} for name, desc in INVARIANTS}


def finite(v):
    """A finite number read from a document, or None (a bool, a string, a
    NaN, an infinity)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return v if v == v and abs(v) != float("inf") else None


def as_dict(v):
    """A document's field that must be an object: {} when it is not one."""
    return v if isinstance(v, dict) else {}


def write_report(rep, path, option="--json"):
    """Write the run report by the output rules (pyharness/outputs.py); if
    that fails now (the disk filled, /dev/full), it goes to a file in the
    temporary directory, named in one line.  Returns True if it went where
    it was asked (False: the caller exits 3)."""
    from . import documents
    return documents.write(rep, path, option)


def write_json(rep, path):
    from . import documents
    from .outputs import write_file
    write_file(path, documents.dumps(rep))
