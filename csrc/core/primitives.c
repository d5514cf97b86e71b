/*
 * primitives.c -- what every protocol is built from: the published state
 * (publish, wait for its change), bounded spins, the ack wait's end and
 * give-up, and one step's writes.  The events the observer and the stress
 * conditions subscribe to are emitted here (ph_events.h), so a protocol
 * built from these cannot leave one out.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <linux/membarrier.h>
#include <unistd.h>
#include "ph_internal.h"

int ph_current_ctx(void)
{
    struct ph_counters *c = ph_self.c;
    if (!c)
        return PH_CTX_THREAD;
    return (c->nmi_active ? PH_CTX_NMI : 0) | (c->bp_depth ? PH_CTX_BP : 0);
}

int ph_aborted(struct ph_engine *e)
{
    return ph_load_relaxed(&e->sh->status) == STATUS_ABORTED;
}

void ph_abort_run(struct ph_engine *e)
{
    /* The first to abort freezes every thread's wait for the diagnosis:
     * once aborted they all leave their loops. */
    uint64_t running = STATUS_RUNNING;
    if (__atomic_compare_exchange_n(&e->sh->status, &running, STATUS_ABORTED, 0,
                                    __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
        for (int i = 0; i < e->cfg.nthreads; i++) {
            ph_store_relaxed(&e->thr[i].where_abort, ph_load_relaxed(&e->thr[i].where));
            ph_store_relaxed(&e->thr[i].seen_abort, ph_load_relaxed(&e->thr[i].seen_round));
        }
        for (int w = 0; w < 16; w++)
            ph_store_relaxed(&e->sh->abort_map[w], ph_load_relaxed(&e->sh->sync_ack_map[w]));
        ph_store_relaxed(&e->sh->abort_round, ph_load_relaxed(&e->sh->round) | (1ULL << 63));
    }
    ph_store_relaxed(&e->sh->status, STATUS_ABORTED);
}

/*
 * One step of a bounded spin: pause first (cfg.spin_pauses times), then
 * sched_yield() so that more threads than CPUs still make progress: on a
 * shared CPU the thread waited for cannot run while its waiter spins, so
 * there the budget is small.  Returns -ETIMEDOUT past deadline.
 *
 * Every 64th step also measures the wait's stall: how long the thread it
 * waits for (awaited) has shown no progress while this one waited, its
 * longest kept in the waiter's counters.  A wait's first measure starts
 * it; a wait that ends (its condition, the run's stop) keeps what it had.
 */
static uint64_t progress_of(const struct ph_engine *e, int awaited)
{
    if (awaited >= 0 && awaited < e->cfg.nthreads)
        return ph_load_relaxed(&e->thr[awaited].progress);
    if (awaited == PH_AWAIT_ANY) {
        uint64_t sum = 0;
        for (int i = 0; i < e->cfg.nthreads; i++)
            if (i != ph_self.idx)
                sum += ph_load_relaxed(&e->thr[i].progress);
        return sum;
    }
    return ph_load_relaxed(&e->sh->round);    /* PH_AWAIT_STATE: the state moves */
}

static void stall_measure(const struct ph_engine *e, uint64_t n, int awaited, uint64_t on,
                          uint64_t now)
{
    struct ph_counters *c = ph_self.c;
    if (!c || awaited == PH_AWAIT_NONE)
        return;
    int lvl = (c->in_nmi ? 2 : 0) | (c->in_bp ? 1 : 0);
    uint64_t p = progress_of(e, awaited);
    if (n == 64 || p != ph_self.w_prog[lvl]) {
        ph_self.w_prog[lvl] = p;
        ph_self.w_since[lvl] = now;
        return;
    }
    uint64_t still = now - ph_self.w_since[lvl];
    if (still > c->stall_ns) {
        /* Relaxed: one writer, read by the supervisor as evidence. */
        ph_store_relaxed(&c->stall_for, (int64_t)awaited);
        ph_store_relaxed(&c->stall_on, on);
        ph_store_relaxed(&c->stall_where, c->where);
        ph_store_relaxed(&c->stall_end, now);
        ph_store_relaxed(&c->stall_ns, still);
    }
}

int ph_spin_step(const struct ph_engine *e, uint64_t *spins, uint64_t deadline, int awaited,
                 uint64_t on)
{
    uint64_t n = ++*spins;
    if ((n & 63) == 0) {
        uint64_t now = ph_now_ns();
        if (now > deadline)
            return -ETIMEDOUT;
        stall_measure(e, n, awaited, on, now);
    }
    if (n <= e->cfg.spin_pauses)
        ph_cpu_relax();
    else
        sched_yield();
    return 0;
}

void ph_account_wait(struct ph_counters *c, uint64_t t0)
{
    if (c && t0)
        ph_count(&c->wait_ns, ph_now_ns() - t0);
}

/* Wait for the published round to differ from prev.  *waited gets the
 * time the wait began (0 if it did not spin): the caller accounts it after
 * acking, so no timestamp sits between seeing a state and acking it. */
uint64_t ph_wait_round_change(struct ph_engine *e, uint64_t prev, int ctx, int *err,
                                  uint64_t *waited)
{
    uint64_t spins = 0, t0 = 0, deadline = 0;
    for (;;) {
        /* Pairs with the release store of the round in publish(). */
        uint64_t r = ph_state_read(e, ctx);
        if (r != prev) {
            *waited = t0;
            return r;
        }
        int rc = ph_wait_step(e, &spins, &t0, &deadline, prev);
        if (rc == -ETIMEDOUT) {
            ph_violation(e, PH_R_STATE_CHANGE, ph_self.idx, -1, ctx, r, e->cfg.deadline_ns, 0, 0);
            ph_abort_run(e);
        }
        if (rc < 0) {
            *err = rc;
            return r;
        }
    }
}

/* A step of a wait for the published state that has not seen its change
 * yet (ours above, the posted code's smp_cond_load_acquire): -ECANCELED
 * once the run aborted; else the wait's clock starts at its first step, a
 * heartbeat, a pause or a yield, and -ETIMEDOUT past the deadline (the
 * caller names what it waited for). */
int ph_wait_step(struct ph_engine *e, uint64_t *spins, uint64_t *t0, uint64_t *deadline,
                 uint64_t on)
{
    if (ph_aborted(e))
        return -ECANCELED;
    if (!*t0) {
        *t0 = ph_now_ns();
        *deadline = *t0 + e->cfg.deadline_ns;
    }
    ph_beat(ph_self.c);
    return ph_spin_step(e, spins, *deadline, PH_AWAIT_STATE, on);
}

/* Returns the time of publication (the start of the ack wait).  The
 * publish event's arg names the poke just written (STEP_*: 1 INT3, 2 tail,
 * 3 first byte, 0 none): one event per round on the critical path. */
uint64_t ph_publish(struct ph_engine *e, uint64_t r, int step)
{
    uint64_t prev = ph_load_relaxed(&e->sh->round);   /* only the primary stores it */
    /* release: the pokes before it are visible to a secondary that sees r.
     * Pairs with the acquire loads of the round in the protocols' waits,
     * sync loops and finish loops, and in the executors. */
    ph_store_release(&e->sh->round, r);
    /* The publication's subscribers (the observer's checks), now: the
     * secondaries take the state meanwhile, so the checks cost no
     * hand-off.  They still see the bytes as they were at the store: only
     * this thread writes text, and it writes the next step only after this. */
    struct ph_ev x;
    x.c = ph_self.c;
    x.prev = prev;
    x.r = r;
    ph_emit(e, PH_E_PUBLISH, &x);
    return ph_publish_trace(e, r, step);
}

/* The store alone (the posted code clears its map right after it, with
 * nothing of ours in between: the observer looks just before). */
void ph_publish_store(struct ph_engine *e, uint64_t r)
{
    struct ph_ev x;
    x.c = ph_self.c;
    x.prev = ph_load_relaxed(&e->sh->round);   /* only the primary stores it */
    x.r = r;
    ph_emit(e, PH_E_PUBLISH, &x);
    /* release: the pokes before it are visible to a secondary that sees r.
     * Pairs with the acquire loads of the round in the protocols' waits,
     * sync loops and finish loops, and in the executors. */
    ph_store_release(&e->sh->round, r);
}

uint64_t ph_publish_trace(struct ph_engine *e, uint64_t r, int step)
{
    uint64_t t = ph_now_ns();
    ph_trace_at(e, t, PH_EV_PUBLISH, PH_CTX_THREAD, (int)ph_load_relaxed(&e->sh->cur_site), r,
                (uint32_t)step);
    return t;
}

/* The end of a primary's wait for the acks of round r, begun at t0: its
 * time, and the per-state ack-wait sample (both protocols). */
void ph_ack_wait_done(struct ph_engine *e, uint64_t r, uint64_t t0)
{
    uint64_t dt = ph_now_ns() - t0;
    ph_count(&ph_self.c->wait_ns, dt);
    int st = PH_ROUND_STATE(r);
    if (st <= PH_SYNC_DONE)
        ph_series_add(e, PH_SERIES_ACK_NS_0 + st, dt);
}

/* A primary's ack wait that ran out of time or saw the run aborted (both
 * protocols): a timeout names its round (stuck_round) and the deadline
 * violation -- thread: whom it waited for, reason, b, c: what it saw of the acks --
 * then the run aborts.  Called before the caller restores its `where`, so
 * the abort freezes the wait where it was.  Returns the wait's code. */
int ph_ack_wait_failed(struct ph_engine *e, uint64_t r, int timed_out, int thread, int ctx,
                       int reason, uint64_t b, uint64_t c)
{
    if (timed_out) {
        ph_store_relaxed(&e->sh->stuck_round, r);
        ph_violation(e, reason, thread, (int)ph_load_relaxed(&e->sh->cur_site), ctx, r,
                     e->cfg.deadline_ns, b, c);
    }
    ph_abort_run(e);
    return timed_out ? -ETIMEDOUT : -ECANCELED;
}

/* The tail write, a step a seeded bug may replace (struct ph_steps). */
void ph_poke_tail(struct ph_engine *e, const struct ph_patch *p)
{
    ph_text_poke(e, p->addr + 1, p->text + 1, (size_t)p->len - 1);
}

/* One step's writes, every site of the round (the protocols' poke_sync()). */
void ph_poke_step(struct ph_engine *e, struct ph_patch *vec, int n, int step)
{
    struct ph_counters *c = ph_self.c;
    static const uint8_t int3 = PH_INT3;
    if (step != STEP_NONE) {
        /* Note: we may take a breakpoint (via an NMI) right after these
         * writes, before the state changes; the primary's breakpoint path
         * finishes the site locally (or runs a block out of line), so we
         * make progress. */
        int64_t where = c->where;
        c->where = PH_WHERE_POKE;
        for (int i = 0; i < n; i++) {
            struct ph_patch *p = &vec[i];
            if (step == STEP_INT3) {
                ph_text_poke(e, p->addr, &int3, 1);
            } else if (step == STEP_TAIL) {
                PH_STEP(e, poke_tail, ph_poke_tail, e, p);
            } else {
                ph_text_poke(e, p->addr, p->text, 1);
            }
        }
        c->where = where;
        struct ph_ev x;
        x.c = c;
        x.arg = step;
        ph_emit(e, PH_E_STEP_DONE, &x);
    }
}

void ph_busy_wait(uint64_t ns)
{
    uint64_t end = ph_now_ns() + ns;
    while (ph_now_ns() < end)
        ph_cpu_relax();
}


/* ------------------------------------------------------------------ */
/* Acks                                                                */

/*
 * The forward-only ack word (proto/rfc.c): give the ack for round r unless
 * a later one is already there.  in_sync_loop: given from the sync loop
 * (which must never ack SYNC_DONE).  Its subscribers hear it once it is
 * visible.  Returns 1 if this call gave it.
 */
/* The ACK event: an ack of r became visible (both kinds of ack below). */
static void ack_event(struct ph_engine *e, struct ph_counters *c, uint64_t r, int ctx, int in_loop)
{
    struct ph_ev x;
    x.c = c;
    x.r = r;
    x.ctx = ctx;
    x.arg = in_loop;
    ph_emit(e, PH_E_ACK, &x);
}

int ph_ack_word(struct ph_engine *e, struct ph_counters *c, uint64_t r, int ctx, int in_sync_loop)
{
    uint64_t old = ph_load_relaxed(&c->acked_round);
    while (old < r) {
        /* release: pairs with the acquire load of the ack word in the
         * protocol's wait for acks: the primary sees our sync_one() as done. */
        if (__atomic_compare_exchange_n(&c->acked_round, &old, r, 0,
                                        __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
            ack_event(e, c, r, ctx, in_sync_loop);
            return 1;
        }
    }
    return 0;
}

/* What an ack word means to the observer (struct ph_proto acked): the
 * last round thread i acked. */
uint64_t ph_ack_word_acked(struct ph_engine *e, int i, uint64_t r)
{
    (void)r;
    return ph_load_acquire(&e->thr[i].acked_round);   /* pairs: ph_ack_word() */
}

/* The RFC's shared ack map (proto/posted.c), a bit per participant. */
int ph_map_test(struct ph_engine *e, int i)
{
    /* cpumask_test_cpu(): a plain read */
    return (int)((ph_load_relaxed(&e->sh->sync_ack_map[i / 64]) >> (i % 64)) & 1);
}

void ph_map_set(struct ph_engine *e, int i)
{
    /* cpumask_set_cpu(): a locked or.  release: pairs with the acquire
     * loads of the map in ph_map_weight(). */
    __atomic_fetch_or(&e->sh->sync_ack_map[i / 64], 1ULL << (i % 64), __ATOMIC_RELEASE);
}

void ph_map_clear(struct ph_engine *e)
{
    /* cpumask_clear(): plain stores, after the state was published. */
    for (int w = 0; w < 16; w++)
        ph_store_relaxed(&e->sh->sync_ack_map[w], 0);
}

int ph_map_weight(struct ph_engine *e)
{
    int n = 0;
    for (int w = 0; w < 16; w++)   /* pairs with the release fetch_or in ph_map_set() */
        n += __builtin_popcountll(ph_load_acquire(&e->sh->sync_ack_map[w]));
    return n;
}

/*
 * cpumask_set_cpu(me) as an ack.  Its subscribers are told which state's
 * map the bit landed in: the state published when the bit is seen set
 * after the store, if it is still published (otherwise the primary may
 * have cleared it: a lost ack, which the hang's diagnosis shows).
 */
void ph_ack_map(struct ph_engine *e, struct ph_counters *c, int ctx, int in_sync_loop)
{
    int me = ph_self.idx;
    uint64_t r0 = ph_load_acquire(&e->sh->round);         /* pairs: ph_publish() */
    ph_map_set(e, me);
    uint64_t r = ph_load_acquire(&e->sh->round);
    ph_store_relaxed(&c->acked_round, r);                 /* for reports only */
    /* The same state before and after the set, and the bit still there:
     * the bit landed in that state's map.  Otherwise it is unknown which
     * (the primary may have published and cleared in between): not
     * credited, and the hang's diagnosis shows the map as it was. */
    if (r0 == r && ph_map_test(e, me) && ph_load_acquire(&e->sh->round) == r)
        ack_event(e, c, r, ctx, in_sync_loop);
}
