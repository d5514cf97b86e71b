"""The patch schedule, derived from the seed and the configuration alone.

The C observer (csrc/observe/check.c) issues each round's sites from the same rule
and the protocol patches what it is handed.  This module derives the same
schedule again, in Python, apart from any C record, so that the checker can
say which variant every site must end as without trusting the core:

    pass p orders the sites by a Fisher-Yates shuffle of the identity,
    driven by splitmix64 from the state (seed ^ SALT) + p*(nsites-1)*GAMMA;
    rounds take consecutive runs of ``batch`` sites (the last round of a
    ``--sites`` run takes what is left); a round that does not fit in what
    is left of a pass starts the next pass.

With ``--sessions N`` a ``--sites`` run gives each session its share (the
last one the remainder), each session's rounds sized the same way.  With
paired sites (a lock 2p and its unlock 2p+1) a pass shuffles the pairs,
keeping each pair's two sites side by side, and a session never ends
between the two sites of a pair.
"""

GAMMA = 0x9E3779B97F4A7C15
SALT = 0x5C4ED01E5C4ED01E
MASK = (1 << 64) - 1
# Passes whose order must be shuffled in Python before the derivation
# gives up (about 1 ms each for 1000 sites); the C oracle then stands alone.
MAX_SHUFFLES = 4000


def _splitmix(state):
    state = (state + GAMMA) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def pass_order(seed, nsites, p, paired=False):
    """The order of every site in pass ``p`` (0-based)."""
    units = nsites // 2 if paired else nsites
    st = ((seed ^ SALT) + p * (units - 1) * GAMMA) & MASK
    perm = list(range(units))
    for i in range(units - 1, 0, -1):
        st, z = _splitmix(st)
        j = z % (i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    if paired:
        return [s for pr in perm for s in (2 * pr, 2 * pr + 1)]
    return perm


def _session_sizes(share, batch, paired):
    """Round sizes of one session of a --sites run (csrc/core/driver.c)."""
    if paired:
        share += share & 1          # a session patches whole pairs
    out, done = [], 0
    while True:
        mid_pair = paired and done % 2 == 1
        if not mid_pair and done >= share:
            return out
        n = batch
        if share - done < n and not mid_pair:
            n = share - done
        n = max(n, 1)
        out.append(n)
        done += n


def round_sizes(rounds, batch, total_sites=None, sessions=1, paired=False):
    """Sizes of the first ``rounds`` rounds."""
    if total_sites is None:
        return [batch] * rounds
    out = []
    for k in range(sessions):
        share = total_sites // sessions + (total_sites % sessions if k == sessions - 1 else 0)
        out += _session_sizes(share, batch, paired)
    return out[:rounds]


def expected_rounds(total_sites, batch, sessions=1, paired=False):
    """Rounds a complete ``--sites`` run must take."""
    return len(round_sizes(1 << 62, batch, total_sites, sessions, paired)) if total_sites else 0


def final_variants(seed, nsites, batch, rounds, total_sites=None, max_shuffles=MAX_SHUFFLES,
                   paired=False, sessions=1):
    """Variant (0 or 1) of every site after ``rounds`` rounds, or None when
    deriving it would shuffle more than ``max_shuffles`` passes."""
    parity = bytearray(nsites)
    sizes = round_sizes(rounds, batch, total_sites, sessions, paired)
    cursor, p, k, shuffles = nsites, 0, 0, 0
    while k < len(sizes):
        n = sizes[k]
        if cursor + n > nsites:          # a new pass
            # Whole passes of equal full rounds flip every site once each: no
            # order needed, only how many (sizes only shrink at the end).
            per_pass = nsites // n
            m = (len(sizes) - k) // per_pass if nsites % n == 0 else 0
            # every round of those passes must be a full one (sessions can put
            # a short round in the middle, not only at the end)
            while m and any(x != n for x in sizes[k:k + m * per_pass]):
                m -= 1
            if m:
                if m % 2:
                    for i in range(nsites):
                        parity[i] ^= 1
                k += m * per_pass
                p += m
                cursor = nsites
                continue
            shuffles += 1
            if shuffles > max_shuffles:
                return None
            order = pass_order(seed, nsites, p, paired)
            p += 1
            cursor = 0
        for s in order[cursor:cursor + n]:
            parity[s] ^= 1
        cursor += n
        k += 1
    return bytes(parity)
