"""History and compare as text (terminal), markdown (a pull request or a
CI job summary) and JSON (versioned: pyharness.history/1,
pyharness.compare/1)."""
import json


def _ns(v, unit="ns"):
    if v is None:
        return "-"
    if unit and "ns" not in unit:
        return f"{v:.3g}"
    return f"{v / 1000:.2f}us" if v >= 999.5 else f"{v:.0f}ns"


def _val(s, v):
    return f"{v:.3f}x" if s["basis"] == "normalized" else _ns(v, s["unit"])


def _cp_text(s, c):
    t = (f"{c['at']}: {_val(s, c['before_median'])} → {_val(s, c['after_median'])} "
         f"({c['magnitude']:+.1%}, p={c['p']:.1e}")
    if c.get("raw_ratio") is not None:
        t += f"; raw {c['raw_ratio'] - 1:+.1%}"
    if c.get("newest"):
        t += "; newest point only"
    for k, (a, b) in (c.get("changed_here") or {}).items():
        if k != "commit":
            t += f"; {k} {a} -> {b}"
    return t + ")"


def _verdict(s):
    from .series import series_verdict
    return s.get("verdict") or series_verdict(s["gates"], s["regressed"], s["change_points"],
                                              s.get("young"))


def history_text(hist, check=False):
    lines = [f"history from {hist['store']}: {hist['results']} results, ordered by {hist['by']}, "
             f"change = beyond {hist['threshold']:.0%} with p < {hist['alpha']} "
             f"(basis {hist['basis']})"]
    if not hist["series"]:
        lines.append("no figure matches (see --figure, --machine, --tag)")
        return "\n".join(lines)
    machines = {s.get("series_key") for s in hist["series"]}
    lines.append(f"{'figure':44s} {'pts':>4s} {'latest':>10s}  change points")
    for s in hist["series"]:
        name = s["figure"] + (f" @{s['machine']['hostname']}" if len(machines) > 1 else "")
        latest = _val(s, s["points"][-1]["value"])
        cps = "; ".join(_cp_text(s, c) for c in s["change_points"]) or "none"
        if not s["gates"] and s["change_points"]:
            cps = "host phases, not judged: " + cps
        lines.append(f"{name:44s} {len(s['points']):>4d} {latest:>10s}  {cps}"
                     + ("" if s["gates"] else "  [not gating]")
                     + ("  REGRESSED" if s["regressed"] else ""))
    reg = [s for s in hist["series"] if s["regressed"]]
    n_cp = sum(len(s["change_points"]) for s in hist["series"] if s["gates"])
    n_ph = sum(len(s["change_points"]) for s in hist["series"] if not s["gates"])
    lines.append(f"{n_cp} change point(s) in {sum(s['gates'] for s in hist['series'])} judged "
                 f"series" + (f"; {n_ph} host phase(s) in primitives, which do not gate under a "
                              "hypervisor" if n_ph else ""))
    if check:
        if reg:
            lines.append(f"check: REGRESSED ({len(reg)} figures):")
            lines += [f"  {s['figure']} on {s['machine']['hostname']}: {s['why']}" for s in reg]
        else:
            from .series import judged, young
            if len(young(hist)) < len(judged(hist)):   # else: the young line says it all
                lines.append("check: ok, the newest point is in no slower segment")
    return "\n".join(lines)


def _md_escape(t):
    """A table cell: markdown renders HTML, and '|' ends a cell."""
    import html
    return html.escape(str(t), quote=False).replace("|", "\\|")


def history_md(hist, check=False):
    reg = [s for s in hist["series"] if s["regressed"]]
    lines = ["### pyharness history", "",
             f"{hist['results']} results from `{_md_escape(hist['store'])}`, ordered by "
             f"{hist['by']}; a change is beyond {hist['threshold']:.0%} with p < {hist['alpha']}.",
             ""]
    if check:
        lines += [("**Regressed:** " + ", ".join(f"`{s['figure']}`" for s in reg)) if reg
                  else "**No regression** at the newest point.", ""]
    lines += ["| figure | machine | basis | points | latest | change points | verdict |",
              "| --- | --- | --- | ---: | ---: | --- | --- |"]
    for s in hist["series"]:
        cps = "<br>".join(_md_escape(_cp_text(s, c)) for c in s["change_points"]) or "none"
        lines.append(f"| `{_md_escape(s['figure'])}` | {_md_escape(s['machine']['hostname'])} | "
                     f"{s['basis']} | {len(s['points'])} | {_val(s, s['points'][-1]['value'])} | "
                     f"{cps} | {_verdict(s)} |")
    return "\n".join(lines)


def history_json(hist, check=False, code=None):
    from .series import young_line
    d = dict(hist)
    d["not_judged"] = young_line(hist)
    if check:
        d["check"] = {"exit_code": code, "regressed": [
            {"figure": s["figure"], "machine": s["machine"]["hostname"], "why": s["why"],
             # a young history's gate is `compare`'s: no change point, its judgement
             "change_point": s["change_points"][-1] if s["change_points"] else None,
             "young": s.get("young")} for s in hist["series"] if s["regressed"]]}
    return json.dumps(d, indent=1, default=str)


def compare_md(rows, summ):
    lines = ["### pyharness compare", "",
             ("**Regressed:** " + ", ".join(f"`{f}`" for f in summ["regressed"]))
             if summ["regressed"] else "**No significant regression.**", "",
             "| figure | old | new | raw | normalized | p | verdict |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        def rr(v):
            return "-" if v is None else f"{v:.3f}"
        note = "" if r["gates"] else " (not gating)"
        lines.append(f"| `{_md_escape(r['figure'])}` | {_ns(r['old_median'])} | "
                     f"{_ns(r['new_median'])} | {rr(r['raw_ratio'])} | {rr(r['normalized_ratio'])} | "
                     f"{r['p']:.1e} | {r['verdict']}{note} |")
    lines += ["", f"{len(summ['slower'])} slower, {len(summ['faster'])} faster of "
              f"{summ['figures']} figures; slower means > {summ['fail_above']:.0%} with p < "
              f"{summ['alpha']}."]
    return "\n".join(lines)


def compare_json(rows, summ, code):
    from ..documents import KINDS
    return json.dumps({"schema": KINDS["compare"], "exit_code": code, "summary": summ,
                       "rows": rows}, indent=1)
