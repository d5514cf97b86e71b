/*
 * mutants.c -- the seeded bugs (--mutant NAME; `pyharness selftest`), each
 * built from the protocol's own steps with one step replaced (struct
 * ph_steps): nothing here copies protocol code, and the correct protocols
 * (proto_rfc.c, proto_posted.c, the driver in protocol.c) hold no branch on
 * which mutant runs.  A box without a compiler still proves its checker
 * with these; tests/mutants/ holds the source-level ones.
 */
#include <string.h>
#include "ph_internal.h"

/* no-int3: the tail is written in place, no INT3 first. */
static void mut_no_int3(struct ph_steps *s)
{
    static const int order[3] = {STEP_NONE, STEP_TAIL, STEP_FIRST};
    memcpy(s->order, order, sizeof(s->order));
}

/* first-byte-first: the new byte 0 is written before the tail. */
static void mut_first_byte_first(struct ph_steps *s)
{
    static const int order[3] = {STEP_INT3, STEP_FIRST, STEP_TAIL};
    memcpy(s->order, order, sizeof(s->order));
}

/* skip-ack-wait: the primary publishes the next state without waiting. */
static int await_nothing(struct ph_engine *e, uint64_t r, uint64_t t_pub)
{
    (void)e; (void)r; (void)t_pub;
    return 0;
}

static void mut_skip_ack_wait(struct ph_steps *s) { s->await_acks = await_nothing; }

/* skip-sync-one: a secondary acks without serializing. */
static void ack_without_sync(struct ph_engine *e, struct ph_counters *c, uint64_t r, int ctx)
{
    if (ph_load_relaxed(&c->acked_round) < r)
        ph_ack_word(e, c, r, ctx, 1);
}

/* (a protocol whose secondaries have no such step, the posted one, is left as it is) */
static void mut_skip_sync_one(struct ph_steps *s)
{
    if (s->ack_state)
        s->ack_state = ack_without_sync;
}

/* double-ack: the protocol's ack, and a second one that lands on the next state. */
static void ack_twice(struct ph_engine *e, struct ph_counters *c, uint64_t r, int ctx)
{
    if (ph_load_relaxed(&c->acked_round) >= r)
        return;
    ph_rfc_sync_and_ack(e, c, r, ctx);
    ph_ack_word(e, c, r + 1, ctx, 1);
}

static void mut_double_ack(struct ph_steps *s)
{
    if (s->ack_state)
        s->ack_state = ack_twice;
}

/* early-retract: the descriptor is retired without waiting for handlers' refs. */
static int await_no_refs(struct ph_engine *e, struct ph_bp_desc *d, int site, int rc)
{
    (void)e; (void)d; (void)site;
    return rc;
}

static void mut_early_retract(struct ph_steps *s) { s->await_refs = await_no_refs; }

/* patch-sync-loop: the sync loop itself runs a site being patched (as if
 * sync_one() were a paravirt call): the RFC's unhandled case. */
static void sync_loop_runs_site(struct ph_engine *e, int st, int ctx)
{
    if (st >= PH_SYNC_DONE)
        return;
    int32_t n = ph_load_acquire(&e->cur_n);  /* pairs: the release store in patch_batch() */
    if (n > 0)
        ph_site_run(e, e->cur_ids[0], ctx, NULL);
}

static void mut_patch_sync_loop(struct ph_steps *s) { s->sync_loop_state = sync_loop_runs_site; }

/* lost-tail: the tail write goes nowhere. */
static void poke_no_tail(struct ph_engine *e, const struct ph_patch *p)
{
    (void)e; (void)p;
}

static void mut_lost_tail(struct ph_steps *s) { s->poke_tail = poke_no_tail; }

/* The table (mutants.def): each line's apply function, by its number. */
static void (*const apply[PH_NMUTANTS])(struct ph_steps *) = {
#define PH_MUTANT(e, name, fn, desc) [PH_MUT_##e] = fn,
#include "mutants.def"
#undef PH_MUTANT
};

void ph_mutant_apply(struct ph_engine *e)
{
    if (e->cfg.mutant > 0 && e->cfg.mutant < PH_NMUTANTS && apply[e->cfg.mutant])
        apply[e->cfg.mutant](&e->steps);
}

