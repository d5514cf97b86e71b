"""Small statistics for benchmarks: summaries and the Mann-Whitney U test."""
import math


def quantile(sorted_values, q):
    """Linear-interpolated quantile of an already sorted list."""
    n = len(sorted_values)
    if n == 0:
        return None
    pos = q * (n - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summary(values):
    s = sorted(values)
    n = len(s)
    if not n:
        return {"n": 0}
    mean = sum(s) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in s) / (n - 1)) if n > 1 else 0.0
    med = quantile(s, 0.5)
    p10, p90 = quantile(s, 0.1), quantile(s, 0.9)
    return {"n": n, "min": s[0], "median": med, "mean": mean, "p10": p10, "p90": p90,
            "max": s[-1], "stdev": sd, "spread": (p90 - p10) / med if med else None}


def _ranks(values):
    """Average ranks (1-based) with ties, and the tie-correction term."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    tie_term = 0.0
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        avg = (i + j) / 2.0 + 1.0
        for k in range(i, j + 1):
            ranks[order[k]] = avg
        t = j - i + 1
        tie_term += t ** 3 - t
        i = j + 1
    return ranks, tie_term


def mann_whitney_u(a, b):
    """Two-sided Mann-Whitney U test (normal approximation with tie and
    continuity correction).  Returns (U of a, p-value)."""
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        return None, 1.0
    ranks, tie_term = _ranks(list(a) + list(b))
    r1 = sum(ranks[:n1])
    u1 = r1 - n1 * (n1 + 1) / 2.0
    mu = n1 * n2 / 2.0
    n = n1 + n2
    var = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        return u1, 1.0
    z = (abs(u1 - mu) - 0.5) / math.sqrt(var)
    p = math.erfc(max(z, 0.0) / math.sqrt(2.0))
    return u1, min(1.0, p)
