"""Durations as people write them: "90", "90s", "5m", "2h", "1.5h".

    parse_duration("5m") == 300.0

A bare number is seconds.  Infinity and NaN are not durations: a run must
end, and a comparison with NaN is always false (a NaN deadline never
expires), so both are refused here, once, for every option that takes a
time.
"""
import math
import re

_UNITS = {"": 1.0, "s": 1.0, "ms": 1e-3, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_RE = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|min|s|m|h|d)?\s*")


def parse_duration(text):
    """Seconds from a duration string; ValueError with the reason in one
    line (not a number, negative, infinite, NaN)."""
    t = str(text).strip().lower()
    if t in ("inf", "+inf", "infinity", "+infinity", "-inf", "-infinity") or "inf" in t:
        raise ValueError(f"'{text}' is infinite: a run must end (give a duration such as 90s, "
                         "5m or 2h)")
    if "nan" in t:
        raise ValueError(f"'{text}' is not a number (NaN)")
    if t.startswith("-"):
        raise ValueError(f"'{text}' must not be negative")
    m = _RE.fullmatch(t)
    if not m:
        raise ValueError(f"'{text}' is not a duration (a number of seconds, or with a unit: "
                         "90s, 5m, 2h)")
    v = float(m.group(1)) * _UNITS[m.group(2) or ""]
    if not math.isfinite(v):
        raise ValueError(f"'{text}' is too large")
    return v
