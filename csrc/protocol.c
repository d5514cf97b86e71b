/*
 * protocol.c -- the RFC's patching state machine in user space.
 *
 * Primary, for each round of sites (text_poke_site / text_poke_bp_batch):
 *   1. make the text writable, publish the breakpoint descriptor;
 *   2. first step:  write INT3 over byte 0,      poke_sync(SYNC_0);
 *   3. second step: write the tail (bytes 1..),  poke_sync(SYNC_1);
 *   4. third step:  write the new byte 0,        poke_sync(SYNC_2);
 *   5. poke_sync(SYNC_DONE) with nothing written: every secondary has left
 *      both thread and breakpoint context;
 *   6. retract the descriptor, wait for its references to drop to zero,
 *      restore the text's protection, check the bytes.
 * After the last round: publish DONE.
 *
 * poke_sync(): write, publish the state with release, serialize ourselves,
 * wait until every secondary acked it.
 *
 * Secondary (text_poke_sync_site), in thread or breakpoint context: on each
 * new state below SYNC_DONE not yet acked: sync_one(), ack.  Return on
 * SYNC_DONE without acking it; the finish loop acks SYNC_DONE in thread
 * context.
 *
 * Acks.  The RFC keeps one bit per CPU in a shared map that the primary
 * clears before each state.  With a re-entrant sync loop that map has a
 * window: an NMI between the thread-context test and set of the bit lets the
 * breakpoint path ack that state and later ones, after which the resumed
 * thread context sets its bit into a *later* round's cleared map -- a false
 * ack.  Here each participant owns one ack word (on its own cache line,
 * PH_MAX_THREADS of them: the "map") holding the last round it acked;
 * rounds encode (site sequence, state) and only grow, so an ack is a single
 * forward-only compare-and-swap that a handler cannot tear.
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

struct ph_engine *ph_engine_live;
__thread struct ph_self ph_self __attribute__((tls_model("initial-exec"))) = {NULL, NULL, -1, 0};

void ph_shared_layout(struct ph_shared *sh, const struct ph_config *cfg, uint64_t size);

enum { STEP_NONE, STEP_INT3, STEP_TAIL, STEP_FIRST };
#define STATUS_RUNNING 0
#define STATUS_DONE 1
#define STATUS_ABORTED 2

int ph_current_ctx(void)
{
    struct ph_counters *c = ph_self.c;
    if (!c)
        return PH_CTX_THREAD;
    return (c->nmi_active ? PH_CTX_NMI : 0) | (c->bp_depth ? PH_CTX_BP : 0);
}

static int aborted(struct ph_engine *e)
{
    return ph_load_relaxed(&e->sh->status) == STATUS_ABORTED;
}

static void abort_run(struct ph_engine *e)
{
    ph_store_relaxed(&e->sh->status, STATUS_ABORTED);
}

/*
 * One step of a bounded spin: pause first (cfg.spin_pauses times), then
 * sched_yield() so that more threads than CPUs still make progress: on a
 * shared CPU the thread waited for cannot run while its waiter spins, so
 * there the budget is small.  Returns -ETIMEDOUT past deadline.
 */
static int spin_step(const struct ph_engine *e, uint64_t *spins, uint64_t deadline)
{
    uint64_t n = ++*spins;
    if ((n & 63) == 0 && ph_now_ns() > deadline)
        return -ETIMEDOUT;
    if (n <= e->cfg.spin_pauses)
        ph_cpu_relax();
    else
        sched_yield();
    return 0;
}

static void account_wait(struct ph_counters *c, uint64_t t0)
{
    if (c && t0)
        ph_count(&c->wait_ns, ph_now_ns() - t0);
}

/* Wait for the published round to differ from prev.  *waited gets the
 * time the wait began (0 if it did not spin): the caller accounts it after
 * acking, so no timestamp sits between seeing a state and acking it. */
static uint64_t wait_round_change(struct ph_engine *e, uint64_t prev, int ctx, int *err,
                                  uint64_t *waited)
{
    struct ph_counters *c = ph_self.c;
    uint64_t spins = 0, t0 = 0, deadline = 0;
    for (;;) {
        /* Pairs with the release store of the round in publish(). */
        uint64_t r = ph_load_acquire(&e->sh->round);
        if (r != prev) {
            *waited = t0;
            return r;
        }
        if (aborted(e)) {
            *err = -ECANCELED;
            return r;
        }
        if (!t0) {
            t0 = ph_now_ns();
            deadline = t0 + e->cfg.deadline_ns;
        }
        ph_beat(c);
        if (spin_step(e, &spins, deadline) < 0) {
            ph_violation(e, PH_INV_DEADLINE, ph_self.idx, -1, ctx, r, e->cfg.deadline_ns, 0);
            abort_run(e);
            *err = -ETIMEDOUT;
            return r;
        }
    }
}

/*
 * Give the ack for round r.  in_sync_loop: called from the sync loop (which
 * must never ack SYNC_DONE).  The observer counts it and holds it to the
 * serialization evidence once it is visible.
 */
static void give_ack(struct ph_engine *e, struct ph_counters *c, uint64_t r, int ctx,
                     int in_sync_loop)
{
    uint64_t old = ph_load_relaxed(&c->acked_round);
    while (old < r) {
        /* release: pairs with the acquire load of the ack word in
         * wait_for_acks(): the primary sees our sync_one() as done. */
        if (__atomic_compare_exchange_n(&c->acked_round, &old, r, 0,
                                        __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
            ph_chk_ack(e, c, r, ctx, in_sync_loop);
            return;
        }
    }
}

/* The RFC's literal map (PH_MUT_RFC_BITMAP): one bit per thread, cleared
 * by the primary before each state. */
static int map_test(struct ph_engine *e, int i)
{
    return (int)((ph_load_relaxed(&e->sh->sync_ack_map[i / 64]) >> (i % 64)) & 1);
}

static void map_set(struct ph_engine *e, int i)
{
    /* release: pairs with the acquire loads in wait_for_acks(). */
    __atomic_fetch_or(&e->sh->sync_ack_map[i / 64], 1ULL << (i % 64), __ATOMIC_RELEASE);
}

/* RFC: acked = cpumask_test_cpu(); if (!acked) { sync_one(); cpumask_set_cpu(); }
 * An NMI between the test and the set runs the breakpoint path, which acks
 * this state and later ones; the resumed set then lands in a later round. */
static void rfc_bitmap_ack(struct ph_engine *e, struct ph_counters *c, uint64_t r, int ctx,
                           int sync, int in_sync_loop)
{
    if (map_test(e, ph_self.idx))
        return;
    if (sync)
        ph_sync_core(e);
    map_set(e, ph_self.idx);
    ph_store_relaxed(&c->acked_round, r);     /* for reports only */
    ph_chk_ack(e, c, r, ctx, in_sync_loop);
}

/* The secondary's handling of one observed state below SYNC_DONE. */
static void sync_and_ack(struct ph_engine *e, struct ph_counters *c, uint64_t r, int ctx)
{
    if (e->cfg.mutant == PH_MUT_RFC_BITMAP) {
        rfc_bitmap_ack(e, c, r, ctx, 1, 1);
        return;
    }
    if (ph_load_relaxed(&c->acked_round) >= r)
        return;                     /* a state already acked is not acked again */
    if (e->cfg.mutant != PH_MUT_SKIP_SYNC_ONE) {
        ph_sync_core(e);
        if (ctx != PH_CTX_THREAD)
            ph_trace(e, PH_EV_SYNC, ctx, -1, r, 0);
    }
    give_ack(e, c, r, ctx, 1);
    if (e->cfg.mutant == PH_MUT_DOUBLE_ACK)
        give_ack(e, c, r + 1, ctx, 1);   /* the second ack lands on the next state */
}

/*
 * text_poke_sync_site(): called in thread context with the state below
 * SYNC_DONE, or re-entrantly from breakpoint context.  Returns having
 * observed SYNC_DONE (or later) of round seq `min_seq` or later, without
 * acking it.
 *
 * min_seq: the round that owns the INT3 a breakpoint hit (0 in thread
 * context).  The primary writes a round's INT3 before it publishes the
 * round's SYNC_0; a handler that trapped in between still sees the previous
 * round's SYNC_DONE.  Returning then would re-execute straight into the
 * same INT3, again and again until the primary publishes (a trap storm the
 * aimed NMIs made visible): wait for the owning round instead, then help it.
 */
void ph_sync_site(struct ph_engine *e, int ctx, uint64_t min_seq)
{
    struct ph_counters *c = ph_self.c;
    int64_t where = c->where;
    if (ctx == PH_CTX_THREAD)
        c->where = PH_WHERE_SYNC_LOOP;
    /* Pairs with the release store of the round in publish(). */
    uint64_t r = ph_load_acquire(&e->sh->round), waited = 0;
    while (PH_ROUND_SEQ(r) < min_seq) {
        int err = 0;
        r = wait_round_change(e, r, ctx, &err, &waited);
        if (err) {
            c->where = where;
            return;
        }
    }
    for (;;) {
        int st = PH_ROUND_STATE(r), err = 0;
        if (ctx != PH_CTX_THREAD)   /* where state jumps happen */
            ph_trace(e, PH_EV_STATE_SEEN, ctx, -1, r, 0);
        if (e->cfg.mutant == PH_MUT_PATCH_SYNC_LOOP && st < PH_SYNC_DONE) {
            /* The sync loop itself runs a site being patched (as if
             * sync_one() were a paravirt call): the RFC's unhandled case. */
            int32_t n = ph_load_acquire(&e->cur_n);  /* pairs: patch_batch() */
            if (n > 0)
                ph_exec_check(e, e->cur_ids[0], ctx, NULL);
        }
        if (st >= PH_SYNC_DONE)
            break;
        if (e->cfg.force_nmi & 2 && ctx == PH_CTX_THREAD && st == PH_SYNC_0 &&
            ph_load_relaxed(&c->acked_round) < r)
            ph_nmi_self(e);         /* take the breakpoint in NMI context */
        if (ctx == PH_CTX_THREAD)
            ph_chk_aim_secondary(e, r);
        sync_and_ack(e, c, r, ctx);
        ph_chk_seen(e, c, r, ctx);
        account_wait(c, waited);
        r = wait_round_change(e, r, ctx, &err, &waited);
        if (err)
            break;
    }
    c->where = where;
}

/* Participants whose acks the primary waits for. */
static int acks_from(struct ph_engine *e, int i)
{
    return i != e->cfg.primary && e->cfg.secsync == PH_SECSYNC_ACK &&
           e->thr[i].role != PH_ROLE_PRIMARY;
}

static int wait_for_acks(struct ph_engine *e, uint64_t r, uint64_t t0)
{
    struct ph_counters *c = ph_self.c;
    uint64_t deadline = t0 + e->cfg.deadline_ns, spins = 0;
    int64_t where = c->where;
    c->where = PH_WHERE_WAIT_ACKS;
    for (int i = 0; i < e->cfg.nthreads; i++) {
        if (!acks_from(e, i))
            continue;
        /* Pairs with the release CAS of the ack word in give_ack() (or,
         * for the RFC's map, the release fetch_or in map_set()). */
        while (e->cfg.mutant == PH_MUT_RFC_BITMAP
                   ? !((ph_load_acquire(&e->sh->sync_ack_map[i / 64]) >> (i % 64)) & 1)
                   : ph_load_acquire(&e->thr[i].acked_round) < r) {
            ph_beat(c);
            int timed_out = spin_step(e, &spins, deadline) < 0;
            if (timed_out || aborted(e)) {
                if (timed_out)   /* names the thread that never acked */
                    ph_store_relaxed(&e->sh->stuck_round, r);
                if (timed_out)
                    ph_violation(e, PH_INV_DEADLINE, i, (int)ph_load_relaxed(&e->sh->cur_site),
                                 PH_CTX_THREAD, r, e->cfg.deadline_ns,
                                 ph_load_relaxed(&e->thr[i].acked_round));
                abort_run(e);
                c->where = where;
                return timed_out ? -ETIMEDOUT : -ECANCELED;
            }
        }
    }
    uint64_t dt = ph_now_ns() - t0;
    ph_count(&c->wait_ns, dt);
    int st = PH_ROUND_STATE(r);
    if (st <= PH_SYNC_DONE)
        ph_series_add(e, PH_SERIES_ACK_NS_0 + st, dt);
    c->where = where;
    return 0;
}

/* Returns the time of publication (the start of the ack wait).  The
 * publish event's arg names the poke just written (STEP_*: 1 INT3, 2 tail,
 * 3 first byte, 0 none): one event per round on the critical path. */
static uint64_t publish(struct ph_engine *e, uint64_t r, int step)
{
    ph_chk_publish(e, ph_load_relaxed(&e->sh->round), r);
    if (e->cfg.mutant == PH_MUT_RFC_BITMAP)   /* the RFC clears its map each state */
        for (int w = 0; w < 16; w++)
            ph_store_relaxed(&e->sh->sync_ack_map[w], 0);
    /* release: the pokes before it are visible to a secondary that sees r.
     * Pairs with the acquire loads of the round in wait_round_change(),
     * ph_sync_site(), the finish loop and the executors. */
    ph_store_release(&e->sh->round, r);
    uint64_t t = ph_now_ns();
    ph_trace_at(e, t, PH_EV_PUBLISH, PH_CTX_THREAD, (int)ph_load_relaxed(&e->sh->cur_site), r,
                (uint32_t)step);
    return t;
}

static void busy_wait(uint64_t ns)
{
    uint64_t end = ph_now_ns() + ns;
    while (ph_now_ns() < end)
        ph_cpu_relax();
}

static int poke_sync(struct ph_engine *e, struct ph_patch *vec, int n, int st, int step)
{
    struct ph_counters *c = ph_self.c;
    static const uint8_t int3 = PH_INT3;
    if (step != STEP_NONE) {
        /* Note: we may take a breakpoint (via an NMI) right after these
         * writes, before the state changes below; the primary's breakpoint
         * path finishes the site locally so we make progress. */
        int64_t where = c->where;
        c->where = PH_WHERE_POKE;
        for (int i = 0; i < n; i++) {
            struct ph_patch *p = &vec[i];
            if (step == STEP_INT3) {
                ph_text_poke(e, p->addr, &int3, 1);
            } else if (step == STEP_TAIL) {
                if (e->cfg.mutant != PH_MUT_LOST_TAIL)
                    ph_text_poke(e, p->addr + 1, p->text + 1, (size_t)p->len - 1);
            } else {
                ph_text_poke(e, p->addr, p->text, 1);
            }
        }
        c->where = where;
        ph_chk_aim_primary(e, step);
    }
    if (e->cfg.inject_delay_ns)
        busy_wait(e->cfg.inject_delay_ns);
    uint64_t r = PH_ROUND(e->seq, st);
    /* Counted before it is published: the checker holds each secondary's
     * acks to the primary's count, and a crash between publish and count
     * must not show a secondary acking a round never counted. */
    ph_count(&c->acks[st], 1);
    ph_count(&c->rounds, 1);
    uint64_t t_pub = publish(e, r, step);
    ph_sync_core(e);
    /* The primary acks itself (its publish event already says so, so no
     * trace event here on the critical path). */
    ph_store_release(&c->acked_round, r);         /* pairs: nobody waits on it */
    if (e->cfg.secsync == PH_SECSYNC_MEMBARRIER) {
        if (st < PH_SYNC_DONE && ph_membarrier_core(e) < 0)
            return -errno;
        return 0;
    }
    if (e->cfg.mutant == PH_MUT_SKIP_ACK_WAIT)
        return 0;
    return wait_for_acks(e, r, t_pub);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* One site's entry in a round: its new bytes are the other variant's. */
static void fill_patch(struct ph_engine *e, struct ph_patch *p, int site)
{
    struct ph_site *s = &e->sites[site];
    p->addr = s->addr;
    p->site = site;
    p->len = s->len;
    p->new_variant = !s->variant;
    p->new_value = s->value[p->new_variant];
    memcpy(p->text, s->text[p->new_variant], PH_SITE_MAX_LEN);
}

static int patch_batch(struct ph_engine *e, int *ids, int n)
{
    struct ph_counters *c = ph_self.c;
    uint64_t t0 = ph_now_ns();
    if (n > 1)
        qsort(ids, (size_t)n, sizeof(int), cmp_int);  /* the descriptor's vec is address-ordered */
    e->seq++;
    struct ph_bp_desc *d = &e->desc[e->seq & 1];
    struct ph_patch *vec = e->patches + (e->seq & 1) * PH_MAX_BATCH;
    uint64_t lo = UINT64_MAX, hi = 0;
    for (int i = 0; i < n; i++) {
        struct ph_patch *p = &vec[i];
        fill_patch(e, p, ids[i]);
        if (p->addr < lo)
            lo = p->addr;
        if (p->addr + (uint64_t)p->len > hi)
            hi = p->addr + (uint64_t)p->len;
        e->cur_ids[i] = ids[i];
    }
    ph_store_relaxed(&e->sh->cur_site, (uint64_t)ids[0]);
    /* Pairs with the acquire loads of cur_n in the NMI handler. */
    ph_store_release(&e->cur_n, n);

    int rc = ph_text_open(e, lo, hi);
    if (rc < 0)
        return rc;
    d->vec = vec;
    d->nr = n;
    d->native = e->cfg.bp == PH_BP_NATIVE;
    d->seq = e->seq;
    ph_store_relaxed(&d->gen, ++e->sh->desc_gen);   /* read by handlers holding a ref */
    ph_store_relaxed(&d->retired, 0);
    /* Pairs with the acquire CAS in desc_try_get(). */
    ph_store_release(&d->refs, 1);
    /* Publish before the first INT3 exists: a CPU that traps must find it.
     * Pairs with the acquire load in desc_try_get(). */
    ph_store_release(&e->bp_desc, d);

    switch (e->cfg.mutant) {
    case PH_MUT_NO_INT3:
        if ((rc = poke_sync(e, vec, n, PH_SYNC_0, STEP_NONE)) ||
            (rc = poke_sync(e, vec, n, PH_SYNC_1, STEP_TAIL)) ||
            (rc = poke_sync(e, vec, n, PH_SYNC_2, STEP_FIRST)))
            goto out;
        break;
    case PH_MUT_FIRST_BYTE_FIRST:
        if ((rc = poke_sync(e, vec, n, PH_SYNC_0, STEP_INT3)) ||
            (rc = poke_sync(e, vec, n, PH_SYNC_1, STEP_FIRST)) ||
            (rc = poke_sync(e, vec, n, PH_SYNC_2, STEP_TAIL)))
            goto out;
        break;
    default:
        /* first step: INT3 over byte 0 */
        if ((rc = poke_sync(e, vec, n, PH_SYNC_0, STEP_INT3)))
            goto out;
        if (e->cfg.force_nmi & 1)
            ph_nmi_self(e);     /* hit our own INT3 in NMI context */
        /* second step: the tail */
        if ((rc = poke_sync(e, vec, n, PH_SYNC_1, STEP_TAIL)))
            goto out;
        /* third step: the new first byte */
        if ((rc = poke_sync(e, vec, n, PH_SYNC_2, STEP_FIRST)))
            goto out;
        break;
    }
    /* Every secondary acks SYNC_DONE from thread context: no laggard can
     * still be in a breakpoint handler for this round. */
    if ((rc = poke_sync(e, vec, n, PH_SYNC_DONE, STEP_NONE)))
        goto out;

out:
    /* Retract the descriptor.  Pairs with the acquire load in desc_try_get(). */
    ph_store_release(&e->bp_desc, NULL);
    ph_trace(e, PH_EV_RETRACT, PH_CTX_THREAD, ids[0], ph_load_relaxed(&e->sh->round), (uint32_t)d->gen);
    if (__atomic_fetch_sub(&d->refs, 1, __ATOMIC_ACQ_REL) != 1 &&
        e->cfg.mutant != PH_MUT_EARLY_RETRACT) {
        uint64_t spins = 0, deadline = ph_now_ns() + e->cfg.deadline_ns;
        int64_t where = c->where;
        c->where = PH_WHERE_WAIT_REFS;
        /* Pairs with the release decrement in desc_put(). */
        while (ph_load_acquire(&d->refs) != 0) {
            if (spin_step(e, &spins, deadline) < 0) {
                ph_violation(e, PH_INV_DEADLINE, ph_self.idx, ids[0], PH_CTX_THREAD,
                             ph_load_relaxed(&e->sh->round), e->cfg.deadline_ns,
                             (uint64_t)ph_load_relaxed(&d->refs));
                abort_run(e);
                rc = rc ? rc : -ETIMEDOUT;
                break;
            }
        }
        c->where = where;
    }
    /* Pairs with the acquire load of retired in the breakpoint handler. */
    ph_store_release(&d->retired, 1);
    ph_store_release(&e->cur_n, 0);   /* pairs: the NMI handler's acquire */
    ph_store_relaxed(&e->sh->cur_site, (uint64_t)-1);
    int rc2 = ph_text_close(e, lo, hi);
    if (rc)
        return rc;
    if (rc2)
        return rc2;

    /* The protocol's own record of what each site now is.  The observer
     * judges the bytes against the schedule, not against this. */
    for (int i = 0; i < n; i++)
        e->sites[vec[i].site].variant = vec[i].new_variant;
    ph_count(&c->sites_patched, (uint64_t)n);
    uint64_t dt = ph_now_ns() - t0;
    ph_series_add(e, PH_SERIES_BATCH_NS, dt);
    ph_series_add(e, PH_SERIES_SITE_NS, dt / (uint64_t)n);
    return 0;
}

int ph_primary_run(struct ph_engine *e, int64_t nsites, uint64_t until_ns)
{
    struct ph_counters *c = ph_self.c;
    if (!c || ph_self.e != e || ph_self.idx != e->cfg.primary)
        return -EPERM;
    int batch = e->cfg.batch, rc = 0;
    int *ids = malloc(sizeof(int) * (size_t)batch);
    if (!ids)
        return -ENOMEM;
    int64_t done = 0;
    c->where = PH_WHERE_POKE;
    e->sh->t_start = ph_now_ns();
    ph_chk_start(e);
    for (;;) {
        if (nsites >= 0 && done >= nsites)
            break;
        if (until_ns && ph_now_ns() >= until_ns)
            break;
        /* Pairs with the release store of stop in ph_shared_stop(). */
        if (ph_load_acquire(&e->sh->stop) || aborted(e))
            break;
        int n = batch;
        if (nsites >= 0 && nsites - done < n)
            n = (int)(nsites - done);
        /* The sites to patch come from the schedule (check.c), as the
         * kernel's caller hands text_poke_bp its sites. */
        if ((rc = ph_oracle_next(e, n, ids)) < 0)
            break;
        ph_beat(c);
        if ((rc = patch_batch(e, ids, n)) < 0)
            break;
        ph_chk_round_end(e);
        done += n;
    }
    /* After the last site: DONE, with release (pairs with every acquire
     * load of the round; the schedule's variants are visible to whoever
     * sees DONE). */
    publish(e, PH_ROUND(e->seq, PH_DONE), STEP_NONE);
    e->sh->t_end = ph_now_ns();
    ph_chk_final(e);
    /* running -> done, unless a deadline already marked the run aborted. */
    uint64_t running = STATUS_RUNNING;
    __atomic_compare_exchange_n(&e->sh->status, &running, STATUS_DONE, 0,
                                __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    c->where = PH_WHERE_VERIFY;
    free(ids);
    return rc;
}

/* text_poke_sync_finish(): the secondaries' loop until DONE. */
int ph_secondary_run(struct ph_engine *e)
{
    struct ph_counters *c = ph_self.c;
    if (!c || ph_self.e != e)
        return -EPERM;
    c->where = PH_WHERE_FINISH_LOOP;
    int err = 0;
    uint64_t waited = 0;
    /* Pairs with the release store in publish(). */
    uint64_t r = ph_load_acquire(&e->sh->round);
    for (;;) {
        int st = PH_ROUND_STATE(r);
        if (st == PH_DONE)
            break;
        if (st < PH_SYNC_DONE) {
            ph_sync_site(e, PH_CTX_THREAD, 0);
            r = ph_load_acquire(&e->sh->round);   /* pairs: publish() */
            if (aborted(e))
                return -ECANCELED;
            continue;
        }
        /* SYNC_DONE: acked here, in thread context, after the sync loop
         * (and any breakpoint context) has been left. */
        if (e->cfg.mutant == PH_MUT_RFC_BITMAP)
            rfc_bitmap_ack(e, c, r, PH_CTX_THREAD, 0, 0);
        else
            give_ack(e, c, r, PH_CTX_THREAD, 0);
        ph_chk_seen(e, c, r, PH_CTX_THREAD);
        account_wait(c, waited);
        r = wait_round_change(e, r, PH_CTX_THREAD, &err, &waited);
        if (err)
            return err;
    }
    c->where = PH_WHERE_VERIFY;
    return 0;
}

/* Executors run sites at full speed; with acks they also ack each state.
 * Aimed (PH_AIM_EXECUTOR), an executor that sees the state change runs the
 * sites under patch at once, in the window before the next poke. */
int ph_executor_run(struct ph_engine *e)
{
    struct ph_counters *c = ph_self.c;
    if (!c || ph_self.e != e)
        return -EPERM;
    c->where = PH_WHERE_EXECUTING;
    uint64_t last = 0;
    for (uint64_t k = 0;; k++) {
        /* Pairs with the release store in publish(). */
        uint64_t r = ph_load_acquire(&e->sh->round);
        int st = PH_ROUND_STATE(r);
        if (st == PH_DONE)
            break;
        if (aborted(e))
            return -ECANCELED;
        if (e->cfg.secsync == PH_SECSYNC_ACK && ph_load_relaxed(&c->acked_round) < r) {
            if (st < PH_SYNC_DONE)
                sync_and_ack(e, c, r, PH_CTX_THREAD);
            else if (e->cfg.mutant == PH_MUT_RFC_BITMAP)
                rfc_bitmap_ack(e, c, r, PH_CTX_THREAD, 0, 0);
            else
                give_ack(e, c, r, PH_CTX_THREAD, 0);
        }
        /* Pairs: patch_batch() cur_n. */
        int32_t n = ph_load_acquire(&e->cur_n);
        if (r != last) {
            last = r;
            if (e->cfg.aim & PH_AIM_EXECUTOR)
                for (int32_t i = 0; i < n && i < 4; i++)
                    ph_exec_check(e, e->cur_ids[i], PH_CTX_THREAD, NULL);
            ph_chk_seen(e, c, r, PH_CTX_THREAD);
        }
        uint64_t rnd = ph_splitmix(&ph_self.rng);
        /* Half the time a site being patched. */
        int site = (n > 0 && (rnd & 1)) ? e->cur_ids[(rnd >> 1) % (uint64_t)n]
                                        : (int)((rnd >> 1) % (uint64_t)e->cfg.nsites);
        ph_exec_check(e, site, PH_CTX_THREAD, NULL);
        if ((k & 255) == 0)
            ph_beat(c);
    }
    c->where = PH_WHERE_VERIFY;
    return 0;
}

/* (c): after DONE, this thread runs every site and must see the variant
 * the schedule implies. */
int ph_verify_run(struct ph_engine *e)
{
    struct ph_counters *c = ph_self.c;
    if (!c || ph_self.e != e)
        return -EPERM;
    /* Pairs with the release store of DONE in ph_primary_run(). */
    uint64_t r = ph_load_acquire(&e->sh->round);
    if (PH_ROUND_STATE(r) != PH_DONE)
        return -EAGAIN;
    c->where = PH_WHERE_VERIFY;
    ph_sync_core(e);    /* like any CPU leaving stop_machine */
    for (int s = 0; s < e->cfg.nsites; s++) {
        /* The schedule's variant, not the primary's record of it. */
        int want = ph_load_relaxed(&e->orc.variant[s]);
        uint32_t v;
        int got = ph_exec_check(e, s, PH_CTX_THREAD, &v);
        if (got >= 0 && got != want)
            ph_violation(e, PH_INV_NEW_AFTER_DONE, ph_self.idx, s, PH_CTX_THREAD, r, v,
                         e->sites[s].value[want]);
        ph_count(&c->verified, 1);
    }
    return 0;
}

int ph_stuck_threads(struct ph_engine *e, int *out, int max)
{
    /* The round a timed-out wait was for; else the current one, if acks
     * are still being collected. */
    uint64_t r = ph_load_relaxed(&e->sh->stuck_round);
    if (!r) {
        r = ph_load_acquire(&e->sh->round);   /* pairs: publish() */
        if (PH_ROUND_STATE(r) == PH_DONE)
            return 0;
    }
    int n = 0;
    for (int i = 0; i < e->cfg.nthreads && n < max; i++)
        if (acks_from(e, i) && ph_load_acquire(&e->thr[i].acked_round) < r)   /* pairs: give_ack() */
            out[n++] = i;
    return n;
}

/* ------------------------------------------------------------------ */
/* Threads                                                            */

#define ALTSTACK_SIZE (256 * 1024)

int ph_thread_register(struct ph_engine *e, int thread, int role)
{
    if (thread < 0 || thread >= e->cfg.nthreads || role < 0 || role > PH_ROLE_EXECUTOR)
        return -EINVAL;
    if ((thread == e->cfg.primary) != (role == PH_ROLE_PRIMARY))
        return -EINVAL;
    if (ph_self.c)
        return -EBUSY;
    struct ph_counters *c = &e->thr[thread];
    void *stk = mmap(NULL, ALTSTACK_SIZE, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stk == MAP_FAILED)
        return -errno;
    stack_t ss = {.ss_sp = stk, .ss_size = ALTSTACK_SIZE, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) < 0) {
        int err = errno;
        munmap(stk, ALTSTACK_SIZE);
        return -err;
    }
    e->altstacks[thread] = stk;
    c->tid = (int64_t)syscall(SYS_gettid);
    c->cpu = sched_getcpu();
    c->role = role;
    ph_store_relaxed(&c->acked_round, PH_ROUND(0, PH_SYNC_DONE));
    c->where = PH_WHERE_REGISTERED;
    uint64_t seed = e->cfg.seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(thread + 1));
    ph_self.rng = seed;
    ph_self.idx = thread;
    ph_self.c = c;
    ph_self.e = e;
    /* Pairs with the acquire load in ph_wait_registered(). */
    __atomic_fetch_add(&e->registered, 1, __ATOMIC_RELEASE);
    return 0;
}

void ph_thread_unregister(struct ph_engine *e, int thread)
{
    if (thread < 0 || thread >= e->cfg.nthreads || ph_self.idx != thread)
        return;
    if (e->timer_made[thread]) {
        timer_delete(e->timers[thread]);
        e->timer_made[thread] = 0;
    }
    e->thr[thread].where = PH_WHERE_EXITED;
    ph_self.c = NULL;
    ph_self.e = NULL;
    ph_self.idx = -1;
    stack_t ss = {.ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    munmap(e->altstacks[thread], ALTSTACK_SIZE);
    e->altstacks[thread] = NULL;
}

int ph_wait_registered(struct ph_engine *e)
{
    uint64_t spins = 0, deadline = ph_now_ns() + e->cfg.deadline_ns;
    /* Pairs with the release increment in ph_thread_register(). */
    while (__atomic_load_n(&e->registered, __ATOMIC_ACQUIRE) < e->cfg.nthreads) {
        if (spin_step(e, &spins, deadline) < 0)
            return -ETIMEDOUT;
        if (aborted(e))
            return -ECANCELED;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Engine                                                             */

static int config_check(const struct ph_config *cfg)
{
    if (cfg->nthreads < 1 || cfg->nthreads > PH_MAX_THREADS)
        return -EINVAL;
    if (cfg->primary < 0 || cfg->primary >= cfg->nthreads)
        return -EINVAL;
    if (cfg->nsites < 1 || cfg->nsites > (1 << 22))
        return -EINVAL;
    if (cfg->kinds_mask <= 0 || cfg->kinds_mask >= (1 << PH_NKINDS))
        return -EINVAL;
    if (cfg->poke < 0 || cfg->poke > PH_POKE_RWX || cfg->bp < 0 || cfg->bp > PH_BP_EMULATE)
        return -EINVAL;
    if (cfg->secsync < 0 || cfg->secsync > PH_SECSYNC_MEMBARRIER)
        return -EINVAL;
    if (cfg->sync < 0 || cfg->sync > PH_SYNC_SERIALIZE)
        return -EINVAL;
    if (cfg->batch < 1 || cfg->batch > PH_MAX_BATCH || cfg->batch > cfg->nsites)
        return -EINVAL;
    if (cfg->mutant < 0 || cfg->mutant >= PH_NMUTANTS)
        return -EINVAL;
    if (cfg->trace_len < 0 || (cfg->trace_len & (cfg->trace_len - 1)) ||
        cfg->trace_len == 1 || cfg->trace_len > (1 << 20))
        return -EINVAL;
    if (cfg->deadline_ns == 0 || cfg->spin_pauses > (1u << 24))
        return -EINVAL;
    if (cfg->bp == PH_BP_EMULATE && (cfg->kinds_mask & (1 << PH_KIND_BLOCK)))
        return -EINVAL;     /* a block is not one instruction: native only */
    if (!ph_sync_method_available(cfg->sync))
        return -EOPNOTSUPP;
    if (cfg->secsync == PH_SECSYNC_MEMBARRIER && !ph_membarrier_sync_core_supported())
        return -ENOSYS;
    return 0;
}

int ph_engine_create(const struct ph_config *cfg, int shm_fd, struct ph_engine **out)
{
    int rc = config_check(cfg);
    if (rc < 0)
        return rc;
    ph_clock_calibrate();
    struct ph_engine *none = NULL, *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    /* One live engine per process: the handlers find it through one pointer. */
    if (!__atomic_compare_exchange_n(&ph_engine_live, &none, (struct ph_engine *)1, 0,
                                     __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
        free(e);
        return -EBUSY;
    }
    e->cfg = *cfg;
    if (!e->cfg.spin_pauses)
        e->cfg.spin_pauses = PH_SPIN_PAUSES_DEFAULT;
    e->memfd = -1;
    e->nmi_signal = cfg->nmi_signal ? cfg->nmi_signal : SIGRTMIN + 3;
    uint64_t size = ph_shared_size(cfg);
    if (shm_fd >= 0) {
        struct stat st;
        if (fstat(shm_fd, &st) < 0) { rc = -errno; goto fail; }
        if ((uint64_t)st.st_size < size && ftruncate(shm_fd, (off_t)size) < 0) { rc = -errno; goto fail; }
        e->sh = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, shm_fd, 0);
    } else {
        e->sh = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    }
    if (e->sh == MAP_FAILED) { e->sh = NULL; rc = -errno; goto fail; }
    e->sh_len = size;
    ph_shared_layout(e->sh, cfg, size);
    e->thr = (struct ph_counters *)((char *)e->sh + e->sh->off_threads);
    e->trace = (struct ph_event *)((char *)e->sh + e->sh->off_trace);
    for (int i = 0; i < cfg->nthreads; i++)
        e->thr[i].role = i == cfg->primary ? PH_ROLE_PRIMARY : -1;

    e->sites = calloc((size_t)cfg->nsites, sizeof(*e->sites));
    e->patches = calloc(2 * PH_MAX_BATCH, sizeof(*e->patches));
    e->cur_ids = calloc(PH_MAX_BATCH, sizeof(int32_t));
    if (!e->sites || !e->patches || !e->cur_ids) { rc = -ENOMEM; goto fail; }
    if ((rc = ph_oracle_init(e)) < 0)
        goto fail;
    if ((rc = ph_text_create(e)) < 0)
        goto fail;
    if (cfg->secsync == PH_SECSYNC_MEMBARRIER &&
        syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0) < 0) {
        rc = -errno;
        goto fail;
    }
    if ((rc = ph_signals_install(e)) < 0) {
        ph_signals_restore(e);
        goto fail;
    }
    /* Pairs with the acquire loads of ph_engine_live in the handlers. */
    ph_store_release(&ph_engine_live, e);
    ph_chk_sync_build(e);   /* the serializing instruction is in this build */
    *out = e;
    return 0;
fail:
    ph_text_destroy(e);
    ph_oracle_free(e);
    if (e->sh)
        munmap(e->sh, e->sh_len);
    free(e->sites);
    free(e->patches);
    free(e->cur_ids);
    free(e);
    ph_store_release(&ph_engine_live, NULL);   /* pairs: the handlers' acquire */
    return rc;
}

void ph_engine_destroy(struct ph_engine *e)
{
    if (!e)
        return;
    for (int i = 0; i < e->cfg.nthreads; i++)
        if (e->timer_made[i]) {
            timer_delete(e->timers[i]);
            e->timer_made[i] = 0;
        }
    ph_signals_restore(e);
    ph_store_release(&ph_engine_live, NULL);   /* pairs: the handlers' acquire */
    ph_text_destroy(e);
    ph_oracle_free(e);
    munmap(e->sh, e->sh_len);
    free(e->sites);
    free(e->patches);
    free(e->cur_ids);
    free(e);
}

void *ph_engine_shared(struct ph_engine *e) { return e->sh; }
int ph_site_kind(struct ph_engine *e, int s) { return s >= 0 && s < e->cfg.nsites ? e->sites[s].kind : -EINVAL; }
uint64_t ph_site_addr(struct ph_engine *e, int s) { return s >= 0 && s < e->cfg.nsites ? e->sites[s].addr : 0; }
int ph_site_straddles(struct ph_engine *e, int s)
{
    if (s < 0 || s >= e->cfg.nsites)
        return -EINVAL;
    uint64_t a = e->sites[s].addr;
    return (a / PH_CACHELINE) != ((a + (uint64_t)e->sites[s].len - 1) / PH_CACHELINE);
}
int ph_site_variant(struct ph_engine *e, int s) { return s >= 0 && s < e->cfg.nsites ? e->sites[s].variant : -EINVAL; }
uint32_t ph_site_value(struct ph_engine *e, int s, int v)
{
    return s >= 0 && s < e->cfg.nsites && (v == 0 || v == 1) ? e->sites[s].value[v] : 0;
}

int ph_site_exec(struct ph_engine *e, int site, uint32_t *value)
{
    if (site < 0 || site >= e->cfg.nsites)
        return -EINVAL;
    int v = ph_exec_check(e, site, ph_current_ctx(), value);
    return v < 0 ? -EPROTO : v;
}

/*
 * Test hook: one breakpoint round trip through the real SIGTRAP handler.
 * The caller is the registered primary; nothing else runs.  INT3 is written
 * over the site, the descriptor published, and the site called: the
 * handler finishes the site (native) or emulates the new instruction.
 */
int ph_test_trap_site(struct ph_engine *e, int site, uint32_t *value)
{
    if (site < 0 || site >= e->cfg.nsites)
        return -EINVAL;
    if (!ph_self.c || ph_self.idx != e->cfg.primary)
        return -EPERM;
    e->seq++;
    struct ph_bp_desc *d = &e->desc[e->seq & 1];
    struct ph_patch *p = e->patches + (e->seq & 1) * PH_MAX_BATCH;
    struct ph_site *s = &e->sites[site];
    static const uint8_t int3 = PH_INT3;
    e->orc.active = 0;      /* a test of the handler alone, outside any round */
    fill_patch(e, p, site);
    int rc = ph_text_open(e, p->addr, p->addr + (uint64_t)p->len);
    if (rc < 0)
        return rc;
    d->vec = p;
    d->nr = 1;
    d->native = e->cfg.bp == PH_BP_NATIVE;
    ph_store_relaxed(&d->retired, 0);
    ph_store_release(&d->refs, 1);      /* pairs: desc_try_get() */
    ph_store_release(&e->bp_desc, d);   /* pairs: desc_try_get() */
    ph_text_poke(e, p->addr, &int3, 1);
    int got = ph_exec_check(e, site, PH_CTX_THREAD, value);
    /* Emulation leaves the text alone: finish it here. */
    ph_text_poke(e, p->addr + 1, p->text + 1, (size_t)p->len - 1);
    ph_text_poke(e, p->addr, p->text, 1);
    ph_store_release(&e->bp_desc, NULL);            /* pairs: desc_try_get() */
    __atomic_fetch_sub(&d->refs, 1, __ATOMIC_ACQ_REL);
    ph_store_release(&d->retired, 1);               /* pairs: the handler */
    rc = ph_text_close(e, p->addr, p->addr + (uint64_t)p->len);
    s->variant = p->new_variant;
    if (rc < 0)
        return rc;
    return got < 0 ? -EPROTO : got;
}
