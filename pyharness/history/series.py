"""Each figure's history on each machine, its change points, and the gate.

    hist = build_history(store, figure=["rfc/*"], machine=None, tags={}, by="time")
    code = hist["exit_code"]             # with check=True: 1 if the newest point regressed

What is judged is what `pyharness compare` judges (pyharness/compare.py):
under a hypervisor a protocol figure's cost relative to its per-run floor
(and a change must show in the raw time too), on bare metal the raw time;
primitives under a hypervisor are shown but do not gate (CPUID and IPIs
exit to the host and move by +-25% between runs of one build).

One series per (box, figure): the host, its CPU (model, family/model/
stepping, count, hypervisor), the CPUs the bench ran on and quick or full
stay fixed along a line (store.series_key); kernel, microcode and build
change along it, and a change point names what changed there.  --by TAG orders the results by the tag's value
(the values in the order they first appeared, each value's results by
time); results without the tag are left out of that view.
"""
import datetime as dt

from ..compare import ALPHA, FLOOR_MOVED, judge_figure
from ..documents import KINDS
from ..errors import UsageError
from ..stats import summary
from .changes import change_points

SCHEMA = KINDS["history"]
BASES = ("auto", "raw", "normalized")
# A history of at most this many results is too young for change points to
# be told from noise (the noise between results needs several differences):
# its newest result is judged against the one before it exactly as
# `pyharness compare PREVIOUS NEWEST` judges them (pyharness.compare.
# judge_figure: the same data, threshold and test), so the two never
# disagree.
YOUNG_MAX = 5
# ... and a history of fewer than YOUNG_MIN is not judged at all: a new CI
# gate is not broken by its first results (two results of one build on our
# VM differ by 18% relative to the floor in one figure, p = 0.008, and
# `compare` of the two says so; a gate learns nothing from that).
YOUNG_MIN = 3


def parse_tags(items):
    """['k=v', ...] -> {k: v}; UsageError on a malformed one."""
    out = {}
    for it in items or []:
        k, sep, v = it.partition("=")
        if not sep or not k.strip() or not v.strip():
            raise UsageError(f"--tag '{it}': expected KEY=VALUE")
        out[k.strip()] = v.strip()
    return out


def _order(rows, by):
    if by == "time":
        return rows
    first, keep = {}, []
    for r in rows:                      # rows are oldest first
        v = r["tags"].get(by)
        if v is None:
            continue
        first.setdefault(v, len(first))
        keep.append(r)
    return sorted(keep, key=lambda r: (first[r["tags"][by]], r["started"], r["id"]))


def _label(r, by):
    if by != "time":
        return f"{by}={r['tags'][by]}"
    commit = (r.get("commit") or "")[:8] + ("+" if r.get("dirty") else "")
    return r["started"].strftime("%Y-%m-%d %H:%M") + (f" {commit}" if commit else "")


def _iso(t):
    return t.replace(tzinfo=dt.timezone.utc).isoformat() if t else None


def build_history(store, figure=None, machine=None, tags=None, by="time", threshold=0.10,
                  basis="auto", alpha=ALPHA, kind="bench"):
    # A long history makes millions of small dicts and lists and no cycle:
    # the cyclic collector, run again and again over all of them, took a
    # quarter of the time at 10,000 results (5.5 s -> 4.0 s without it).
    # Reference counting still frees everything; the collector is back on
    # when the history is built.
    import gc
    was = gc.isenabled()
    gc.disable()
    try:
        return _build_history(store, figure, machine, tags, by, threshold, basis, alpha, kind)
    finally:
        if was:
            gc.enable()


def _build_history(store, figure, machine, tags, by, threshold, basis, alpha, kind):
    if basis not in BASES:
        raise UsageError(f"--basis must be one of {', '.join(BASES)}")
    if not threshold >= 0:
        raise UsageError("--threshold must not be negative")
    rows = store.results(machine=machine, tags=tags, kind=kind)
    rows = _order(rows, by)
    # One summary row per result and figure (kept when the result was
    # written); the samples only where a test needs them (fetch).
    figs = store.figure_summaries(kind=kind, figure_glob=figure, result_ids={r["id"] for r in rows})
    by_machine = {}
    for r in rows:
        by_machine.setdefault(r["series_key"], []).append(r)
    series = []
    for ident, mrows in by_machine.items():
        names = sorted({n for r in mrows for n in figs.get(r["id"], {})})
        virtual = any(r.get("hypervisor") for r in mrows)
        for name in names:
            pts = []
            for r in mrows:
                f = figs.get(r["id"], {}).get(name)
                if not f or not f.get("n"):
                    continue
                pts.append({"result": r, "sum": f, "kind": f["kind"], "unit": f["unit"]})
            if not pts:
                continue
            protocol = all(p["sum"].get("ratio_med") is not None for p in pts)
            normalized = protocol and (basis == "normalized" or (basis == "auto" and virtual))
            gates = protocol or basis == "raw" or not virtual
            fetch = _fetcher(store, name, normalized)
            for p in pts:
                f = p["sum"]
                p["value"] = f["ratio_med"] if normalized else f["raw_med"]
                p["raw_median"] = f["raw_med"]
                p["normalized"] = normalized
                p["fetch"] = fetch
            pts = [p for p in pts if p["value"] and p["value"] > 0]   # nothing to judge else
            if not pts:
                continue
            cps = change_points(pts, threshold, alpha)
            young = (_young_judgement(pts, threshold, basis, virtual)
                     if gates and YOUNG_MIN <= len(pts) <= YOUNG_MAX else None)
            series.append(_series_json(name, mrows[-1], pts, cps, normalized, gates, by,
                                       threshold, young))
    return {"schema": SCHEMA, "by": by, "basis": basis, "threshold": threshold, "alpha": alpha,
            "change_points": sum(len(s["change_points"]) for s in series if s["gates"]),
            "host_phases": sum(len(s["change_points"]) for s in series if not s["gates"]),
            "store": store.describe(), "results": len(rows),
            "filters": {"figure": figure, "machine": machine, "tags": tags or {}},
            "series": series}


def _fetcher(store, name, normalized):
    """Loads the samples of some points of one figure's series, on demand."""
    def fetch(points):
        got = store.figure_samples([p["result"]["id"] for p in points], names=[name])
        for p in points:
            smp = got.get(p["result"]["id"], {}).get(name, {}).get("samples") or []
            p["raw"] = [v for v, _, _ in smp]
            p["ratios"] = [r for _, _, r in smp if r is not None]
            p["floors"] = [fl for _, fl, _ in smp if fl is not None]
            p["judged"] = p["ratios"] if normalized else p["raw"]
            p["confirm"] = p["raw"] if normalized else None
    return fetch


def _young_judgement(pts, threshold, basis, virtual):
    """The newest point against the one before it, exactly as `pyharness
    compare PREVIOUS NEWEST` judges them: the same data, the same answer."""
    from .changes import _ensure
    pts = pts[-2:]
    _ensure(pts)

    def pooled(ps):
        return {"samples": [x for p in ps for x in p["raw"]],
                "ratio_to_floor_samples": [x for p in ps for x in p["ratios"]],
                "floor_samples": [x for p in ps for x in p["floors"]]}
    return judge_figure(pooled(pts[:-1]), pooled(pts[-1:]), threshold, basis, virtual)


def _series_json(name, mrow, pts, cps, normalized, gates, by, threshold, young=None):
    points = []
    for p in pts:
        r, f = p["result"], p["sum"]
        base = r.get("_point")
        if base is None:                       # what a point says of its result: once per result
            base = r["_point"] = {
                "result_id": r["id"], "started": _iso(r["started"]), "label": _label(r, by),
                "commit": r.get("commit"), "dirty": r.get("dirty"), "tags": r["tags"],
                "kernel": r.get("kernel"), "microcode": r.get("microcode"),
                "inject_delay_ns": r.get("inject_delay_ns") or 0}
        pt = base.copy()
        # the spread of the point's per-run samples (p10-p90), judged and raw
        pt["spread"] = ([f["ratio_p10"], f["ratio_p90"]] if normalized
                        else [f["raw_p10"], f["raw_p90"]])
        pt["raw_spread"] = [f["raw_p10"], f["raw_p90"]]
        pt["value"] = p["value"]
        pt["raw_median"] = f["raw_med"]
        pt["floor_median"] = f["floor_med"]
        pt["samples"] = f["n"]
        points.append(pt)
    out_cps = []
    for c in cps:
        at = points[c["index"]]
        d = {k: c[k] for k in c if k not in ("index",)}
        d.update(index=c["index"], at=at["label"], started=at["started"], commit=at["commit"],
                 tags=at["tags"], direction="slower" if c["ratio"] > 1 else "faster",
                 magnitude=c["ratio"] - 1)
        prev = points[c["index"] - 1] if c["index"] else None
        d["changed_here"] = {k: [prev[k], at[k]] for k in ("kernel", "microcode", "commit")
                             if prev and prev[k] != at[k]}
        lo = c["index"] - c["before_points"]
        hi = c["index"] + c["after_points"]
        before = [p["floor_median"] for p in points[lo:c["index"]] if p["floor_median"]]
        after = [p["floor_median"] for p in points[c["index"]:hi] if p["floor_median"]]
        if before and after:
            fb, fa = summary(before)["median"], summary(after)["median"]
            d["floor_ratio"] = fa / fb
        out_cps.append(d)
    regressed, why = False, None
    if young is not None:
        # A young history: the gate is `compare`'s, newest against the rest.
        regressed = young["verdict"] == "REGRESSED"
        if regressed:
            moved = (f"; the floor moved {young['floor_moved']:.2f}x, and the raw time is slower "
                     "too" if young["floor_moved"] else "")
            why = (f"the newest result is {young['ratio'] - 1:+.1%} "
                   f"({young['basis']}; raw {young['raw_ratio'] - 1:+.1%}) against the one before "
                   f"it, p={young['p']:.1e}, as `pyharness compare` judges the two (a history of "
                   f"{len(points)} is too young for change points){moved}")
    elif out_cps and gates:
        last = out_cps[-1]
        floor_moved = last.get("floor_ratio") and normalized and \
            max(last["floor_ratio"], 1 / last["floor_ratio"]) > FLOOR_MOVED
        # The newest result itself must be slower too: a gate does not
        # fail a build whose own result is back at the old level.  A moved
        # floor vetoes nothing: the change point held the raw time to the
        # same threshold already (both slower), and the line says so.
        newest_ratio = points[-1]["value"] / last["before_median"] if last["before_median"] else None
        if last["direction"] == "slower" and last["ratio"] > 1 + threshold \
                and newest_ratio and newest_ratio > 1 + threshold:
            regressed = True
            why = (f"the newest point {'starts' if last['index'] == len(points) - 1 else 'belongs to'}"
                   f" a segment {last['magnitude']:+.1%} slower than the one before "
                   f"(from {last['at']}, p={last['p']:.1e})"
                   + (f"; the floor moved {last['floor_ratio']:.2f}x there, and the raw time is "
                      f"{last['raw_ratio'] - 1:+.1%}" if floor_moved and last.get("raw_ratio") else ""))
    for c in out_cps:
        c["gate"] = cp_gate(gates, regressed, c, c is out_cps[-1], points, threshold)
    return {"figure": name, "machine": {"hostname": mrow.get("hostname"),
                                        "cpu_model": mrow.get("cpu_model"),
                                        "microcode": mrow.get("microcode"),
                                        "kernel": mrow.get("kernel"),
                                        "identity": mrow.get("machine_identity")},
            "kind": pts[0]["kind"], "unit": pts[0]["unit"],
            "series_key": mrow.get("series_key"),
            "basis": "normalized" if normalized else "raw", "gates": gates,
            "points": points, "change_points": out_cps, "regressed": regressed, "why": why,
            "young": young, "verdict": series_verdict(gates, regressed, out_cps, young)}


def cp_gate(gates, regressed, c, last, points, threshold):
    """What the gate says beside one change point: never nothing."""
    if not gates:
        return "not gating"
    if c["direction"] == "faster":
        return "faster"
    if not last:
        return "slower, earlier: a later change follows"
    if regressed:
        return "REGRESSED"
    newest = points[-1]["value"] / c["before_median"] if c.get("before_median") else None
    return (f"slower, but the newest result is back within {threshold:.0%}"
            + (f" ({newest - 1:+.1%})" if newest else ""))


def series_verdict(gates, regressed, cps, young=None):
    """The series' verdict: REGRESSED, not gating, ok, or what keeps it
    from being ok (never "ok" beside a slower change at its newest
    results)."""
    if regressed:
        return "REGRESSED"
    if not gates:
        return "not gating"
    if young is not None and young["verdict"] in ("slower", "changed<thr"):
        return f"newest {young['raw_ratio'] - 1:+.1%} raw: {young['verdict']}, not a regression"
    if cps and cps[-1]["direction"] == "slower":
        return cps[-1]["gate"]
    return "ok"


def check_code(hist):
    return 1 if any(s["regressed"] for s in hist["series"]) else 0


def judged(hist):
    """The series --check can judge (those that gate)."""
    return [s for s in hist["series"] if s["gates"]]


def young(hist):
    """Gating series with fewer than YOUNG_MIN results: not judged yet."""
    return [s for s in judged(hist) if len(s["points"]) < YOUNG_MIN]


def young_line(hist):
    """The one line that says what a young history cannot judge, or None."""
    y = young(hist)
    if not y:
        return None
    n = max(len(s["points"]) for s in y)
    return (f"{len(y)} figure(s) have {n if len(y) == 1 else 'at most ' + str(n)} result(s): a "
            f"change needs {YOUNG_MIN} to be judged, so they are not judged yet; from the "
            f"{YOUNG_MIN}rd result on, a history of up to {YOUNG_MAX} is judged as `pyharness "
            "compare` judges its two newest results")
