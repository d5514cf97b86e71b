"""`pyharness merge DIR...`: campaign directories from many boxes, merged
into one table by CPU model, microcode and kernel: which boxes and CPUs
failed, how, and how often.

A DIR is a campaign directory (it holds summary.json) or any directory
above campaign directories (searched to any depth).
"""
import os
import re

from ..documents import KINDS
from ..errors import UsageError

SCHEMA = KINDS["merge"]


def find_summaries(dirs, allow_none=False):
    out = []
    for d in dirs:
        if not os.path.isdir(d):
            raise UsageError(f"{d}: not a directory")
        for root, _, files in os.walk(d):
            if "summary.json" in files:
                out.append(os.path.join(root, "summary.json"))
    if not out and not allow_none:
        raise UsageError(f"no campaign directory (summary.json) under {', '.join(dirs)}")
    return sorted(out)


def _fleet_status(dirs):
    """{host: status} from the fleet-status.json files the engines leave
    beside each host's results ("ok", "install failed", "timed out", ...)."""
    import json
    out = {}
    for d in dirs:
        for root, _, files in os.walk(d):
            if "fleet-status.json" in files:
                try:
                    with open(os.path.join(root, "fleet-status.json")) as f:
                        st = json.load(f)
                    out[str(st["host"])] = str(st["status"])
                except (OSError, ValueError, KeyError, TypeError):
                    continue
    return out


def _build_of(doc):
    b = ((doc.get("evidence") or {}).get("build") or {})
    return b.get("git_commit") or b.get("pyharness") or (doc.get("machine") or {}).get("pyharness") or "?"


def missing_rows(expect, seen, status):
    """A host the fleet expected and that left no result is a row: never a gap."""
    out = []
    for h in expect:
        if h in seen:
            continue
        why = status.get(h)
        why = "unreachable" if why is None else why if why != "ok" else "no campaign summary"
        out.append({"host": h, "result": f"no result: {why}"})
    return out


def _key(s):
    ev = s.get("evidence") or {}
    cpus = ev.get("cpus") or [{}]
    return (cpus[0].get("model_name") or s.get("machine", {}).get("cpu_model") or "?",
            cpus[0].get("microcode") or "?",
            (ev.get("kernel") or {}).get("release") or s.get("machine", {}).get("kernel") or "?")


def merge(dirs, expect=None):
    groups = {}
    seen, builds = set(), {}
    for path in find_summaries(dirs, allow_none=bool(expect)):
        from .. import documents
        try:
            s = documents.load(path, ("campaign",))
        except documents.DocumentError as exc:
            raise UsageError(f"{path}: unreadable campaign summary ({exc})") from None
        g = groups.setdefault(_key(s), {"boxes": set(), "campaigns": 0, "steps": 0, "failed": 0,
                                        "how": {}, "failed_boxes": set(), "failed_steps": {}})
        g["boxes"].add(s["host"])
        seen.add(s["host"])
        builds.setdefault(_build_of(s), set()).add(s["host"])
        g["campaigns"] += 1
        for st in s["steps"]:
            from .campaign import expected_to_fail
            if expected_to_fail(st):
                continue        # the posted RFC fails by design: its findings are not the box's
            g["steps"] += 1
            if st["rc"] != 0:
                g["failed"] += 1
                g["failed_boxes"].add(s["host"])
                base = re.sub(r"-r\d+$", "", st["name"])   # forever's round suffix
                g["failed_steps"][base] = g["failed_steps"].get(base, 0) + 1
                for inv, n in (st.get("violations") or {}).items():
                    g["how"][inv] = g["how"].get(inv, 0) + 1
                if not st.get("violations"):
                    how = st.get("status") or f"exit {st['rc']}"
                    g["how"][how] = g["how"].get(how, 0) + 1
    litmus = _litmus_rows(find_summaries(dirs, allow_none=bool(expect)))
    rows = []
    for (model, mc, kernel), g in sorted(groups.items()):
        rows.append({"cpu_model": model, "microcode": mc, "kernel": kernel,
                     "boxes": sorted(g["boxes"]), "campaigns": g["campaigns"], "steps": g["steps"],
                     "failed_steps": g["failed"], "failed_boxes": sorted(g["failed_boxes"]),
                     "how": g["how"], "where": g["failed_steps"]})
    doc = {"schema": SCHEMA, "rows": rows, "litmus": litmus,
           "missing": missing_rows(expect or [], seen, _fleet_status(dirs)),
           "builds": {b: sorted(h) for b, h in sorted(builds.items())}}
    return doc


def merge_store(url, machine=None):
    """The fleet view from the store: every stored result by CPU model,
    microcode and kernel: which boxes, how many results, how many failed,
    since when, and the builds they ran."""
    from ..history.store import open_store
    st = open_store(url, create=False)
    groups, builds = {}, {}
    for r in st.results(machine=machine):
        key = (r["cpu_model"] or "?", r["microcode"] or "?", r["kernel"] or "?")
        g = groups.setdefault(key, {"boxes": set(), "results": 0, "failed": 0, "failed_boxes": set(),
                                    "kinds": {}, "first_failure": None, "last_failure": None})
        g["boxes"].add(r["hostname"] or "?")
        g["results"] += 1
        g["kinds"][r["kind"]] = g["kinds"].get(r["kind"], 0) + 1
        builds.setdefault(r["commit"] or r["version"] or "?", set()).add(r["hostname"] or "?")
        if (r["verdict"] or "") in ("fail", "error"):
            g["failed"] += 1
            g["failed_boxes"].add(r["hostname"] or "?")
            t = str(r["started"])
            g["first_failure"] = g["first_failure"] or t
            g["last_failure"] = t
    rows = [{"cpu_model": m_, "microcode": mc, "kernel": k, "boxes": sorted(g["boxes"]),
             "campaigns": 0, "steps": g["results"], "failed_steps": g["failed"],
             "failed_boxes": sorted(g["failed_boxes"]), "how": g["kinds"], "where": {},
             "first_failure": g["first_failure"], "last_failure": g["last_failure"]}
            for (m_, mc, k), g in sorted(groups.items())]
    lit = {}
    for v in st.litmus_verdicts():
        _litmus_add(lit, v["cpu_model"] or "?", v["microcode"] or "?", v["hostname"] or "?", v,
                    bool(v["trusted"]))
    litmus = _litmus_list(lit)
    return {"schema": SCHEMA, "rows": rows, "litmus": litmus, "missing": [],
            "builds": {b: sorted(h) for b, h in sorted(builds.items())}, "store": st.describe()}


def _litmus_rows(summaries):
    """Litmus verdicts by CPU model and microcode: for each test, how many
    boxes saw Never / Sometimes / Always, and the counts behind them."""
    from .. import documents
    groups = {}
    for path in summaries:
        d = os.path.dirname(path)
        for f in sorted(os.listdir(d)):
            if not (f.startswith("litmus") and f.endswith(".json")):
                continue
            try:
                doc = documents.load(os.path.join(d, f), ("litmus",))
            except documents.DocumentError:
                continue
            ev = doc.get("evidence") or {}
            c0 = (ev.get("cpus") or [{}])[0]
            model = c0.get("model_name") or (doc.get("machine") or {}).get("cpu_model") or "?"
            mc = c0.get("microcode") or "?"
            host = (doc.get("machine") or {}).get("hostname") or d
            trusted = (doc.get("controls") or {}).get("trusted", False)
            for v in doc["verdicts"]:
                if "observation" in v:
                    _litmus_add(groups, model, mc, host, v, trusted)
    return _litmus_list(groups)


def _litmus_add(groups, model, mc, host, v, trusted):
    """One verdict into its (CPU model, microcode, test) group."""
    g = groups.setdefault((model, mc, v["test"]), {"boxes": set(), "obs": {}, "positive": 0,
                                                    "raced": 0, "untrusted": 0})
    g["boxes"].add(host)
    g["obs"][v["observation"]] = g["obs"].get(v["observation"], 0) + 1
    g["positive"] += v["positive"] or 0
    g["raced"] += v["raced"] or 0
    g["untrusted"] += 0 if trusted or v["observation"] != "Never" else 1


def _litmus_list(groups):
    return [{"cpu_model": m_, "microcode": mc, "test": t, "boxes": sorted(g["boxes"]),
             "observations": g["obs"], "positive": g["positive"], "raced": g["raced"],
             "untrusted_never": g["untrusted"]} for (m_, mc, t), g in sorted(groups.items())]


def litmus_table(doc, fmt="text"):
    """The litmus verdicts of a merge: test x CPU model and microcode."""
    head = ["test", "CPU model", "microcode", "boxes", "verdicts", "positive", "raced"]
    rows = []
    for r in doc.get("litmus") or []:
        obs = ", ".join(f"{k} {v}" for k, v in sorted(r["observations"].items()))
        if r["untrusted_never"]:
            obs += f" ({r['untrusted_never']} untrusted)"
        rows.append([r["test"], r["cpu_model"], r["microcode"], str(len(r["boxes"])), obs,
                     str(r["positive"]), str(r["raced"])])
    return _render(head, rows, fmt) if rows else ""


def table(doc, fmt="text"):
    text = _table(doc, fmt)
    extra = []
    for m_ in doc.get("missing") or []:
        extra.append(f"{m_['host']}: {m_['result']}")
    if len(doc.get("builds") or {}) > 1:
        extra.append("boxes ran different builds: " + "; ".join(
            f"{b[:12]}: {', '.join(h)}" for b, h in doc["builds"].items()))
    return text + ("\n" + "\n".join(extra) if extra else "")


def _table(doc, fmt="text"):
    head = ["CPU model", "microcode", "kernel", "boxes", "failed boxes", "failed steps", "how (steps)"]
    rows = []
    for r in doc["rows"]:
        how = ", ".join(f"{k} ({v})" for k, v in sorted(r["how"].items(), key=lambda x: -x[1])) or "-"
        rows.append([r["cpu_model"], r["microcode"], r["kernel"], str(len(r["boxes"])),
                     ", ".join(r["failed_boxes"]) or "-", f"{r['failed_steps']}/{r['steps']}", how])
    return _render(head, rows, fmt)


def _render(head, rows, fmt):
    """A table as Markdown or aligned text."""
    if fmt == "md":
        out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        out += ["| " + " | ".join(x.replace("|", "\\|") for x in row) + " |" for row in rows]
        return "\n".join(out)
    w = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w[i]) for i, h in enumerate(head))]
    out += ["  ".join(c.ljust(w[i]) for i, c in enumerate(row)) for row in rows]
    return "\n".join(out)
