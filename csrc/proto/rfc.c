/*
 * proto_rfc.c -- the RFC's patching steps with pyharness's acks (the
 * default, --protocol rfc).
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
 * clears after publishing each state (proto_posted.c runs that code as
 * posted).  With a re-entrant sync loop that map has a window: an NMI
 * between the thread-context test and set of the bit lets the breakpoint
 * path ack that state and later ones, after which the resumed thread context
 * sets its bit into a *later* state's cleared map -- a false ack.  States
 * are plain values there, so a waiter cannot tell one site's SYNC_0 from the
 * next's.  Here each participant owns one ack word (on its own cache line)
 * holding the last round it acked; rounds encode (site sequence, state) and
 * only grow, so an ack is a single forward-only compare-and-swap that a
 * handler cannot tear, and a breakpoint waits for the round that owns its
 * INT3.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "ph_internal.h"

/* The secondary's handling of one observed state below SYNC_DONE. */
void ph_rfc_sync_and_ack(struct ph_engine *e, struct ph_counters *c, uint64_t r, int ctx)
{
    if (ph_load_relaxed(&c->acked_round) >= r)
        return;                     /* a state already acked is not acked again */
    ph_sync_core(e);
    if (ctx != PH_CTX_THREAD)
        ph_trace(e, PH_EV_SYNC, ctx, -1, r, 0);
    ph_ack_word(e, c, r, ctx, 1);
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
static void rfc_sync_site(struct ph_engine *e, int ctx, uint64_t min_seq)
{
    struct ph_counters *c = ph_self.c;
    int64_t where = c->where;
    if (ctx == PH_CTX_THREAD)
        c->where = PH_WHERE_SYNC_LOOP;
    uint64_t r = ph_state_read(e, ctx), waited = 0;
    while (PH_ROUND_SEQ(r) < min_seq) {
        int err = 0;
        r = ph_wait_round_change(e, r, ctx, &err, &waited);
        if (err) {
            c->where = where;
            return;
        }
    }
    for (;;) {
        int st = PH_ROUND_STATE(r), err = 0;
        ph_store_relaxed(&c->seen_round, r);
        if (ctx != PH_CTX_THREAD)   /* where state jumps happen */
            ph_trace(e, PH_EV_STATE_SEEN, ctx, -1, r, 0);
        if (e->steps.sync_loop_state)
            e->steps.sync_loop_state(e, st, ctx);
        if (st >= PH_SYNC_DONE)
            break;
        PH_STEP(e, ack_state, ph_rfc_sync_and_ack, e, c, r, ctx);
        ph_account_wait(c, waited);
        r = ph_wait_round_change(e, r, ctx, &err, &waited);
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
        /* Pairs with the release CAS of the ack word in ph_ack_word(). */
        while (ph_load_acquire(&e->thr[i].acked_round) < r) {
            ph_beat(c);
            int timed_out = ph_spin_step(e, &spins, deadline, i, r) < 0;
            if (timed_out || ph_aborted(e)) {
                /* names the thread that never acked, and its last ack */
                int rc = ph_ack_wait_failed(e, r, timed_out, i, PH_CTX_THREAD, PH_R_ACK_WORD_WAIT,
                                            ph_load_relaxed(&e->thr[i].acked_round), 0);
                c->where = where;
                return rc;
            }
        }
    }
    ph_ack_wait_done(e, r, t0);
    c->where = where;
    return 0;
}

/* text_poke_sync_finish(): the secondaries' loop until DONE (one session). */
static int rfc_finish(struct ph_engine *e, int ctx)
{
    struct ph_counters *c = ph_self.c;
    c->where = PH_WHERE_FINISH_LOOP;
    int err = 0;
    uint64_t waited = 0;
    uint64_t r = ph_state_read(e, ctx);
    for (;;) {
        int st = PH_ROUND_STATE(r);
        ph_store_relaxed(&c->seen_round, r);
        if (st == PH_DONE)
            break;
        if (st < PH_SYNC_DONE) {
            rfc_sync_site(e, ctx, 0);
            r = ph_state_read(e, ctx);
            if (ph_aborted(e))
                return -ECANCELED;
            continue;
        }
        /* SYNC_DONE: acked here, in thread context, after the sync loop
         * (and any breakpoint context) has been left. */
        ph_ack_word(e, c, r, ctx, 0);
        ph_account_wait(c, waited);
        r = ph_wait_round_change(e, r, ctx, &err, &waited);
        if (err)
            return err;
    }
    return 0;
}

/* Executors in ack mode ack each state they see, as a secondary would. */
static void rfc_executor_ack(struct ph_engine *e, struct ph_counters *c, uint64_t r)
{
    if (ph_load_relaxed(&c->acked_round) >= r)
        return;
    if (PH_ROUND_STATE(r) < PH_SYNC_DONE)
        PH_STEP(e, ack_state, ph_rfc_sync_and_ack, e, c, r, PH_CTX_THREAD);
    else
        ph_ack_word(e, c, r, PH_CTX_THREAD, 0);
}

static int rfc_stuck(struct ph_engine *e, int *out, int max)
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
        if (acks_from(e, i) && ph_load_acquire(&e->thr[i].acked_round) < r)   /* pairs: ph_ack_word() */
            out[n++] = i;
    return n;
}

const struct ph_proto ph_proto_rfc = {
    .name = "rfc",
    .sync_site = rfc_sync_site,
    .finish = rfc_finish,
    .executor_ack = rfc_executor_ack,
    .stuck = rfc_stuck,
    .ack_state = ph_rfc_sync_and_ack,
    .await_acks = wait_for_acks,
    .acked = ph_ack_word_acked,
    .bp_primary = ph_bp_primary_default,
    .secsyncs = 1u << PH_SECSYNC_ACK | 1u << PH_SECSYNC_MEMBARRIER,
};
