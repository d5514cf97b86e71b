"""The patch schedule, derived from the seed and the configuration alone.

The C observer (csrc/check.c) issues each round's sites from the same rule
and the protocol patches what it is handed.  This module derives the same
schedule again, in Python, apart from any C record, so that the checker can
say which variant every site must end as without trusting the core:

    pass p orders the sites by a Fisher-Yates shuffle of the identity,
    driven by splitmix64 from the state (seed ^ SALT) + p*(nsites-1)*GAMMA;
    rounds take consecutive runs of ``batch`` sites (the last round of a
    ``--sites`` run takes what is left); a round that does not fit in what
    is left of a pass starts the next pass.
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


def pass_order(seed, nsites, p):
    """The order of every site in pass ``p`` (0-based)."""
    st = ((seed ^ SALT) + p * (nsites - 1) * GAMMA) & MASK
    perm = list(range(nsites))
    for i in range(nsites - 1, 0, -1):
        st, z = _splitmix(st)
        j = z % (i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def round_sizes(rounds, batch, total_sites=None):
    """Sizes of the first ``rounds`` rounds."""
    out, done = [], 0
    for _ in range(rounds):
        n = batch if total_sites is None else min(batch, total_sites - done)
        if n <= 0:
            break
        out.append(n)
        done += n
    return out


def expected_rounds(total_sites, batch):
    """Rounds a complete ``--sites`` run must take."""
    return -(-total_sites // batch)


def final_variants(seed, nsites, batch, rounds, total_sites=None, max_shuffles=MAX_SHUFFLES):
    """Variant (0 or 1) of every site after ``rounds`` rounds, or None when
    deriving it would shuffle more than ``max_shuffles`` passes."""
    parity = bytearray(nsites)
    sizes = round_sizes(rounds, batch, total_sites)
    cursor, p, k, shuffles = nsites, 0, 0, 0
    while k < len(sizes):
        n = sizes[k]
        if cursor + n > nsites:          # a new pass
            # Whole passes of equal full rounds flip every site once each: no
            # order needed, only how many (sizes only shrink at the end).
            per_pass = nsites // n
            m = (len(sizes) - k) // per_pass if nsites % n == 0 else 0
            while m and sizes[k + m * per_pass - 1] != n:
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
            order = pass_order(seed, nsites, p)
            p += 1
            cursor = 0
        for s in order[cursor:cursor + n]:
            parity[s] ^= 1
        cursor += n
        k += 1
    return bytes(parity)
