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


def segments(values, change_points):
    """[(first index, last index, median)] of each segment between changes."""
    bounds = [0] + [c["index"] for c in change_points] + [len(values)]
    out = []
    for a, b in zip(bounds, bounds[1:]):
        seg = [v for v in values[a:b] if v is not None]
        if seg:
            out.append((a, b - 1, summary(seg)["median"]))
    return out
