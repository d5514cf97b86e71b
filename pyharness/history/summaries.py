"""A figure's per-result summary, as the store keeps it beside the samples
(written with the result; schema 3): what a history's change points and
its gate read, one row per result and figure, instead of every sample."""
from ..stats import summary

FIELDS = ("n", "raw_med", "raw_p10", "raw_p90", "ratio_med", "ratio_p10", "ratio_p90", "floor_med")


def summarise(samples):
    """[(value, floor, ratio)] -> {n, raw_med, raw_p10, raw_p90, ratio_med,
    ratio_p10, ratio_p90, floor_med} (None where there is nothing)."""
    raw = [v for v, _, _ in samples if v is not None]
    ratios = [r for _, _, r in samples if r is not None]
    floors = [f for _, f, _ in samples if f is not None]
    rs, qs, fs = summary(raw), summary(ratios), summary(floors)
    return {"n": len(raw), "raw_med": rs.get("median"), "raw_p10": rs.get("p10"), "raw_p90": rs.get("p90"),
            "ratio_med": qs.get("median"), "ratio_p10": qs.get("p10"), "ratio_p90": qs.get("p90"),
            "floor_med": fs.get("median")}
