/*
 * shared.c -- the region the worker writes and the parent reads: header,
 * per-thread counters, trace rings, violations, sample series.
 *
 * Everything here may run in a signal handler: no locks, no allocation,
 * no stdio.  Each ring has one writer thread; a signal handler on that same
 * thread may interrupt a write in progress, so slots are reserved with an
 * atomic fetch_add and validated by a stamp written last.
 */
#include <string.h>
#include "ph_internal.h"

static uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

uint64_t ph_shared_size(const struct ph_config *cfg)
{
    uint64_t n = (uint64_t)cfg->nthreads, off = round_up(sizeof(struct ph_shared), 4096);
    off += round_up(n * sizeof(struct ph_counters), 4096);                  /* threads */
    off += round_up(n * (uint64_t)cfg->trace_len * sizeof(struct ph_event), 4096);
    off += round_up((uint64_t)PH_NSERIES * PH_SAMPLES * sizeof(uint32_t), 4096);
    off += round_up(n * PH_BP_SAMPLES * sizeof(uint32_t), 4096);
    off += round_up((uint64_t)cfg->nsites, 4096);
    return off;
}

/* Lay out the header of a zeroed region (worker side). */
void ph_shared_layout(struct ph_shared *sh, const struct ph_config *cfg, uint64_t size);
void ph_shared_layout(struct ph_shared *sh, const struct ph_config *cfg, uint64_t size)
{
    uint64_t n = (uint64_t)cfg->nthreads, off = round_up(sizeof(struct ph_shared), 4096);
    sh->size = size;
    sh->nthreads = cfg->nthreads;
    sh->nsites = cfg->nsites;
    sh->trace_len = cfg->trace_len;
    sh->primary = cfg->primary;
    sh->off_threads = off;
    off += round_up(n * sizeof(struct ph_counters), 4096);
    sh->off_trace = off;
    off += round_up(n * (uint64_t)cfg->trace_len * sizeof(struct ph_event), 4096);
    sh->off_series = off;
    off += round_up((uint64_t)PH_NSERIES * PH_SAMPLES * sizeof(uint32_t), 4096);
    sh->off_bp_samples = off;
    off += round_up(n * PH_BP_SAMPLES * sizeof(uint32_t), 4096);
    sh->off_final = off;
    sh->round = PH_ROUND(0, PH_SYNC_DONE);
    sh->cur_site = (uint64_t)-1;
    sh->abi = PH_ABI_VERSION;
    /* Pairs with the acquire load in ph_shared_check(): a reader that sees
     * the magic sees the layout. */
    ph_store_release(&sh->magic, PH_MAGIC);
}

int ph_shared_check(const void *base, uint64_t len)
{
    const struct ph_shared *sh = base;
    if (len < sizeof(*sh))
        return -22; /* EINVAL */
    if (ph_load_acquire(&sh->magic) != PH_MAGIC)
        return -11; /* EAGAIN: not laid out yet */
    if (sh->abi != PH_ABI_VERSION || sh->size > len)
        return -22;
    return 0;
}

struct ph_counters *ph_shared_counters(void *base, int thread)
{
    struct ph_shared *sh = base;
    if (thread < 0 || thread >= sh->nthreads)
        return NULL;
    return (struct ph_counters *)((char *)base + sh->off_threads) + thread;
}

uint64_t ph_shared_stop(void *base)
{
    struct ph_shared *sh = base;
    /* Pairs with the acquire loads of sh->stop in the primary's loop. */
    ph_store_release(&sh->stop, 1);
    return ph_load_relaxed(&sh->round);
}

/* Each thread's ring is trace_len events; slot 0's stamp is the ring's head
 * (events reserved so far) and slots 1.. hold the events. */
static uint64_t *trace_head(struct ph_shared *sh, int thread)
{
    struct ph_event *ring = (struct ph_event *)((char *)sh + sh->off_trace) +
                            (uint64_t)thread * (uint64_t)sh->trace_len;
    return &ring[0].stamp;
}

void ph_trace(struct ph_engine *e, int type, int ctx, int site, uint64_t round, uint32_t arg)
{
    if (e->sh->trace_len >= 2)
        ph_trace_at(e, ph_now_ns(), type, ctx, site, round, arg);
}

/* ph_trace() with a timestamp the caller already took. */
void ph_trace_at(struct ph_engine *e, uint64_t ts, int type, int ctx, int site, uint64_t round,
                 uint32_t arg)
{
    struct ph_shared *sh = e->sh;
    int t = ph_self.idx;
    if (sh->trace_len < 2 || t < 0)
        return;
    uint64_t *head = trace_head(sh, t);
    /* Reserve a slot; a handler interrupting us reserves the next one.  One
     * non-locked xadd: indivisible for this thread's own handlers, the only
     * other writers of this ring (see ph_count()). */
    uint64_t i = 1;
    __asm__ __volatile__("xaddq %0, %1" : "+r"(i), "+m"(*head) : : "cc");
    uint64_t slots = (uint64_t)sh->trace_len - 1;
    struct ph_event *ev = (struct ph_event *)((char *)sh + sh->off_trace) +
                          (uint64_t)t * (uint64_t)sh->trace_len + 1 + (i % slots);
    ph_store_relaxed(&ev->stamp, 0);
    ev->ts = ts;
    ev->round = round;
    ev->type = (uint16_t)type;
    ev->ctx = (uint16_t)ctx;
    ev->site = site;
    ev->arg = arg;
    /* Pairs with the acquire load of the stamp in ph_trace_read(). */
    ph_store_release(&ev->stamp, i + 1);
}

int ph_trace_read(const void *base, int thread, struct ph_event *out, int max)
{
    const struct ph_shared *sh = base;
    if (sh->trace_len < 2 || thread < 0 || thread >= sh->nthreads || max <= 0)
        return 0;
    const struct ph_event *ring = (const struct ph_event *)((const char *)sh + sh->off_trace) +
                                  (uint64_t)thread * (uint64_t)sh->trace_len;
    uint64_t head = ph_load_acquire(&ring[0].stamp);
    uint64_t slots = (uint64_t)sh->trace_len - 1;
    uint64_t first = head > slots ? head - slots : 0;
    if (head - first > (uint64_t)max)
        first = head - (uint64_t)max;
    int n = 0;
    for (uint64_t i = first; i < head; i++) {
        const struct ph_event *ev = &ring[1 + (i % slots)];
        /* Pairs with the release store of the stamp in ph_trace(). */
        if (ph_load_acquire(&ev->stamp) != i + 1)
            continue;  /* being rewritten: skip rather than return a torn event */
        out[n++] = *ev;
    }
    return n;
}

void ph_violation(struct ph_engine *e, int reason, int thread, int site, int ctx,
                  uint64_t round, uint64_t a, uint64_t b, uint64_t c)
{
    struct ph_shared *sh = e->sh;
    int inv = ph_reason_invariant(reason);
    ph_trace(e, PH_EV_VIOLATION, ctx, site, round, (uint32_t)inv);
    uint64_t seen = __atomic_fetch_add(&sh->inv_count[inv & 31], 1, __ATOMIC_RELAXED);
    if (seen >= PH_MAX_PER_INVARIANT)
        return;                 /* counted, not recorded */
    uint64_t i = __atomic_fetch_add(&sh->nviolations, 1, __ATOMIC_RELAXED);
    if (i >= PH_MAX_VIOLATIONS)
        return;
    struct ph_violation *v = &sh->violations[i];
    v->thread = thread;
    v->site = site;
    v->state = PH_ROUND_STATE(round);
    v->ctx = ctx;
    v->round = round;
    v->ts = ph_now_ns();
    v->reason = reason;
    v->a = a;
    v->b = b;
    v->c = c;
    /* Freeze the context now: the rings move on while the run goes on. */
    int n = thread >= 0 ? ph_trace_read(sh, thread, v->around, 8) : 0;
    if (sh->primary != thread)
        n += ph_trace_read(sh, sh->primary, v->around + n, 8);
    v->naround = n;
    /* invariant + 1 is written last: 0 means "slot not complete yet".
     * Pairs with the acquire load in the reader (pyharness/engine.py reads
     * it after the worker stopped, or tolerates a zero). */
    ph_store_release(&v->invariant, inv + 1);
}

void ph_series_add(struct ph_engine *e, int series, uint64_t ns)
{
    struct ph_shared *sh = e->sh;
    uint32_t *ring = (uint32_t *)((char *)sh + sh->off_series) + (uint64_t)series * PH_SAMPLES;
    uint64_t i = ph_load_relaxed(&sh->series_count[series]);
    ring[i % PH_SAMPLES] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
    /* Pairs with the acquire load in ph_series_read(). */
    ph_store_release(&sh->series_count[series], i + 1);
}

uint64_t ph_series_read(const void *base, int series, uint32_t *out, uint64_t max)
{
    const struct ph_shared *sh = base;
    if (series < 0 || series >= PH_NSERIES)
        return 0;
    const uint32_t *ring = (const uint32_t *)((const char *)sh + sh->off_series) +
                           (uint64_t)series * PH_SAMPLES;
    uint64_t n = ph_load_acquire(&sh->series_count[series]);
    uint64_t have = n < PH_SAMPLES ? n : PH_SAMPLES;
    if (have > max)
        have = max;
    for (uint64_t k = 0; k < have; k++)
        out[k] = ring[(n - have + k) % PH_SAMPLES];
    return have;
}

void ph_bp_sample(struct ph_engine *e, int thread, uint64_t ns)
{
    struct ph_shared *sh = e->sh;
    uint32_t *ring = (uint32_t *)((char *)sh + sh->off_bp_samples) + (uint64_t)thread * PH_BP_SAMPLES;
    uint64_t i = ph_load_relaxed(&e->thr[thread].bp_native) +
                 ph_load_relaxed(&e->thr[thread].bp_emulated) +
                 ph_load_relaxed(&e->thr[thread].bp_late);
    ring[i % PH_BP_SAMPLES] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

uint64_t ph_bp_samples_read(const void *base, int thread, uint32_t *out, uint64_t max)
{
    const struct ph_shared *sh = base;
    if (thread < 0 || thread >= sh->nthreads)
        return 0;
    const struct ph_counters *c = (const struct ph_counters *)((const char *)sh + sh->off_threads) + thread;
    const uint32_t *ring = (const uint32_t *)((const char *)sh + sh->off_bp_samples) +
                           (uint64_t)thread * PH_BP_SAMPLES;
    uint64_t n = ph_load_acquire(&c->bp_native) + ph_load_acquire(&c->bp_emulated) +
                 ph_load_acquire(&c->bp_late);
    uint64_t have = n < PH_BP_SAMPLES ? n : PH_BP_SAMPLES;
    if (have > max)
        have = max;
    for (uint64_t k = 0; k < have; k++)
        out[k] = ring[(n - have + k) % PH_BP_SAMPLES];
    return have;
}

uint64_t ph_splitmix(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);  /* vDSO; async-signal-safe */
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/*
 * Timestamps are taken many times per patched site (trace, waits), so they
 * come from the invariant TSC when CPUID promises one (0x80000007 EDX[8]):
 * about 9 ns here against 21 ns for clock_gettime.  ph_clock_calibrate()
 * maps ticks to CLOCK_MONOTONIC once; until then, and without an invariant
 * TSC, clock_gettime is used.  The mapping is written before `tsc_ok` is
 * released and read after it is acquired, so a handler sees all or none.
 */
static uint64_t tsc_base, ns_base, tsc_mult;   /* ns = ns_base + (tsc - tsc_base) * mult >> 32 */
static int tsc_ok;

void ph_clock_calibrate(void)
{
    unsigned a, b, c, d;
    if (ph_load_acquire(&tsc_ok))          /* pairs with the release below */
        return;
    __asm__ __volatile__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x80000000u));
    if (a < 0x80000007u)
        return;
    __asm__ __volatile__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x80000007u));
    if (!((d >> 8) & 1))
        return;                            /* no invariant TSC: keep clock_gettime */
    uint64_t n0 = mono_ns(), t0 = __builtin_ia32_rdtsc();
    uint64_t n1, t1;
    do {
        n1 = mono_ns();
        t1 = __builtin_ia32_rdtsc();
    } while (n1 - n0 < 2000000);           /* 2 ms */
    tsc_mult = (uint64_t)(((__uint128_t)(n1 - n0) << 32) / (t1 - t0));
    tsc_base = t1;
    ns_base = n1;
    ph_store_release(&tsc_ok, 1);          /* pairs with the acquire in ph_now_ns() */
}

uint64_t ph_now_ns(void)
{
    if (!ph_load_acquire(&tsc_ok))         /* pairs with ph_clock_calibrate() */
        return mono_ns();
    uint64_t t = __builtin_ia32_rdtsc();
    return ns_base + (uint64_t)(((__uint128_t)(t - tsc_base) * tsc_mult) >> 32);
}

#ifndef PH_BUILD_FLAGS
#define PH_BUILD_FLAGS "unknown"
#endif

/* The compiler and flags this core was built with (reports' evidence). */
const char *ph_build_compiler(void)
{
#ifdef __clang__
    return "clang " __clang_version__;
#else
    return "gcc " __VERSION__;
#endif
}

const char *ph_build_flags(void)
{
    return PH_BUILD_FLAGS;
}

