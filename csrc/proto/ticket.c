/*
 * ticket.c -- the RFC's steps with one shared ticket of acks
 * (--protocol rfc-ticket).
 *
 * The secondaries ack as in proto/rfc.c, one forward-only word each; each
 * ack that moved a word forward then takes a ticket (one shared counter).
 * The primary waits for the tickets of every state it required so far
 * (an absolute count: each ack gives exactly one ticket, so the count can
 * never run ahead of the acks) instead of scanning every ack word: one
 * cache line polled, however many threads.
 *
 * The words stay the truth.  The word and the ticket are two steps, and a
 * NMI between them whose breakpoint handler waits in the sync loop for the
 * primary's next state would wait on a ticket its own thread has not yet
 * taken: the primary would wait for it forever (the first version of this
 * file did exactly that; the checker named the deadline, the thread in its
 * breakpoint handler and its ack word).  So when the tickets are short
 * after a while the primary reads the words, as proto/rfc.c does, and a
 * late ticket, when it comes, only completes the count.
 *
 * Built from the primitives only (ph_state_read, ph_wait_round_change,
 * ph_ack_word, ph_poke_step, ph_publish, the ack wait's end and give-up);
 * the observer and the stress conditions need nothing from it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include "ph_internal.h"

/* One line of its own: every ack takes a ticket here, the primary polls it. */
static struct {
    uint64_t tickets __attribute__((aligned(64)));
    uint64_t required __attribute__((aligned(64)));   /* the primary's own */
} tk;

#define SCAN_EVERY 256   /* spins between reads of the words when tickets are short */

static int ackers(struct ph_engine *e)
{
    return e->cfg.secsync == PH_SECSYNC_ACK ? e->cfg.nthreads - 1 : 0;
}

/* An ack of r: the word forward, then the ticket (release: pairs with the
 * primary's acquire load of tickets; it sees our sync_one() as done). */
static void give(struct ph_engine *e, struct ph_counters *c, uint64_t r, int ctx, int in_loop)
{
    if (ph_ack_word(e, c, r, ctx, in_loop))
        __atomic_fetch_add(&tk.tickets, 1, __ATOMIC_RELEASE);
}

static void sync_and_ack(struct ph_engine *e, struct ph_counters *c, uint64_t r, int ctx)
{
    if (ph_load_relaxed(&c->acked_round) >= r)
        return;
    ph_sync_core(e);
    give(e, c, r, ctx, 1);
}

/* text_poke_sync_site(): ack each state below SYNC_DONE once; from a
 * breakpoint, first wait for the round that owns its INT3 (min_seq). */
static void ticket_sync_site(struct ph_engine *e, int ctx, uint64_t min_seq)
{
    struct ph_counters *c = ph_self.c;
    uint64_t r = ph_state_read(e, ctx), waited = 0;
    int err = 0;
    while (PH_ROUND_SEQ(r) < min_seq && !err)
        r = ph_wait_round_change(e, r, ctx, &err, &waited);
    while (!err && PH_ROUND_STATE(r) < PH_SYNC_DONE) {
        ph_store_relaxed(&c->seen_round, r);
        PH_STEP(e, ack_state, sync_and_ack, e, c, r, ctx);
        r = ph_wait_round_change(e, r, ctx, &err, &waited);
    }
}

/* text_poke_sync_finish(): SYNC_DONE acked here, in thread context. */
static int ticket_finish(struct ph_engine *e, int ctx)
{
    struct ph_counters *c = ph_self.c;
    uint64_t r = ph_state_read(e, ctx), waited = 0;
    c->where = PH_WHERE_FINISH_LOOP;
    for (;;) {
        int st = PH_ROUND_STATE(r), err = 0;
        ph_store_relaxed(&c->seen_round, r);
        if (st == PH_DONE)
            return 0;
        if (st < PH_SYNC_DONE) {
            ticket_sync_site(e, ctx, 0);
            if (ph_aborted(e))
                return -ECANCELED;
            r = ph_state_read(e, ctx);
            continue;
        }
        give(e, c, r, ctx, 0);
        r = ph_wait_round_change(e, r, ctx, &err, &waited);
        if (err)
            return err;
    }
}

/* Every acker's word at r or later (pairs with the release CAS in ph_ack_word()). */
static int words_at(struct ph_engine *e, uint64_t r)
{
    for (int i = 0; i < e->cfg.nthreads; i++)
        if (i != e->cfg.primary && ph_load_acquire(&e->thr[i].acked_round) < r)
            return 0;
    return 1;
}

static int wait_tickets(struct ph_engine *e, uint64_t r, uint64_t t0)
{
    struct ph_counters *c = ph_self.c;
    uint64_t deadline = t0 + e->cfg.deadline_ns, spins = 0;
    int64_t where = c->where;
    c->where = PH_WHERE_WAIT_ACKS;
    /* Pairs with the release fetch_add in give(). */
    while (ph_load_acquire(&tk.tickets) < tk.required) {
        if (spins % SCAN_EVERY == SCAN_EVERY - 1 && words_at(e, r))
            break;
        ph_beat(c);
        int timed_out = ph_spin_step(e, &spins, deadline, PH_AWAIT_ANY, r) < 0;
        if (timed_out || ph_aborted(e)) {
            int lag = e->cfg.primary;           /* the first thread whose word is short */
            for (int i = 0; i < e->cfg.nthreads && lag == e->cfg.primary; i++)
                if (i != e->cfg.primary && ph_load_acquire(&e->thr[i].acked_round) < r)
                    lag = i;                    /* pairs: ph_ack_word() */
            int rc = ph_ack_wait_failed(e, r, timed_out, lag, PH_CTX_THREAD, PH_R_ACK_WORD_WAIT,
                                        ph_load_relaxed(&e->thr[lag].acked_round), 0);
            c->where = where;
            return rc;
        }
    }
    ph_ack_wait_done(e, r, t0);
    c->where = where;
    return 0;
}

/* Before each state is published: the tickets it will require (a run's
 * first state: no ack of this engine is owed). */
static void ticket_before_publish(struct ph_engine *e, uint64_t r)
{
    if (r == PH_ROUND(1, PH_SYNC_0))
        tk.tickets = tk.required = 0;
    if (e->cfg.secsync == PH_SECSYNC_ACK)
        tk.required += (uint64_t)ackers(e);
}

static void ticket_executor_ack(struct ph_engine *e, struct ph_counters *c, uint64_t r)
{
    if (PH_ROUND_STATE(r) < PH_SYNC_DONE)
        PH_STEP(e, ack_state, sync_and_ack, e, c, r, PH_CTX_THREAD);
    else
        give(e, c, r, PH_CTX_THREAD, 0);
}

static int ticket_stuck(struct ph_engine *e, int *out, int max)
{
    uint64_t r = ph_load_acquire(&e->sh->round);   /* pairs: ph_publish() */
    int n = 0;
    for (int i = 0; i < e->cfg.nthreads && n < max; i++)
        if (i != e->cfg.primary && ph_load_acquire(&e->thr[i].acked_round) < r)  /* pairs: ph_ack_word() */
            out[n++] = i;
    return PH_ROUND_STATE(r) == PH_DONE ? 0 : n;
}

const struct ph_proto ph_proto_ticket = {
    .name = "rfc-ticket",
    .before_publish = ticket_before_publish,
    .sync_site = ticket_sync_site,
    .finish = ticket_finish,
    .executor_ack = ticket_executor_ack,
    .stuck = ticket_stuck,
    .ack_state = sync_and_ack,
    .await_acks = wait_tickets,
    .acked = ph_ack_word_acked,
    .bp_primary = ph_bp_primary_default,
    .secsyncs = 1u << PH_SECSYNC_ACK | 1u << PH_SECSYNC_MEMBARRIER,
};
