"""What both kinds of history chart (static matplotlib, interactive Bokeh)
derive from a series the same way: the time unit, the tick labels, a
y-range that does not inflate noise, and the segments between changes."""
from ..stats import summary

MIN_SPAN = 0.2          # a y axis spans at least 20% of the series' median: noise stays noise
MAX_TICKS = 12


def time_unit(values_ns):
    """(divisor, unit) so that a chart of these ns values reads in one unit."""
    vals = [v for v in values_ns if v]
    med = summary(vals)["median"] if vals else 0
    if med >= 1e6:
        return 1e6, "ms"
    if med >= 1e3:
        return 1e3, "us"
    return 1.0, "ns"


def short_label(i, point, by="time"):
    """A tick's label: the point's number, then its --by value or its tags,
    else its date and commit: two results never share a label."""
    tags = point.get("tags") or {}
    if by != "time" and tags.get(by) is not None:
        text = f"{by}={tags[by]}"
    elif tags:
        text = ",".join(f"{k}={v}" for k, v in sorted(tags.items()))
    else:
        text = point.get("label") or ""
    return f"#{i + 1} {text}"[:40]


def y_range(lows, highs, values, log=False):
    """(start, end) holding every spread, at least MIN_SPAN of the median wide."""
    vals = [v for v in values if v is not None]
    lo = min([x for x in lows if x is not None] + vals)
    hi = max([x for x in highs if x is not None] + vals)
    mid = summary(vals)["median"]
    span = max(hi - lo, MIN_SPAN * mid)
    center = (hi + lo) / 2
    start, end = center - span * 0.55, center + span * 0.55
    return max(0.0, start) if lo >= 0 else start, end


def segments(values, change_points, xs=None, n=None):
    """[(first x, last x, median)] of each segment between changes.  xs:
    each value's position in the series (a drawn series skips points; n
    its whole length); the medians are over the values drawn."""
    xs = list(range(len(values))) if xs is None else xs
    n = len(values) if n is None else n
    bounds = [0] + [c["index"] for c in change_points] + [n]
    out = []
    for a, b in zip(bounds, bounds[1:]):
        seg = [v for v, x in zip(values, xs) if v is not None and a <= x < b]
        if seg:
            out.append((a, b - 1, summary(seg)["median"]))
    return out


# A chart draws at most this many points of a series, whatever its length:
# the newest NEWEST_DRAWN, each change point and the point before it, the
# first, and of the rest the highest and the lowest of each stretch, so
# that a spike still shows.  The judged points are all judged; only the
# drawing is thinned (the page stays within its budget at 10,000 results).
DRAW_LIMIT = 200
NEWEST_DRAWN = 60


def drawn(series, limit=DRAW_LIMIT):
    """A copy of the series whose points are the ones to draw, each with
    "x", its index in the whole series; "n_points": the whole length."""
    pts = series["points"]
    n = len(pts)
    out = dict(series, n_points=n)
    if n <= limit:
        out["points"] = [dict(p, x=i) for i, p in enumerate(pts)]
        return out
    keep = {0} | set(range(max(0, n - NEWEST_DRAWN), n))
    for c in series.get("change_points") or []:
        keep |= {c["index"], max(0, c["index"] - 1)}
    rest = [i for i in range(n) if i not in keep]
    buckets = max(1, (limit - len(keep)) // 2)
    size = -(-len(rest) // buckets) if rest else 1
    for k in range(0, len(rest), size):
        chunk = [i for i in rest[k:k + size] if pts[i].get("value") is not None]
        if chunk:
            keep.add(max(chunk, key=lambda i: pts[i]["value"]))
            keep.add(min(chunk, key=lambda i: pts[i]["value"]))
    out["points"] = [dict(pts[i], x=i) for i in sorted(keep)]
    return out
