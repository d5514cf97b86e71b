/*
 * proto_posted.c -- the RFC's code as posted (--protocol rfc-as-posted).
 *
 * This file runs what the series' own code does (patches 17-21, as
 * shared/PROTOCOL.md reconstructs them), including where it is wrong: it
 * must not fix anything.  What it gets wrong is the checker's to find and
 * the report's to diagnose.  In its terms:
 *
 *   - the state is a plain value, the same for every site: SYNC_0, SYNC_1,
 *     SYNC_2, SYNC_DONE, and DONE after the last site.  The published word
 *     carries a site sequence for the observer, but nothing here reads it:
 *     a waiter here cannot tell one site's SYNC_0 from the next one's;
 *   - one shared ack map (tps->sync_ack_map, a bit per thread) and num_acks
 *     (every participant, the primary included); a session starts at
 *     SYNC_DONE with the map as the previous session left it;
 *   - poke_sync(state, bytes): write the bytes; store the state (release);
 *     THEN clear the map; sync_one(); wait_for_acks(): set our own bit,
 *     spin until the weight of the map reaches num_acks;
 *   - text_poke_sync_site(): prevstate = -1 (the declaration is outside
 *     patch 18's hunks; the series' earlier code starts there); do { wait
 *     until state != prevstate; prevstate = state; acked = test_bit(me);
 *     if (prevstate < SYNC_DONE && !acked) { sync_one(); set_bit(me); } }
 *     while (prevstate < SYNC_DONE);
 *   - text_poke_sync_finish(): on SYNC_DONE set our bit without testing it,
 *     then wait for the state to change; on SYNC_0 (in NMI context: any SYNC
 *     state) run the sync loop; on DONE return; anything else is BUG();
 *   - sync_one(): CPUID in NMI context, the configured method otherwise;
 *   - the breakpoint path (trap.c) calls the sync loop re-entrantly on a
 *     secondary, and finishes the site locally on the primary.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ucontext.h>
#include "ph_internal.h"

/* ------------------------------------------------------------------ */
/* The map: core/primitives.c (ph_map_*), cpumask's operations.         */

static int state_of(uint64_t r)
{
    return PH_ROUND_STATE(r);
}

/* sync_one(): CPUID in NMI context, the configured method otherwise. */
static void sync_one(struct ph_engine *e, int ctx)
{
    ph_sync_core_method(e, (ctx & PH_CTX_NMI) ? PH_SYNC_CPUID : e->cfg.sync);
}

/* smp_cond_load_acquire(&tps->state, VAL != prev), with our deadline. */
static uint64_t wait_state_not(struct ph_engine *e, int prev, int ctx, int *err)
{
    struct ph_counters *c = ph_self.c;
    uint64_t spins = 0, t0 = 0, deadline = 0;
    for (;;) {
        uint64_t r = ph_state_read(e, ctx);
        if (state_of(r) != prev)
            return r;
        int rc = ph_wait_step(e, &spins, &t0, &deadline, r);
        if (rc == -ETIMEDOUT) {
            /* a: how long, b: the state waited on, in the sync or the finish loop */
            ph_violation(e, c->where == PH_WHERE_SYNC_WAIT ? PH_R_SYNC_LOOP_WAIT
                                                           : PH_R_FINISH_LOOP_WAIT,
                         ph_self.idx, -1, ctx, r, e->cfg.deadline_ns, (uint64_t)(prev & 0xff), 0);
            ph_abort_run(e);
        }
        if (rc < 0) {
            *err = rc;
            return r;
        }
    }
}

/* ------------------------------------------------------------------ */
/* text_poke_sync_site()                                               */

static void posted_sync_site(struct ph_engine *e, int ctx, uint64_t min_seq)
{
    (void)min_seq;          /* the posted code has no notion of a site's round */
    struct ph_counters *c = ph_self.c;
    int me = ph_self.idx, prevstate = -1, acked, err = 0;
    int64_t where = c->where;
    do {
        c->where = PH_WHERE_SYNC_WAIT;
        uint64_t r = wait_state_not(e, prevstate, ctx, &err);
        if (err)
            break;
        /* prevstate = READ_ONCE(tps->state) */
        r = ph_state_read(e, ctx);
        prevstate = state_of(r);
        ph_store_relaxed(&c->seen_round, r);
        if (ctx != PH_CTX_THREAD)
            ph_trace(e, PH_EV_STATE_SEEN, ctx, -1, r, 0);
        c->where = PH_WHERE_SYNC_TEST;
        acked = ph_map_test(e, me);
        if (prevstate < PH_SYNC_DONE && !acked) {
            sync_one(e, ctx);
            ph_ack_map(e, c, ctx, 1);
        }
    } while (prevstate < PH_SYNC_DONE);
    c->where = where;
}

/* ------------------------------------------------------------------ */
/* text_poke_sync_finish()                                             */

static int posted_finish(struct ph_engine *e, int ctx)
{
    struct ph_counters *c = ph_self.c;
    int err = 0;
    for (;;) {
        uint64_t r = ph_state_read(e, ctx);
        int state = state_of(r);
        ph_store_relaxed(&c->seen_round, r);
        c->where = PH_WHERE_FINISH_LOOP;
        if (state == PH_SYNC_DONE) {
            /* Ack that we have seen the end of this iteration, without
             * testing the bit first, then wait for the next. */
            ph_ack_map(e, c, ctx, 0);
            c->where = PH_WHERE_FINISH_WAIT;
            wait_state_not(e, PH_SYNC_DONE, ctx, &err);
            if (err)
                return err;
        } else if (state == PH_SYNC_0 || ((ctx & PH_CTX_NMI) && state < PH_SYNC_DONE)) {
            posted_sync_site(e, ctx, 0);
        } else if (state == PH_DONE) {
            return 0;
        } else {
            /* BUG(): a state the finish loop never expects (a: the state,
             * b: the context it was seen in). */
            ph_violation(e, PH_R_FINISH_BUG, ph_self.idx, (int)ph_load_relaxed(&e->sh->cur_site),
                         ctx, r, (uint64_t)state, (uint64_t)ctx, 0);
            ph_abort_run(e);
            return -ECANCELED;
        }
        if (ph_aborted(e))
            return -ECANCELED;
    }
}

/* ------------------------------------------------------------------ */
/* poke_sync() and wait_for_acks()                                     */

static int wait_for_acks(struct ph_engine *e, uint64_t r, uint64_t t0)
{
    struct ph_counters *c = ph_self.c;
    uint64_t deadline = t0 + e->cfg.deadline_ns, spins = 0;
    int64_t where = c->where;
    int num_acks = (int)e->sh->num_acks;
    c->where = PH_WHERE_WAIT_ACKS;
    ph_map_set(e, ph_self.idx);              /* the primary's own bit */
    while (ph_map_weight(e) < num_acks) {
        ph_beat(c);
        int timed_out = ph_spin_step(e, &spins, deadline, PH_AWAIT_ANY, r) < 0;
        if (timed_out || ph_aborted(e)) {
            /* b: the weight reached, c: num_acks */
            int rc = ph_ack_wait_failed(e, r, timed_out, ph_self.idx, ph_current_ctx(),
                                        PH_R_ACK_MAP_WAIT, (uint64_t)ph_map_weight(e),
                                        (uint64_t)num_acks);
            c->where = where;
            return rc;
        }
    }
    ph_ack_wait_done(e, r, t0);
    c->where = where;
    return 0;
}

/* poke_sync()'s publication as posted: "we could hit a BP right after
 * patching memory below ... The primary BP handler allows us to make
 * forward-progress"; smp_store_release(&tps->state, state); then
 * cpumask_clear(), nothing of ours between them (the trace comes after). */
static uint64_t posted_publish(struct ph_engine *e, uint64_t r, int step)
{
    ph_publish_store(e, r);
    ph_map_clear(e);
    return ph_publish_trace(e, r, step);
}

/* ... and the primary's own sync_one() (CPUID in NMI context). */
static void posted_self_sync(struct ph_engine *e)
{
    sync_one(e, ph_current_ctx());
}

/* Executors are not part of the posted code (stop_machine has none). */
static void posted_executor_ack(struct ph_engine *e, struct ph_counters *c, uint64_t r)
{
    (void)e; (void)c; (void)r;
}

/* The threads whose bit is missing from the map. */
static int posted_stuck(struct ph_engine *e, int *out, int max)
{
    uint64_t r = ph_load_acquire(&e->sh->round);   /* pairs: ph_publish() */
    if (!ph_load_relaxed(&e->sh->stuck_round) && PH_ROUND_STATE(r) == PH_DONE)
        return 0;
    int n = 0;
    for (int i = 0; i < e->cfg.nthreads && n < max; i++)
        if (i != e->cfg.primary && !ph_map_test(e, i))
            out[n++] = i;
    return n;
}

/* What an ack means to the observer: a bit in the one map, for the state
 * published (the map is cleared after each). */
static uint64_t posted_acked(struct ph_engine *e, int i, uint64_t r)
{
    return (ph_load_acquire(&e->sh->sync_ack_map[i / 64]) >> (i % 64)) & 1 ? r : 0;   /* pairs: ph_map_set() */
}

/* The primary's own breakpoint: the posted code finishes the site locally,
 * whatever its length, with sync_one() (CPUID in NMI context). */
static int posted_bp_primary(struct ph_engine *e, const struct ph_patch *p, int site,
                             ucontext_t *uc)
{
    (void)site; (void)uc;
    ph_bp_finish_locally(e, p, ph_self.c->nmi_active ? PH_SYNC_CPUID : e->cfg.sync);
    return 0;
}

const struct ph_proto ph_proto_posted = {
    .name = "rfc-as-posted",
    .publish = posted_publish,
    .self_sync = posted_self_sync,
    .sync_site = posted_sync_site,
    .finish = posted_finish,
    .executor_ack = posted_executor_ack,
    .stuck = posted_stuck,
    .ack_state = NULL,              /* its secondaries' acks are its own sync loop's */
    .await_acks = wait_for_acks,
    .acked = posted_acked,
    .bp_primary = posted_bp_primary,
    .secsyncs = 1u << PH_SECSYNC_ACK,  /* stop_machine: no executors, no membarrier */
};
