/*
 * check.c -- the observer: evidence the protocol code does not produce
 * about itself.
 *
 * The protocol (protocol.c, trap.c) keeps its own bookkeeping: the variant
 * it thinks a site has, the step it thinks it poked, the ack it thinks it
 * gave.  A bug that keeps that bookkeeping consistent would pass a checker
 * that reads it.  This file holds the checks that rest on something else:
 *
 *   - the schedule oracle: which sites each round patches and to which
 *     variant, derived from the seed alone.  The primary patches the sites
 *     it is handed; whether it wrote the right bytes is judged against the
 *     oracle's variants, never against its own (pyharness/schedule.py
 *     derives the same schedule once more, in Python, after the run);
 *   - every write to the text, seen in the poke primitive before it lands:
 *     only INT3 or the scheduled bytes, the tail only behind INT3, byte 0
 *     only after the tail is complete;
 *   - every published state, with the site bytes read back: a state implies
 *     its bytes (the primary before it publishes; each secondary after it
 *     saw the state, through the view that runs);
 *   - every ack, held to the serialization evidence that sync.c records
 *     from the instruction's own output;
 *   - every execution: how many traps it took, and, when the site was not
 *     being patched, that it ran the variant the schedule implies;
 *   - the signal entry wrappers: a NMI inside a breakpoint handler (probed
 *     by sending one), a NMI inside a NMI;
 *   - the text's protection as the kernel reports it (/proc/self/maps);
 *   - at start, that the serializing instruction is in the build: its
 *     token, and its cost against a plain call.
 *
 * Everything called from a signal handler here is async-signal-safe.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/membarrier.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>
#include "ph_internal.h"

#define SPLITMIX_GAMMA 0x9e3779b97f4a7c15ULL
#define SCHEDULE_SALT 0x5c4ed01e5c4ed01eULL
#define PROT_EVERY_NS 10000000ULL      /* /proc/self/maps at most every 10 ms */
#define MAPS_BUF (1 << 20)
/* Sampling, so the observer costs a site at most ~10% (pyharness bench):
 * a secondary reads one state back every SEEN_EVERY rounds (the state
 * rotating): each read pulls the text line the primary writes next; the
 * primary's publication checks up to DONE_SITES sites of every round at
 * SYNC_DONE (every site of a smaller round, rotating through a larger one)
 * and PUBLISH_SITES rotating sites of a batch at SYNC_0..SYNC_2, on one
 * round in GUARD_EVERY (an ordering bug hits every round and site: the
 * first checked round shows it); the poke guard checks thread-context
 * writes on one round in POKE_EVERY, byte by byte at GUARD_SITES sites of
 * a batch (writes from the primary's breakpoint path, rare, are always
 * checked); the run view is swept every RUNVIEW_EVERY rounds and at the
 * end.  The publication checks run right after the state's store (rfc
 * protocol), while the secondaries take the new state: see ph_publish(). */
#define SEEN_EVERY PH_SEEN_EVERY

/* One round in `every`, rotating: ph_sampled() (ph_internal.h, where
 * SEEN's filter runs inline at the emit). */
#define sampled ph_sampled
#define GUARD_EVERY 4    /* rounds whose SYNC_0..2 bytes are checked */
#define POKE_EVERY 8     /* rounds whose thread-context writes are checked ... */
#define GUARD_SITES 8    /* ... byte by byte at this many sites of a batch (rotating) */
#define PUBLISH_SITES 8
#define DONE_SITES 32    /* sites of a round read back at SYNC_DONE (rotating in larger ones) */
#define RUNVIEW_EVERY 16
#define PROT_ROUNDS 16   /* the clock is read for the protection check every this many rounds */

/* ------------------------------------------------------------------ */
/* The schedule oracle                                                 */

int ph_oracle_init(struct ph_engine *e)
{
    struct ph_oracle *o = &e->orc;
    int n = e->cfg.nsites;
    o->perm = calloc((size_t)n, sizeof(int));
    o->last_seq = calloc((size_t)n, sizeof(uint64_t));
    o->trap_seq = calloc((size_t)n, sizeof(uint64_t));
    o->maps_buf = malloc(MAPS_BUF);
    if (!o->perm || !o->last_seq || !o->trap_seq || !o->maps_buf)
        return -ENOMEM;
    o->variant = (uint8_t *)e->sh + e->sh->off_final;
    o->cursor = n;          /* a pass begins with the first round */
    return 0;
}

void ph_oracle_free(struct ph_engine *e)
{
    free(e->orc.perm);
    free(e->orc.last_seq);
    free(e->orc.trap_seq);
    free(e->orc.maps_buf);
    e->orc.maps_buf = NULL;
    e->orc.perm = NULL;
    e->orc.last_seq = e->orc.trap_seq = NULL;
}

/*
 * The sites of the next round.  Pass p orders every site by a Fisher-Yates
 * shuffle of the identity, driven by splitmix64 from the state
 *     (seed ^ SALT) + p * (nsites - 1) * GAMMA
 * (each pass draws nsites - 1 numbers), so any pass can be derived without
 * the ones before it.  Rounds take consecutive runs of n sites; a round
 * that does not fit in what is left of a pass starts the next pass.
 * The round's entry is complete (seq written last) before this returns,
 * i.e. before the protocol writes or publishes anything for it.
 */
int ph_oracle_next(struct ph_engine *e, int n, int *ids)
{
    struct ph_oracle *o = &e->orc;
    int ns = e->cfg.nsites;
    if (n < 1 || n > ns || n > PH_MAX_BATCH)
        return -EINVAL;
    if (o->cursor + n > ns) {
        /* Paired sites (a lock 2p and its unlock 2p+1) are shuffled as
         * pairs, each pair's two sites kept next to each other. */
        int paired = !!(e->cfg.stress & PH_STRESS_PAIRED), units = paired ? ns / 2 : ns;
        uint64_t st = (e->cfg.seed ^ SCHEDULE_SALT) +
                      o->pass * (uint64_t)(units - 1) * SPLITMIX_GAMMA;
        for (int i = 0; i < units; i++)
            o->perm[i] = i;
        for (int i = units - 1; i > 0; i--) {
            int j = (int)(ph_splitmix(&st) % (uint64_t)(i + 1));
            int t = o->perm[i]; o->perm[i] = o->perm[j]; o->perm[j] = t;
        }
        if (paired)
            for (int i = units - 1; i >= 0; i--) {
                int pr = o->perm[i];
                o->perm[2 * i] = 2 * pr;
                o->perm[2 * i + 1] = 2 * pr + 1;
            }
        o->pass++;
        o->cursor = 0;
    }
    uint64_t seq = ++o->seq;
    struct ph_oround *rd = &o->ring[seq % PH_ORACLE_RING];
    /* Readers of the old entry see its seq change (pairs with their acquire
     * re-read) before they could see it half rewritten. */
    ph_store_release(&rd->seq, 0);
    /* seqlock writer: the entry's stores below stay after seq = 0 (pairs
     * with the readers' acquire fence in entry_still()). */
    __atomic_thread_fence(__ATOMIC_RELEASE);
    for (int i = 0; i < n; i++) {
        int s = o->perm[o->cursor + i];
        ids[i] = s;
        /* last_seq first, then the variant: an execution that reads the
         * same last_seq before and after it ran read a variant of that
         * round (pairs with the acquire loads in ph_exec_check()). */
        ph_store_release(&o->last_seq[s], seq);
        uint8_t v = (uint8_t)!ph_load_relaxed(&o->variant[s]);
        ph_store_release(&o->variant[s], v);
        rd->sites[i] = s;
        rd->newv[i] = v;
    }
    o->cursor += n;
    rd->n = n;
    ph_store_release(&rd->seq, seq);   /* pairs: round_entry() */
    ph_store_relaxed(&e->sh->oracle_rounds, seq);
    ph_store_relaxed(&e->sh->flips_scheduled, ph_load_relaxed(&e->sh->flips_scheduled) + (uint64_t)n);
    return n;
}

/* The oracle's entry for round seq, or NULL once the ring moved past it. */
static const struct ph_oround *round_entry(struct ph_engine *e, uint64_t seq)
{
    const struct ph_oround *rd = &e->orc.ring[seq % PH_ORACLE_RING];
    /* Pairs with the release store of seq in ph_oracle_next(). */
    return ph_load_acquire(&rd->seq) == seq ? rd : NULL;
}

static int entry_still(const struct ph_oround *rd, uint64_t seq)
{
    __atomic_thread_fence(__ATOMIC_ACQUIRE);   /* our reads of it came first */
    return ph_load_relaxed(&rd->seq) == seq;
}

/* RUN_START: the observer is active from here to RUN_END. */
void ph_obs_run_start(struct ph_engine *e, struct ph_ev *x)
{
    (void)x;
    e->orc.active = 1;
    e->orc.prot_last_ns = 0;
}

/* ------------------------------------------------------------------ */
/* Byte patterns                                                       */

enum { PAT_OLD = 1, PAT_INT3_OLD = 2, PAT_INT3_NEW = 3, PAT_NEW = 4, PAT_INT3_MIXED = 5,
       PAT_OTHER = 6 };

/* Byte compare of a site's few bytes, inline: a libc call per compare
 * was a visible share of an IRET round. */
static inline int same(const uint8_t *a, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

/* What the bytes at a site are, against its old and new variant. */
static int pattern(const uint8_t *cur, const struct ph_site *s, int newv)
{
    const uint8_t *nw = s->text[newv], *od = s->text[!newv];
    size_t tl = (size_t)s->len - 1;
    int tail_new = same(cur + 1, nw + 1, tl);
    int tail_old = same(cur + 1, od + 1, tl);
    if (cur[0] == PH_INT3)
        return tail_new ? PAT_INT3_NEW : tail_old ? PAT_INT3_OLD : PAT_INT3_MIXED;
    if (cur[0] == nw[0] && tail_new)
        return PAT_NEW;
    if (cur[0] == od[0] && tail_old)
        return PAT_OLD;
    return PAT_OTHER;
}

/*
 * A site's bytes as one moment saw them, through the written view.  On the
 * primary, its own NMI may take the INT3 and finish the site between two
 * byte reads; that only happens through a trap on this thread, so a copy
 * during which the thread's trap count did not move is consistent.
 */
static void snap(struct ph_engine *e, const struct ph_site *s, uint8_t *out)
{
    struct ph_counters *c = ph_self.c;
    const volatile uint8_t *w = ph_text_bytes(e, s->addr);
    for (;;) {
        uint64_t t = c ? ph_load_relaxed(&c->traps) : 0;
        __asm__ __volatile__("" : : : "memory");
        for (int i = 0; i < s->len; i++)
            out[i] = w[i];
        __asm__ __volatile__("" : : : "memory");
        if (!c || ph_load_relaxed(&c->traps) == t)
            return;
    }
}

static uint64_t pack8(const uint8_t *p, int len)
{
    uint64_t v = 0;
    memcpy(&v, p, (size_t)(len < 8 ? len : 8));
    return v;
}

/* ------------------------------------------------------------------ */
/* POKE: a write to the text, before it lands                         */

void ph_obs_poke(struct ph_engine *e, struct ph_ev *x)
{
    struct ph_oracle *o = &e->orc;
    uint64_t addr = x->addr;
    const uint8_t *src = x->src;
    size_t len = x->len;
    struct ph_counters *c = x->c;
    if (!o->active || !len)
        return;
    /* the context as the signal entries counted it */
    int ctx = c ? (c->in_nmi ? PH_CTX_NMI : 0) | (c->in_bp ? PH_CTX_BP : 0) : PH_CTX_THREAD;
    if (ctx == PH_CTX_THREAD && ph_self.idx == e->cfg.primary) {
        /* The step this write belongs to, from the write itself: a window
         * the primary aim's NMIs must land in, open until the publication. */
        int at = ph_site_containing(e, addr);
        if (at >= 0)
            o->step_pending = addr > e->sites[at].addr ? STEP_TAIL
                            : len == 1 && src[0] == PH_INT3 ? STEP_INT3 : STEP_FIRST;
    }
    if (ctx == PH_CTX_THREAD && !sampled(o->seq, POKE_EVERY))
        return;             /* sampled rounds; the breakpoint path's writes always */
    if (ph_aborted(e))
        return;             /* after an abort the round's bytes are only completed */
    if ((ctx & PH_CTX_BP) && c) {
        /* a breakpoint handler writes the text: a sync must follow (TRAP_EXIT) */
        ph_count(&c->bp_writes, 1);
        c->bp_write_syncs = c->sync_calls - c->sync_bad;
    }
    int idx = ph_self.idx;
    uint64_t round = ph_load_relaxed(&e->sh->round);
    int site = ph_site_containing(e, addr);
    const struct ph_site *s = site >= 0 ? &e->sites[site] : NULL;
    if (!s || addr < s->addr || addr + len > s->addr + (uint64_t)s->len) {
        /* a: the address, b: the length */
        ph_violation(e, PH_R_OUTSIDE_SITE, idx, site, ctx, round, addr, (uint64_t)len, 0);
        return;
    }
    if (ctx == PH_CTX_THREAD) {
        /* In a batch, the bytes of GUARD_SITES sites (by site number,
         * rotating with the round); a write to a site the round does not
         * patch is named wherever it lands. */
        const struct ph_oround *rd = round_entry(e, o->seq);
        int n = rd ? rd->n : 1;
        if (n > GUARD_SITES) {
            uint64_t stride = (uint64_t)((n + GUARD_SITES - 1) / GUARD_SITES);
            if ((uint64_t)site % stride != o->seq % stride) {
                if (ph_load_relaxed(&o->last_seq[site]) != o->seq)
                    ph_violation(e, PH_R_NOT_THIS_ROUND, idx, site, ctx, round, o->seq, 0, 0);
                return;
            }
        }
    }
    uint8_t cur[PH_SITE_MAX_LEN];
    snap(e, s, cur);
    size_t off = (size_t)(addr - s->addr);
    if (same(cur + off, src, len))
        return;             /* changes nothing (e.g. a site the primary's trap finished) */
    if (ph_load_relaxed(&o->last_seq[site]) != o->seq) {
        ph_violation(e, PH_R_NOT_THIS_ROUND, idx, site, ctx, round, o->seq, 0, 0);
        return;             /* the current round does not patch this site */
    }
    const uint8_t *nw = s->text[ph_load_relaxed(&o->variant[site])];
    if (off == 0 && len == 1 && src[0] == PH_INT3)
        return;             /* the first step */
    if (!same(src, nw + off, len)) {
        ph_violation(e, PH_R_WRONG_BYTES, idx, site, ctx, round, pack8(src, (int)len), off, 0);
        return;             /* bytes that are neither INT3 nor the scheduled variant */
    }
    if (off == 0) {
        /* byte 0 last: alone, after the whole tail is in place */
        if (len > 1 || !same(cur + 1, nw + 1, (size_t)s->len - 1))
            ph_violation(e, len > 1 ? PH_R_BYTE0_WITH_TAIL : PH_R_BYTE0_EARLY, idx, site, ctx,
                         round, cur[0], 0, 0);
    } else if (cur[0] != PH_INT3) {
        /* the tail only behind INT3 */
        ph_violation(e, PH_R_TAIL_UNGUARDED, idx, site, ctx, round, cur[0], 0, 0);
    }
}

/* ------------------------------------------------------------------ */
/* Publication: the primary, just before it stores the new state       */

static void check_prev_acked(struct ph_engine *e, uint64_t prev, uint64_t next)
{
    /* Nobody acks DONE (a session's end), nor a session's start. */
    if (PH_ROUND_SEQ(prev) == 0 || e->cfg.secsync != PH_SECSYNC_ACK ||
        PH_ROUND_STATE(prev) == PH_DONE || PH_ROUND_STATE(next) == PH_DONE)
        return;
    for (int i = 0; i < e->cfg.nthreads; i++) {
        if (i == e->cfg.primary || e->thr[i].role == PH_ROLE_PRIMARY)
            continue;
        /* What the protocol says thread i's ack stands for (struct ph_proto;
         * the ack word's promise read inline, as PH_STEP calls a step). */
        uint64_t a = e->proto->acked == ph_ack_word_acked
                         ? ph_load_acquire(&e->thr[i].acked_round)   /* pairs: ph_ack_word() */
                         : e->proto->acked(e, i, prev);
        if (a < prev)
            ph_violation(e, PH_R_ACK_MISSING, i,
                         (int)ph_load_relaxed(&e->sh->cur_site), PH_CTX_THREAD, next, prev, a, 0);
    }
}

/* PUBLISH: the primary, just before (or just after) it stores the state. */
/* SEEN, ACK, PUBLISH, STEP_DONE: the thread made progress (what a wait
 * for it measures its stall against, ph_spin_step); and, at SEEN, the
 * sessions in which it read a state and read their DONE. */
void ph_obs_progress(struct ph_engine *e, struct ph_ev *x)
{
    (void)e;
    struct ph_counters *c = x->c;
    if (!c)
        return;
    ph_count(&c->progress, 1);
}

void ph_obs_sessions(struct ph_engine *e, struct ph_ev *x)
{
    struct ph_counters *c = x->c;
    /* The session begins before its first state is published (the
     * primary's release of the round orders it; we read the round first). */
    uint64_t k = ph_load_relaxed(&e->sh->session) + 1;
    if (!c || !e->orc.active)
        return;
    if (c->obs_session != k) {
        c->obs_session = k;
        ph_count(&c->sessions_seen, 1);
    }
    if (PH_ROUND_STATE(x->r) == PH_DONE && c->obs_session_done != k) {
        c->obs_session_done = k;
        ph_count(&c->sessions_done, 1);
    }
}

void ph_obs_publish(struct ph_engine *e, struct ph_ev *x)
{
    uint64_t prev = x->prev, r = x->r;
    struct ph_oracle *o = &e->orc;
    o->step_pending = STEP_NONE;
    struct ph_counters *pc = &e->thr[e->cfg.primary];
    int idx = ph_self.idx, pst = PH_ROUND_STATE(prev), st = PH_ROUND_STATE(r);
    if (!o->active || ph_aborted(e))
        return;     /* after an abort the primary only publishes DONE to end the run */
    /* (s) Each round publishes SYNC_0, SYNC_1, SYNC_2, SYNC_DONE in turn,
     * the next round starts only after SYNC_DONE, and DONE comes once,
     * after a SYNC_DONE.  a: the previous round, b: this one. */
    uint64_t pseq = PH_ROUND_SEQ(prev), seq_r = PH_ROUND_SEQ(r);
    int in_order = st == PH_DONE ? (pst == PH_SYNC_DONE && seq_r == pseq)
                 : st == PH_SYNC_0 ? (pst == PH_SYNC_DONE && seq_r == pseq + 1)
                 : st == PH_SYNC_DONE && pst == PH_DONE ? seq_r == pseq   /* a session begins */
                 : (seq_r == pseq && st == pst + 1);
    if (!in_order)
        ph_violation(e, PH_R_OUT_OF_ORDER, idx, -1, PH_CTX_THREAD, r, prev, r, 0);
    check_prev_acked(e, prev, r);
    if (PH_ROUND_SEQ(prev) > 0 && pst < PH_SYNC_DONE) {
        /* The primary serialized itself after publishing prev (RFC and
         * upstream alike); sync.c's evidence, not the protocol's word. */
        uint64_t sr = ph_load_relaxed(&pc->sync_round);
        if (sr < prev)
            ph_violation(e, PH_R_PRIMARY_UNSYNCED, idx, -1, PH_CTX_THREAD, prev, prev, sr, 0);
        if (e->cfg.secsync == PH_SECSYNC_MEMBARRIER) {
            uint64_t mr = ph_load_relaxed(&pc->mb_round);
            if (mr < prev)
                ph_violation(e, PH_R_MB_MISSING, idx, -1, PH_CTX_THREAD, prev, prev, mr, 0);
        }
    }
    if (st > PH_SYNC_DONE || (st == PH_SYNC_DONE && pst == PH_DONE))
        return;             /* DONE, or a session's start: no round's bytes */
    if (st < PH_SYNC_DONE && !sampled(PH_ROUND_SEQ(r), GUARD_EVERY))
        return;             /* sampled rounds (GUARD_EVERY) */
    const struct ph_oround *rd = round_entry(e, PH_ROUND_SEQ(r));
    if (!rd) {   /* a round the schedule never issued */
        ph_violation(e, PH_R_UNISSUED_ROUND, idx, -1, PH_CTX_THREAD, r, PH_ROUND_SEQ(r), o->seq, 0);
        return;
    }
    uint64_t seq = PH_ROUND_SEQ(r);
    int want = st == PH_SYNC_DONE ? DONE_SITES : PUBLISH_SITES;
    int all = rd->n <= want;
    int first = all ? 0 : (int)((seq * (uint64_t)want) % (uint64_t)rd->n);
    if (st == PH_SYNC_DONE)
        ph_store_relaxed(&e->sh->flips_checked,
                         ph_load_relaxed(&e->sh->flips_checked) + (uint64_t)(all ? rd->n : want));
    for (int j = 0; j < (all ? rd->n : want); j++) {
        int i = (first + j) % rd->n;
        int site = rd->sites[i];
        const struct ph_site *s = &e->sites[site];
        uint8_t cur[PH_SITE_MAX_LEN];
        snap(e, s, cur);
        int pat = pattern(cur, s, rd->newv[i]);
        /* The primary's own breakpoint may have finished a site early. */
        int finished_early = pat == PAT_NEW && ph_load_relaxed(&o->trap_seq[site]) == seq;
        int ok = st == PH_SYNC_0 ? pat == PAT_INT3_OLD || finished_early
               : st == PH_SYNC_1 ? pat == PAT_INT3_NEW || finished_early
               : pat == PAT_NEW;
        if (!ok)   /* a: the pattern found, b: the bytes */
            ph_violation(e, PH_R_PUBLISHED_BYTES, idx, site, PH_CTX_THREAD, r, (uint64_t)pat,
                         pack8(cur, s->len), 0);
        else if (st == PH_SYNC_DONE)
            ph_store_relaxed(&e->sh->flips_observed, ph_load_relaxed(&e->sh->flips_observed) + 1);
    }
}

static void seen_bytes(struct ph_engine *e, struct ph_counters *c, uint64_t r, int ctx);

/* ------------------------------------------------------------------ */
/* ACK: an ack became visible (the ack primitives emit it)            */

void ph_obs_ack(struct ph_engine *e, struct ph_ev *x)
{
    struct ph_counters *c = x->c;
    uint64_t r = x->r;
    int ctx = x->ctx, in_sync_loop = x->arg;
    if (r > c->obs_acked)
        ph_store_relaxed(&c->obs_acked, r);
    if (ctx != PH_CTX_THREAD && r > c->obs_acked_handler)
        ph_store_relaxed(&c->obs_acked_handler, r);
    /* NMI mode: a secondary's session, its acks included, runs inside its
     * own NMI -- as the signal entries counted, not as the protocol's
     * context flag says. */
    if (e->cfg.nmi_mode && c->role == PH_ROLE_SECONDARY && !c->in_nmi && e->orc.active)
        ph_violation(e, PH_R_SESSION_OUTSIDE_NMI, ph_self.idx, -1, ctx, r, r, 0, 0);
    int st = PH_ROUND_STATE(r);
    ph_count(&c->acks[st], 1);
    if (ctx & PH_CTX_BP)
        ph_count(&c->acks_bp, 1);
    /* An aimed state (round k aims at state k % 4) acked by a handler
     * before this thread's own loop began its sync: another NMI took the
     * window the aim would have opened (stress coverage, box-reduced). */
    if (ctx != PH_CTX_THREAD && st < PH_SYNC_DONE && (int)(PH_ROUND_SEQ(r) & 3) == st &&
        c->role == PH_ROLE_SECONDARY && (e->cfg.aim & PH_AIM_SECONDARY) && e->orc.active &&
        ph_load_relaxed(&c->obs_began) < r) {
        ph_count(&c->aim_taken[st], 1);
        if (c->in_nmi && c->nmi_from == PH_FROM_NEIGHBOUR)
            ph_count(&c->aim_taken_nb[st], 1);
        else if (c->in_nmi && c->nmi_from == PH_FROM_TIMER)
            ph_count(&c->aim_taken_timer[st], 1);
    }
    if (in_sync_loop && st == PH_SYNC_DONE) {
        ph_count(&c->acks_done_in_sync_loop, 1);
        ph_violation(e, PH_R_DONE_IN_SYNC_LOOP, ph_self.idx, -1, ctx, r, r, 0, 0);
    }
    /* SYNC_0..2 need a serializing instruction that ran after this thread
     * saw the state: sync.c kept the round it had seen, if the token
     * proved the instruction ran. */
    uint64_t sr = ph_load_relaxed(&c->sync_round);
    int synced = st >= PH_SYNC_DONE || sr >= r;
    if (!synced)
        ph_violation(e, PH_R_ACK_UNSYNCED, ph_self.idx, (int)ph_load_relaxed(&e->sh->cur_site),
                     ctx, r, r, sr, 0);
    /* Traced after the ack is visible, off the primary's critical path;
     * arg bit 8: the serialization evidence was there. */
    ph_trace(e, PH_EV_ACK, ctx, -1, r, (uint32_t)st | (synced ? 0x100u : 0u));
    if (c->seen_pending == r) {         /* a sampled state's read-back, now */
        c->seen_pending = 0;
        seen_bytes(e, c, r, (int)c->seen_pending_ctx);
    }
}

/* ------------------------------------------------------------------ */
/* A participant that read state r reads the bytes back, through the view
 * that runs.  After its own ack the primary may already be writing the
 * next step, so the check allows what the next step writes, and counts
 * only if the state has not moved on meanwhile. */
static void seen_bytes(struct ph_engine *e, struct ph_counters *c, uint64_t r, int ctx)
{
    int st = PH_ROUND_STATE(r);
    uint64_t seq = PH_ROUND_SEQ(r);
    const struct ph_oround *rd = round_entry(e, seq);
    if (!rd)
        return;             /* the primary's publication check names it */
    int n = rd->n;
    int k = (int)(ph_load_relaxed(&c->bytes_checked) % (uint64_t)(n > 0 ? n : 1));
    int site = rd->sites[k], newv = rd->newv[k];
    const struct ph_site *s = &e->sites[site];
    uint8_t cur[PH_SITE_MAX_LEN];
    const volatile uint8_t *run = (const volatile uint8_t *)s->addr;   /* the run view */
    for (int i = 0; i < s->len; i++)
        cur[i] = run[i];
    /* Pairs with the release store of the round in publish(): the bytes
     * were read while r was still the state. */
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (ph_load_relaxed(&e->sh->round) != r || !entry_still(rd, seq))
        return;
    int pat = pattern(cur, s, newv);
    int ok = st == PH_SYNC_0 ? pat == PAT_INT3_OLD || pat == PAT_INT3_MIXED ||
                               pat == PAT_INT3_NEW || pat == PAT_NEW
           : st == PH_SYNC_1 ? pat == PAT_INT3_NEW || pat == PAT_NEW
           : pat == PAT_NEW;
    ph_count(&c->bytes_checked, 1);
    if (!ok)
        ph_violation(e, PH_R_SEEN_BYTES, ph_self.idx, site, ctx, r, (uint64_t)pat,
                     pack8(cur, s->len), 0);
}

/* SEEN: one state every SEEN_EVERY rounds, rotating (see SEEN_EVERY), is
 * read back -- after this thread's ack of it, off the primary's critical
 * path (ph_obs_ack), where it acks; at once where nobody waits on it (no
 * acks: upstream style). */
void ph_obs_seen(struct ph_engine *e, struct ph_ev *x)
{
    struct ph_counters *c = x->c;
    uint64_t r = x->r;          /* sampled by ph_obs_seen_wanted(), inline at the emit */
    if (e->cfg.secsync == PH_SECSYNC_ACK) {
        c->seen_pending = r;            /* read back at this thread's ack of r */
        c->seen_pending_ctx = (uint64_t)x->ctx;
        return;
    }
    seen_bytes(e, c, r, x->ctx);
}

/* ------------------------------------------------------------------ */
/* After a round: its bytes through the run view, and the text's
 * protection in the kernel's view on a sample of rounds. */

static int perms_of(const char *line, uint64_t *lo, uint64_t *hi, char perms[5])
{
    char *end;
    *lo = strtoull(line, &end, 16);
    if (*end != '-')
        return -1;
    *hi = strtoull(end + 1, &end, 16);
    if (*end != ' ')
        return -1;
    memcpy(perms, end + 1, 4);
    perms[4] = 0;
    return 0;
}

/* Every mapping of [lo, hi) must have exactly `want` (r, w, x, shared/private
 * ignored); returns 0 or the first offending mapping's start. */
static int check_range_perms(const char *buf, uint64_t lo, uint64_t hi, const char *want,
                             uint64_t *bad_at, char bad[5], int *covered)
{
    const char *line = buf;
    while (*line) {
        const char *nl = strchr(line, '\n');
        uint64_t a, b;
        char p[5];
        if (perms_of(line, &a, &b, p) == 0 && a < hi && b > lo) {
            *covered = 1;
            if (memcmp(p, want, 3) != 0) {
                *bad_at = a;
                memcpy(bad, p, 5);
                return -1;
            }
        }
        if (!nl)
            break;
        line = nl + 1;
    }
    return 0;
}

/* /proc/self/maps into buf (at most cap-1 bytes, NUL-terminated). */
static int read_maps(char *buf, size_t cap)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t n = 0;
    for (;;) {
        ssize_t k = read(fd, buf + n, cap - 1 - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        n += (size_t)k;
        if (n >= cap - 1)
            break;
    }
    close(fd);
    buf[n] = 0;
    return (int)n;
}

static void check_protection(struct ph_engine *e)
{
    char *buf = e->orc.maps_buf;
    const struct ph_poke_ops *m = ph_pokes[e->cfg.poke];
    if (!m->run_perms || !buf)
        return;             /* rwx promises nothing outside a window */
    if (read_maps(buf, MAPS_BUF) <= 0)
        return;
    uint64_t lo = (uint64_t)e->text_x, hi = lo + e->text_len, at = 0;
    char bad[5] = {0};
    int covered = 0;
    ph_store_relaxed(&e->sh->prot_checks, ph_load_relaxed(&e->sh->prot_checks) + 1);
    if (check_range_perms(buf, lo, hi, m->run_perms, &at, bad, &covered) < 0 || !covered) {
        uint64_t p4 = 0;
        memcpy(&p4, bad, 4);
        ph_violation(e, PH_R_RUN_VIEW_PERMS, ph_self.idx, -1, PH_CTX_THREAD,
                     ph_load_relaxed(&e->sh->round), at, p4, 0);
        return;
    }
    if (m->write_perms) {
        /* the written view must never be executable */
        uint64_t wlo = (uint64_t)e->text_w, whi = wlo + e->text_len;
        covered = 0;
        if (check_range_perms(buf, wlo, whi, m->write_perms, &at, bad, &covered) < 0) {
            uint64_t p4 = 0;
            memcpy(&p4, bad, 4);
            ph_violation(e, PH_R_WRITE_VIEW_PERMS, ph_self.idx, -1, PH_CTX_THREAD,
                         ph_load_relaxed(&e->sh->round), at, p4, 0);
        }
    }
}

static void runview_sweep(struct ph_engine *e, const struct ph_oround *rd);

/* ROUND_END */
void ph_obs_round_end(struct ph_engine *e, struct ph_ev *x)
{
    (void)x;
    struct ph_oracle *o = &e->orc;
    if (!o->active)
        return;
    const struct ph_oround *rd = round_entry(e, o->seq);
    if (rd && sampled(o->seq, RUNVIEW_EVERY))
        runview_sweep(e, rd);
    if (o->prot_last_ns && o->seq % PROT_ROUNDS)
        return;
    uint64_t now = ph_now_ns();
    if (!o->prot_last_ns || now - o->prot_last_ns >= PROT_EVERY_NS) {
        o->prot_last_ns = now;
        check_protection(e);
    }
}

/* (g) after a round, its bytes through the view that runs. */
static void runview_sweep(struct ph_engine *e, const struct ph_oround *rd)
{
    for (int i = 0; i < rd->n; i++) {
        const struct ph_site *s = &e->sites[rd->sites[i]];
        const uint8_t *nw = s->text[rd->newv[i]];
        const volatile uint8_t *x = (const volatile uint8_t *)s->addr;  /* the run view */
        for (int k = 0; k < s->len; k++)
            if (x[k] != nw[k]) {   /* a: offset, b: found << 8 | intended */
                ph_violation(e, PH_R_RUN_VIEW_BYTE, ph_self.idx, rd->sites[i],
                             PH_CTX_THREAD, ph_load_relaxed(&e->sh->round), (uint64_t)k, x[k],
                             nw[k]);
                break;
            }
    }
}

/* RUN_END: the last round's bytes and the protection, then inactive (a
 * test hook outside any run is judged by nothing). */
void ph_obs_run_end(struct ph_engine *e, struct ph_ev *x)
{
    (void)x;
    if (!e->orc.active)
        return;
    const struct ph_oround *rd = round_entry(e, e->orc.seq);
    if (rd)
        runview_sweep(e, rd);
    check_protection(e);
    e->orc.active = 0;
}

/* VERIFIED: after DONE, every site runs the variant the schedule implies
 * (not the primary's record of it). */
void ph_obs_verified(struct ph_engine *e, struct ph_ev *x)
{
    int want = ph_load_relaxed(&e->orc.variant[x->site]);
    if (x->arg >= 0 && x->arg != want)
        ph_violation(e, PH_R_STALE_AFTER_DONE, ph_self.idx, x->site, PH_CTX_THREAD, x->r, x->value,
                     e->sites[x->site].value[want], 0);
}

/* SYNC: a serializing instruction ran.  The round the thread had seen just
 * before it is kept only when the instruction's token proves it ran; every
 * ack is held to it (ph_obs_ack). */
void ph_obs_sync(struct ph_engine *e, struct ph_ev *x)
{
    struct ph_counters *c = x->c;
    int sync = x->arg;
    ph_count(&c->sync_calls, 1);
    uint64_t expect = sync == e->cfg.sync ? ph_load_relaxed(&e->sh->sync_token_expect)
                    : sync == PH_SYNC_CPUID ? e->cpuid_token : 1;
    if (x->token != expect) {
        ph_count(&c->sync_bad, 1);
        return;
    }
    /* Forward mostly: a handler that serialized for a later round keeps
     * it, unless it ran between this load and store (then the value goes
     * back to what this thread saw; every ack below SYNC_DONE is preceded
     * by its own sync, so an older value can only make a check stricter). */
    if (x->r > ph_load_relaxed(&c->sync_round))
        ph_store_relaxed(&c->sync_round, x->r);
}

#ifndef MEMBARRIER_CMD_GET_REGISTRATIONS
#define MEMBARRIER_CMD_GET_REGISTRATIONS (1 << 9)   /* Linux 6.3 */
#endif

/*
 * The one membarrier syscall wrapper, the observer's: every membarrier a
 * primitive issues comes through here, so the command is the one actually
 * issued, not what the protocol's function says it issued.  A return of 0
 * for PRIVATE_EXPEDITED_SYNC_CORE from a participant is the kernel's word
 * that every CPU running us was serialized: the round seen before it is the
 * evidence (the membarrier invariant).  Another command that returned 0
 * there orders memory at most: named, and no evidence.
 */
long ph_sys_membarrier(struct ph_engine *e, int cmd)
{
    struct ph_counters *c = ph_self.c;
    uint64_t seen = ph_load_acquire(&e->sh->round);   /* pairs: ph_publish() */
    long rc = syscall(__NR_membarrier, cmd, 0, 0);
    if (!c || rc != 0)
        return rc;
    if (cmd == MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE) {
        ph_count(&c->mb_calls, 1);
        ph_store_relaxed(&c->mb_round, seen);
    } else if (!(cmd & (MEMBARRIER_CMD_QUERY | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED |
                        MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE |
                        MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED))) {
        ph_violation(e, PH_R_MB_WRONG_COMMAND, ph_self.idx, -1, PH_CTX_THREAD, seen, (uint64_t)cmd,
                     seen, MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE);
    }
    return rc;
}

/* ENGINE_READY (membarrier runs): the kernel's own list of what this
 * process registered must hold PRIVATE_EXPEDITED_SYNC_CORE.  A kernel
 * before 6.3 cannot say: the report says "not checked". */
void ph_obs_mb_registrations(struct ph_engine *e, struct ph_ev *x)
{
    (void)x;
    if (e->cfg.secsync != PH_SECSYNC_MEMBARRIER)
        return;
    long regs = syscall(__NR_membarrier, MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0);
    if (regs < 0)
        return;                          /* mb_checked stays 0 */
    e->sh->mb_registrations = (uint64_t)regs;
    e->sh->mb_checked = 1;
    if (!(regs & MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE))
        ph_violation(e, PH_R_MB_UNREGISTERED, -1, -1, PH_CTX_THREAD, 0, (uint64_t)regs,
                     MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, 0);
}

/* ------------------------------------------------------------------ */
/* Executions                                                          */

/*
 * EXEC_ENTER / EXEC_EXIT frame one run of a site (ph_site_run()).  Checks
 * (a) a known variant came back; (o) how many traps the execution took;
 * (m) when the site was not being patched (or a trap resolved it), that
 * the variant is the one the schedule implies.  The frame (x->f): the
 * nesting slot, the slot's counts it saved, the round and the site's last
 * round as the execution began.
 */
void ph_obs_exec_enter(struct ph_engine *e, struct ph_ev *x)
{
    struct ph_counters *c = x->c;
    struct ph_oracle *o = &e->orc;
    int64_t d = c->exec_depth + 1;
    int slot = d < 3 ? (int)d : 3;
    c->exec_depth = d;
    x->f[0] = (uint64_t)slot;
    x->f[1] = c->trap_exec[slot];
    x->f[2] = c->ool_exec[slot];
    c->trap_exec[slot] = 0;
    c->ool_exec[slot] = 0;
    /* Pairs with the release stores of the round in publish() and of
     * last_seq in ph_oracle_next(). */
    x->f[3] = ph_load_acquire(&e->sh->round);
    x->f[4] = o->last_seq ? ph_load_acquire(&o->last_seq[x->site]) : 0;
    /* an executor's run inside the window of a round that patches the site,
     * of all its runs while a round was under way */
    if (c->role == PH_ROLE_EXECUTOR && PH_ROUND_STATE(x->f[3]) < PH_SYNC_DONE &&
        x->ctx == PH_CTX_THREAD) {
        ph_count(&c->exec_in_round, 1);
        if (x->f[4] == PH_ROUND_SEQ(x->f[3]))
            ph_count(&c->exec_in_window, 1);
    }
}

void ph_obs_exec_exit(struct ph_engine *e, struct ph_ev *x)
{
    struct ph_counters *c = x->c;
    struct ph_oracle *o = &e->orc;
    const struct ph_site *s = &e->sites[x->site];
    int slot = (int)x->f[0], site = x->site, ctx = x->ctx, got = x->arg;
    uint64_t traps = c->trap_exec[slot], ool = c->ool_exec[slot];
    uint64_t r0 = x->f[3], l1 = x->f[4];
    uint32_t v = x->value;
    c->trap_exec[slot] = x->f[1];
    c->ool_exec[slot] = x->f[2];
    c->exec_depth--;
    if (got < 0) {
        ph_count(&c->exec_torn, 1);
        ph_violation(e, PH_R_TORN, ph_self.idx, site, ctx,
                     ph_load_relaxed(&e->sh->round), v, s->value[0], 0);
        return;
    }
    ph_count(&c->exec[got], 1);
    if (!o->active || PH_ROUND_STATE(r0) == PH_DONE)
        return;
    /* Stable: the site's last round had finished (SYNC_DONE seen, so every
     * CPU serialized after its bytes) or a trap resolved the execution; and
     * no new round for it was issued while it ran (same last_seq after). */
    uint64_t seq0 = PH_ROUND_SEQ(r0);
    int want = ph_load_acquire(&o->variant[site]);
    uint64_t l2 = ph_load_acquire(&o->last_seq[site]);
    if (l1 != l2)
        return;
    int stable = traps > 0 || l1 < seq0 || (l1 == seq0 && PH_ROUND_STATE(r0) >= PH_SYNC_DONE);
    if (!stable)
        return;
    if (ool)               /* run out of line by the primary: the old variant */
        want = !want;
    ph_count(&c->exec_checked, 1);
    if (got != want)   /* a: value, b: the scheduled variant's value, c: traps */
        ph_violation(e, traps ? PH_R_STALE_AFTER_TRAP : PH_R_STALE_EXEC, ph_self.idx, site, ctx, r0,
                     v, s->value[want], traps);
}

/* ------------------------------------------------------------------ */
/* TRAP_* and NMI_*: what the kernel delivered (trap.c's signal entries) */

/*
 * After an emulated breakpoint: the context must be what the scheduled
 * instruction (the oracle's variant, not the descriptor's bytes) does, as
 * its kind says (kinds/kinds.c).  Returns 0, or a code: 1 RIP, 2 RAX, 3 the
 * pushed return address.
 */
static int emulation_wrong(struct ph_engine *e, int site, int v, ucontext_t *uc, uint64_t sp0,
                           uint64_t *got)
{
    const struct ph_site *s = &e->sites[site];
    const struct ph_kind_ops *k = ph_kinds[s->kind];
    *got = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
    return k->emulated_check ? k->emulated_check(s, v, ph_site_target(e, site, v), uc, sp0, got) : 0;
}

/* TRAP_ENTER: count the trap against the execution it interrupts, and
 * keep what the trap found (x->f: the stack pointer, the site's last
 * round, the schedule's variant) for the verdict at TRAP_EXIT. */
void ph_obs_trap_enter(struct ph_engine *e, struct ph_ev *x)
{
    struct ph_counters *c = x->c;
    int tsite = x->site;
    uint64_t ip = x->addr;
    int64_t d = c->exec_depth;
    int slot = d < 3 ? (int)d : 3;
    uint64_t n = c->trap_exec[slot] + 1;
    c->trap_exec[slot] = n;
    ph_count(&c->traps, 1);
    if (!c->in_nmi)
        ph_count(&c->bp_thread, 1);     /* outside any NMI: thread context */
    c->in_bp++;
    if (tsite >= 0 && ph_self.idx == e->cfg.primary && e->orc.trap_seq)
        e->orc.trap_seq[tsite] = e->orc.seq;
    if (n == PH_TRAP_BOUND + 1)   /* a: traps so far, b: the trap address */
        ph_violation(e, PH_R_TRAPS_EXCEEDED, ph_self.idx, tsite, ph_current_ctx(),
                     ph_load_relaxed(&e->sh->round), n, ip, 0);
    if (n >= PH_TRAP_HARD) {
        /* a livelock of traps: end the worker with the evidence */
        ph_record_crash(e, SIGTRAP, PH_EXIT_UNRESOLVED, ip, ip);
        syscall(SYS_exit_group, PH_EXIT_UNRESOLVED);
    }
    x->f[0] = (uint64_t)x->uc->uc_mcontext.gregs[REG_RSP];
    /* The schedule's variant as the trap found it: once the handler let go
     * of its descriptor the primary may move on and flip the site again. */
    x->f[1] = tsite >= 0 && e->orc.last_seq ? ph_load_acquire(&e->orc.last_seq[tsite]) : 0;
    x->f[2] = tsite >= 0 ? (uint64_t)ph_load_acquire(&e->orc.variant[tsite]) : 0;
    x->f[3] = c->bp_writes;
}

/* TRAP_EXIT: where the handler resumed the context. */
void ph_obs_trap_exit(struct ph_engine *e, struct ph_ev *x)
{
    struct ph_counters *c = x->c;
    ucontext_t *uc = x->uc;
    uint64_t ip = x->addr, sp0 = x->f[0], l0 = x->f[1];
    int v0 = (int)x->f[2], site = x->site;
    uint64_t rip = (uint64_t)uc->uc_mcontext.gregs[REG_RIP], got = rip;
    int wrong = 0;
    if (site >= 0 && e->orc.last_seq && ph_load_acquire(&e->orc.last_seq[site]) != l0)
        site = -1;      /* a new round for it began meanwhile: no verdict */
    /* Native: resume exactly at the site, to run it anew.  Emulated:
     * resumed elsewhere, the context is what the scheduled instruction
     * does (rewound: a late trap, re-executed). */
    /* Native on the primary, a block: out of line, the old variant. */
    uint64_t ool_old = site >= 0 ? ph_site_ool(e, site, !v0) : 0;
    if (site >= 0 && rip != ip && e->orc.active && !(ool_old && rip == ool_old)) {
        wrong = e->cfg.bp == PH_BP_NATIVE ? 5 : emulation_wrong(e, site, v0, uc, sp0, &got);
    } else if (ool_old && rip == ool_old) {
        int64_t d2 = c->exec_depth;
        ph_count(&c->ool_exec[d2 < 3 ? d2 : 3], 1);
    }
    /* (k) on the primary's breakpoint path: a handler that wrote the text
     * (finished the site locally) serialized after its last write. */
    if (c->bp_writes != x->f[3] && ph_self.idx == e->cfg.primary && e->orc.active) {
        ph_count(&c->bp_syncs_checked, 1);
        if (c->sync_calls - c->sync_bad <= c->bp_write_syncs)
            ph_violation(e, PH_R_BP_UNSYNCED, ph_self.idx, x->site, ph_current_ctx(),
                         ph_load_relaxed(&e->sh->round), 0, 0, 0);
    }
    if (wrong)
        ph_violation(e, wrong == 5 ? PH_R_RESUMED_ELSEWHERE : wrong == 1 ? PH_R_EMULATED_RIP
                        : wrong == 2 ? PH_R_EMULATED_RAX : PH_R_EMULATED_RETURN,
                     ph_self.idx, site, ph_current_ctx(), ph_load_relaxed(&e->sh->round), got, 0, 0);
    c->in_bp--;
}

/* An aimed NMI arrived (its tag: the slot and round it was aimed at):
 * inside that window, as the observer sees the run; or after it closed,
 * with another NMI taken since it was queued (it competed: a timer's or a
 * neighbour's already pending, whose handler may close the window); or
 * outside it with none before it (aimed at nothing: the harness's fault).
 * c->nmi_entered already counts this one. */
static void aim_arrived(struct ph_engine *e, struct ph_counters *c, uint32_t tag)
{
    int slot = PH_AIM_SLOT(tag), in = 0;
    uint64_t seq = tag & PH_AIM_SEQ_MASK;
    if (slot >= PH_AIM_SLOTS)
        return;
    if (!c->in_bp && !c->in_nmi && e->orc.active) {
        if (slot < PH_AIM_SLOT_SYNC0) {
            in = ph_self.idx == e->cfg.primary && e->orc.step_pending == STEP_INT3 + slot &&
                 (e->orc.seq & PH_AIM_SEQ_MASK) == seq;
        } else {
            uint64_t seen = c->ev_seen[PH_CTX_THREAD];
            in = c->role == PH_ROLE_SECONDARY &&
                 PH_ROUND_STATE(seen) == slot - PH_AIM_SLOT_SYNC0 &&
                 (PH_ROUND_SEQ(seen) & PH_AIM_SEQ_MASK) == seq &&
                 ph_load_relaxed(&c->sync_tried) < seen && ph_load_relaxed(&c->obs_acked) < seen;
        }
    }
    /* A secondary's window closes at its ack.  An ack of the round aimed at
     * that a handler gave (another NMI, between the loop's reading the
     * round and the aim's send) closed it first: competition, as behind.
     * The loop's own sync or ack before the aim arrived is the aim's fault. */
    uint64_t hr = ph_load_relaxed(&c->obs_acked_handler);
    int overtaken = slot >= PH_AIM_SLOT_SYNC0 && (PH_ROUND_SEQ(hr) & PH_AIM_SEQ_MASK) == seq &&
                    PH_ROUND_STATE(hr) >= slot - PH_AIM_SLOT_SYNC0;
    if (in)
        ph_count(&c->aim_landed[slot], 1);
    else if (overtaken || ph_load_relaxed(&c->nmi_entered) > ph_load_relaxed(&c->aim_nmis) + 1)
        ph_count(&c->aim_behind[slot], 1);
    else
        ph_count(&c->aim_missed[slot], 1);
}

/* SYNC_BEGIN in thread context: the round a secondary's own loop reached
 * (its aim fires here, after this line).  An aimed state acked by a
 * handler before it was taken from the aim by another NMI (ph_obs_ack). */
void ph_obs_sync_begin(struct ph_engine *e, struct ph_ev *x)
{
    (void)e;
    if (x->ctx == PH_CTX_THREAD && x->r > x->c->obs_began)
        ph_store_relaxed(&x->c->obs_began, x->r);
}

/* NMI_ENTER: in NMI mode a NMI may land in a breakpoint handler (the RFC's
 * breakpoint, NMI, breakpoint); never inside a NMI.  a: bp depth, b: NMI
 * depth, as the entries counted them. */
void ph_obs_nmi_enter(struct ph_engine *e, struct ph_ev *x)
{
    struct ph_counters *c = x->c;
    ph_count(&c->nmi_entered, 1);
    /* who sent it (the handler's acks are charged to it); NMIs never nest
     * (the signal is blocked while its handler runs) */
    c->nmi_from = !x->si ? PH_FROM_SELF : x->si->si_code == SI_TIMER ? PH_FROM_TIMER
                : x->si->si_code != SI_QUEUE ? PH_FROM_SELF
                : ((uint32_t)x->si->si_value.sival_int & PH_AIM_TAG) ? PH_FROM_AIM
                : x->si->si_value.sival_int > 0 && x->si->si_value.sival_int - 1 != ph_self.idx
                ? PH_FROM_NEIGHBOUR : PH_FROM_SELF;
    if (x->si && x->si->si_code == SI_TIMER) {
        ph_count(&c->nmi_timer, 1);        /* the timer's, not an aimed one */
        if (x->si->si_overrun > 0)         /* expirations merged while one was pending */
            ph_count(&c->nmi_overrun, (uint64_t)x->si->si_overrun);
    }
    if (x->si && x->si->si_code == SI_QUEUE && ((uint32_t)x->si->si_value.sival_int & PH_AIM_TAG))
        aim_arrived(e, c, (uint32_t)x->si->si_value.sival_int);
    /* another thread's, as the kernel delivered it.  A release store (this
     * thread's handlers are its only writers, one at a time: NMIs never
     * nest): it pairs with the sender's acquire load in
     * ph_st_neighbour_nmi(), which so sees the latch's clear before it. */
    if (x->si && x->si->si_code == SI_QUEUE && x->si->si_value.sival_int > 0 &&
        x->si->si_value.sival_int - 1 != ph_self.idx)
        ph_store_release(&c->nmi_neighbour, ph_load_relaxed(&c->nmi_neighbour) + 1);
    if ((c->in_bp && !e->cfg.nmi_mode) || c->in_nmi)
        ph_violation(e, PH_R_NMI_NESTED, ph_self.idx, -1, ph_current_ctx(),
                     ph_load_relaxed(&e->sh->round), (uint64_t)c->in_bp, (uint64_t)c->in_nmi, 0);
    c->in_nmi++;
}

void ph_obs_nmi_exit(struct ph_engine *e, struct ph_ev *x)
{
    (void)e;
    x->c->in_nmi--;
}

/* ------------------------------------------------------------------ */
/* The serializing instruction is in the build                         */

__attribute__((noinline)) static uint64_t plain_call(int sync)
{
    __asm__ __volatile__("" : : : "memory");
    return (uint64_t)sync + 1;
}

/*
 * At engine start: the token must be the one the instruction produces
 * (CPUID: the vendor string read apart, through cpuid.h), and a call must
 * cost more than a plain call of the same shape -- a build in which the
 * instruction was optimized away, or replaced, fails both.  Best of 5
 * batches of 64 each, so a preempted batch cannot fake a cost.
 */
void ph_obs_sync_in_build(struct ph_engine *e, struct ph_ev *x)
{
    (void)x;
    int sync = e->cfg.sync;
    uint64_t expect = ph_sync_token_expect(sync), tok = 0, best_s = UINT64_MAX,
             best_p = UINT64_MAX, sink = 0;
    ph_store_relaxed(&e->sh->sync_token_expect, expect);
    for (int rep = 0; rep < 5; rep++) {
        uint64_t t0 = ph_now_ns();
        for (int i = 0; i < 64; i++)
            tok = ph_sync_token(sync);
        uint64_t t1 = ph_now_ns();
        for (int i = 0; i < 64; i++)
            sink += plain_call(sync);
        uint64_t t2 = ph_now_ns();
        if (t1 - t0 < best_s)
            best_s = t1 - t0;
        if (t2 - t1 < best_p)
            best_p = t2 - t1;
    }
    __asm__ __volatile__("" : : "r"(sink));
    e->sh->sync_token = tok;
    e->sh->sync_cost_ns = best_s / 64;
    e->sh->plain_cost_ns = best_p / 64;
    /* SERIALIZE is cheap and has no output; CPUID and IRET cost at least
     * tens of cycles anywhere.  a: cost, b: plain cost (bit 63: token bad). */
    uint64_t margin = sync == PH_SYNC_SERIALIZE ? 0 : 4;
    if (tok != expect)
        ph_violation(e, PH_R_SYNC_TOKEN, -1, -1, PH_CTX_THREAD, 0, tok, expect, 0);
    else if (best_s <= best_p + margin * 64)
        ph_violation(e, PH_R_SYNC_COST, -1, -1, PH_CTX_THREAD, 0, best_s / 64, best_p / 64, 0);
}
