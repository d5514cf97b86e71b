/*
 * protocol.c -- the engine and the driver: threads, sessions, the primary's
 * rounds (text_poke_site / text_poke_bp_batch), executors, verification.
 * The protocol itself (poke_sync, the sync loop, the finish loop) sits
 * behind struct ph_proto: proto_rfc.c (the default) and proto_posted.c (the
 * RFC's code as posted).
 *
 * Primary, for each round of sites:
 *   1. make the text writable, publish the breakpoint descriptor;
 *   2. first step:  write INT3 over byte 0,      poke_sync(SYNC_0);
 *   3. second step: write the tail (bytes 1..),  poke_sync(SYNC_1);
 *   4. third step:  write the new byte 0,        poke_sync(SYNC_2);
 *   5. poke_sync(SYNC_DONE) with nothing written: every secondary has left
 *      both thread and breakpoint context;
 *   6. retract the descriptor, wait for its references to drop to zero,
 *      restore the text's protection.
 * After the last round of a session: publish DONE.  A session (one
 * stop_machine call) begins with SYNC_DONE published.
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
 */
int ph_spin_step(const struct ph_engine *e, uint64_t *spins, uint64_t deadline)
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
        uint64_t r = ph_load_acquire(&e->sh->round);
        if (r != prev) {
            *waited = t0;
            return r;
        }
        int rc = ph_wait_step(e, &spins, &t0, &deadline);
        if (rc == -ETIMEDOUT) {
            ph_violation(e, PH_INV_DEADLINE, ph_self.idx, -1, ctx, r, e->cfg.deadline_ns, 0);
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
int ph_wait_step(struct ph_engine *e, uint64_t *spins, uint64_t *t0, uint64_t *deadline)
{
    if (ph_aborted(e))
        return -ECANCELED;
    if (!*t0) {
        *t0 = ph_now_ns();
        *deadline = *t0 + e->cfg.deadline_ns;
    }
    ph_beat(ph_self.c);
    return ph_spin_step(e, spins, *deadline);
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
    /* The observer's publication checks, now: the secondaries take the
     * state meanwhile, so the checks cost no hand-off.  They still see the
     * bytes as they were at the store: only this thread writes text, and
     * it writes the next step only after this. */
    ph_chk_publish(e, prev, r);
    return ph_publish_trace(e, r, step);
}

/* The store alone (the posted code clears its map right after it, with
 * nothing of ours in between: the observer looks just before). */
void ph_publish_store(struct ph_engine *e, uint64_t r)
{
    ph_chk_publish(e, ph_load_relaxed(&e->sh->round), r);
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
 * violation -- thread: whom it waited for, b: what it saw of the acks --
 * then the run aborts.  Called before the caller restores its `where`, so
 * the abort freezes the wait where it was.  Returns the wait's code. */
int ph_ack_wait_failed(struct ph_engine *e, uint64_t r, int timed_out, int thread, int ctx,
                       uint64_t b)
{
    if (timed_out) {
        ph_store_relaxed(&e->sh->stuck_round, r);
        ph_violation(e, PH_INV_DEADLINE, thread, (int)ph_load_relaxed(&e->sh->cur_site), ctx, r,
                     e->cfg.deadline_ns, b);
    }
    ph_abort_run(e);
    return timed_out ? -ETIMEDOUT : -ECANCELED;
}

/* The tail write, a step a seeded bug may replace (struct ph_steps). */
static void poke_tail(struct ph_engine *e, const struct ph_patch *p)
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
                PH_STEP(e, poke_tail, poke_tail, e, p);
            } else {
                ph_text_poke(e, p->addr, p->text, 1);
            }
        }
        c->where = where;
        ph_st_aim_primary(e, step);
    }
}

void ph_busy_wait(uint64_t ns)
{
    uint64_t end = ph_now_ns() + ns;
    while (ph_now_ns() < end)
        ph_cpu_relax();
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

/* The default steps a seeded bug may replace (struct ph_steps; poke_tail() above). */
/* Wait until no handler holds a reference to the retracted descriptor `d`. */
static int await_refs(struct ph_engine *e, struct ph_bp_desc *d, int site, int rc)
{
    struct ph_counters *c = ph_self.c;
    uint64_t spins = 0, deadline = ph_now_ns() + e->cfg.deadline_ns;
    int64_t where = c->where;
    c->where = PH_WHERE_WAIT_REFS;
    /* Pairs with the release decrement in desc_put(). */
    while (ph_load_acquire(&d->refs) != 0) {
        if (ph_spin_step(e, &spins, deadline) < 0) {
            ph_violation(e, PH_INV_DEADLINE, ph_self.idx, site, PH_CTX_THREAD,
                         ph_load_relaxed(&e->sh->round), e->cfg.deadline_ns,
                         (uint64_t)ph_load_relaxed(&d->refs));
            ph_abort_run(e);
            rc = rc ? rc : -ETIMEDOUT;
            break;
        }
    }
    c->where = where;
    return rc;
}

static void steps_init(struct ph_engine *e)
{
    e->steps = (struct ph_steps){
        .order = {STEP_INT3, STEP_TAIL, STEP_FIRST},
        .poke_tail = poke_tail,
        .ack_state = e->proto->ack_state,
        .sync_loop_state = NULL,
        .await_acks = e->proto->await_acks,
        .await_refs = await_refs,
    };
    ph_mutant_apply(e);
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

    /* first step: INT3 over byte 0 (e->steps.order: the write of each step) */
    if ((rc = e->proto->poke_sync(e, vec, n, PH_SYNC_0, e->steps.order[0])))
        goto out;
    if (e->cfg.force_nmi & 1)
        ph_nmi_self(e);     /* hit our own INT3 in NMI context */
    if (e->cfg.stress & PH_STRESS_PRIMARY_EXEC)
        ph_exec_check(e, ids[0], ph_current_ctx(), NULL);  /* the RFC selftest's primary */
    /* second step: the tail */
    if ((rc = e->proto->poke_sync(e, vec, n, PH_SYNC_1, e->steps.order[1])))
        goto out;
    /* third step: the new first byte */
    if ((rc = e->proto->poke_sync(e, vec, n, PH_SYNC_2, e->steps.order[2])))
        goto out;
    /* Every secondary acks SYNC_DONE from thread context: no laggard can
     * still be in a breakpoint handler for this round. */
    if ((rc = e->proto->poke_sync(e, vec, n, PH_SYNC_DONE, STEP_NONE)))
        goto out;

out:
    if (rc) {
        /* The round failed mid-way (a deadline, already recorded, or an
         * error such as a failed membarrier):
         * complete the round's bytes, so that no INT3 outlives it for NMIs
         * and the verification to trap on forever.  Not a protocol step:
         * the observer stands down (it stopped at the abort). */
        e->orc.active = 0;
        for (int i = 0; i < n; i++) {
            ph_text_poke(e, vec[i].addr + 1, vec[i].text + 1, (size_t)vec[i].len - 1);
            ph_text_poke(e, vec[i].addr, vec[i].text, 1);
        }
    }
    /* Retract the descriptor.  Pairs with the acquire load in desc_try_get(). */
    ph_store_release(&e->bp_desc, NULL);
    ph_trace(e, PH_EV_RETRACT, PH_CTX_THREAD, ids[0], ph_load_relaxed(&e->sh->round), (uint32_t)d->gen);
    if (__atomic_fetch_sub(&d->refs, 1, __ATOMIC_ACQ_REL) != 1)
        rc = e->steps.await_refs(e, d, ids[0], rc);
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

/* One session (a stop_machine call): its rounds, then DONE. */
static int primary_session(struct ph_engine *e, int64_t nsites, uint64_t until_ns, int last)
{
    struct ph_counters *c = ph_self.c;
    int batch = e->cfg.batch, rc = 0;
    int paired = !!(e->cfg.stress & PH_STRESS_PAIRED);
    int ids[PH_MAX_BATCH];
    int64_t done = 0;
    int64_t where = c->where;
    if (paired && nsites > 0)
        nsites += nsites & 1;   /* a session patches whole pairs */
    c->where = PH_WHERE_POKE;
    for (;;) {
        /* A pair patched one site per round ends a session only whole:
         * switched together, in one session. */
        int mid_pair = paired && (done & 1);
        if (!mid_pair) {
            if (nsites >= 0 && done >= nsites)
                break;
            if (until_ns && ph_now_ns() >= until_ns)
                break;
            /* Pairs with the release store of stop in ph_shared_stop(). */
            if (ph_load_acquire(&e->sh->stop))
                break;
        }
        if (ph_aborted(e))
            break;
        int n = batch;
        if (nsites >= 0 && nsites - done < n && !mid_pair)
            n = (int)(nsites - done);
        if (n < 1)
            n = 1;
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
     * sees DONE).  final_session first: a secondary that sees DONE knows
     * whether another session follows. */
    if (last || ph_aborted(e) || ph_load_acquire(&e->sh->stop))   /* pairs: ph_shared_stop() */
        ph_store_relaxed(&e->sh->final_session, 1);
    ph_publish(e, PH_ROUND(e->seq, PH_DONE), STEP_NONE);
    c->where = where;
    return rc;
}

/* NMI mode: the work a thread hands its own NMI handler (ph_nmi_handle). */
static struct { int64_t nsites; uint64_t until_ns; int last; } nmi_args;

int ph_nmi_work(struct ph_engine *e)
{
    struct ph_counters *c = ph_self.c;
    int64_t w = c->nmi_work;
    c->nmi_work = 0;
    if (w == 1)
        return primary_session(e, nmi_args.nsites, nmi_args.until_ns, nmi_args.last);
    /* Entered this session, inside the NMI that runs it (pairs with the
     * acquire load in rendezvous()): no NMI of ours can slip in between. */
    ph_store_release(&c->session_in, ph_load_acquire(&e->sh->session) + 1);
    return e->proto->finish(e, PH_CTX_NMI);
}

/* Run one session's work in this thread's own NMI (held off meanwhile). */
static int in_nmi(struct ph_engine *e, int work)
{
    struct ph_counters *c = ph_self.c;
    c->nmi_rc = -EINTR;
    c->nmi_work = work;
    /* Delivered before tgkill returns (not blocked here).  The kernel may
     * refuse to queue it (EAGAIN: the real-time signal queue is full):
     * retry for a while, then say so rather than leave the session. */
    for (int tries = 0; c->nmi_work && tries < 1000; tries++) {
        if (syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), e->nmi_signal) < 0)
            ph_busy_wait(100000);
    }
    if (c->nmi_work) {
        c->nmi_work = 0;
        ph_violation(e, PH_INV_DEADLINE, ph_self.idx, -1, PH_CTX_THREAD,
                     ph_load_relaxed(&e->sh->round), 0, 4ULL << 40);
        ph_abort_run(e);
        return -ECANCELED;
    }
    return (int)c->nmi_rc;
}

/*
 * stop_machine's rendezvous: every secondary has entered session k (its
 * finish loop, or its NMI) before the primary writes the first INT3, as
 * every CPU is in the stopper before the patch function runs.  Not a step
 * of the RFC's code; without it a NMI left pending from the previous
 * session could run one site's old variant and the next's new one because
 * the harness started patching early.
 */
static int rendezvous(struct ph_engine *e, uint64_t k, int leaving)
{
    uint64_t spins = 0, deadline = ph_now_ns() + e->cfg.deadline_ns;
    for (int i = 0; i < e->cfg.nthreads; i++) {
        if (i == e->cfg.primary || ph_load_relaxed(&e->thr[i].role) != PH_ROLE_SECONDARY)
            continue;
        /* Pairs with the release stores of session_in / session_out in
         * ph_nmi_work() and ph_secondary_run(). */
        while (ph_load_acquire(leaving ? &e->thr[i].session_out : &e->thr[i].session_in) < k) {
            if (ph_aborted(e) || ph_load_acquire(&e->sh->stop))
                return 0;
            if (ph_spin_step(e, &spins, deadline) < 0) {
                ph_violation(e, PH_INV_DEADLINE, i, -1, PH_CTX_THREAD,
                             ph_load_relaxed(&e->sh->round), e->cfg.deadline_ns,
                             (leaving ? 5ULL : 3ULL) << 40);
                ph_abort_run(e);
                return -ETIMEDOUT;
            }
        }
    }
    return 0;
}

static int primary_run(struct ph_engine *e, int64_t nsites, uint64_t until_ns)
{
    struct ph_counters *c = ph_self.c;
    if (!c || ph_self.e != e || ph_self.idx != e->cfg.primary)
        return -EPERM;
    int sessions = e->cfg.sessions > 1 ? e->cfg.sessions : 1, rc = 0;
    uint64_t t0 = ph_now_ns();
    e->sh->t_start = t0;
    ph_chk_start(e);
    for (int k = 0; k < sessions && !rc; k++) {
        int last = k == sessions - 1;
        /* This session's share of the sites, or of the time. */
        int64_t share = nsites < 0 ? -1 : nsites / sessions + (last ? nsites % sessions : 0);
        uint64_t until = until_ns ? (last ? until_ns : t0 + (until_ns - t0) * (uint64_t)(k + 1) /
                                                           (uint64_t)sessions) : 0;
        if (k > 0) {
            /* Pairs with the acquire load in ph_secondary_run(). */
            ph_store_release(&e->sh->session, (uint64_t)k);
            /* A session begins at SYNC_DONE (the RFC's map is kept). */
            ph_publish(e, PH_ROUND(e->seq, PH_SYNC_DONE), STEP_NONE);
        }
        if ((rc = rendezvous(e, (uint64_t)k + 1, 0)) < 0)
            break;
        if (e->cfg.nmi_mode) {
            nmi_args.nsites = share;
            nmi_args.until_ns = until;
            nmi_args.last = last;
            rc = in_nmi(e, 1);
        } else {
            rc = primary_session(e, share, until, last);
        }
        if (ph_load_relaxed(&e->sh->final_session))
            break;          /* stopped or aborted: that DONE was the last */
        /* ... and stop_machine's exit: every secondary has left this session
         * before the next begins.  Without it a secondary that missed the
         * short DONE would see the next session's SYNC_DONE as the value it
         * was already waiting on (the same word: ABA) and wait forever. */
        if ((rc = rendezvous(e, (uint64_t)k + 1, 1)) < 0)
            break;
    }
    e->sh->t_end = ph_now_ns();
    ph_chk_final(e);
    /* running -> done, unless a deadline already marked the run aborted. */
    uint64_t running = STATUS_RUNNING;
    __atomic_compare_exchange_n(&e->sh->status, &running, STATUS_DONE, 0,
                                __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    c->where = PH_WHERE_VERIFY;
    return rc;
}

/* The secondaries: the finish loop of each session, until the last DONE. */
static int secondary_run(struct ph_engine *e)
{
    struct ph_counters *c = ph_self.c;
    if (!c || ph_self.e != e)
        return -EPERM;
    for (;;) {
        int rc;
        if (e->cfg.nmi_mode) {
            rc = in_nmi(e, 2);     /* marks the entry inside the NMI (ph_nmi_work) */
        } else {
            /* Entered this session (pairs with the acquire load in rendezvous()). */
            ph_store_release(&c->session_in, ph_load_acquire(&e->sh->session) + 1);
            rc = e->proto->finish(e, PH_CTX_THREAD);
        }
        if (rc)
            return rc;
        /* Left this session (pairs with the acquire load in rendezvous()). */
        ph_store_release(&c->session_out, ph_load_relaxed(&c->session_in));
        /* DONE seen.  Pairs with the relaxed store of final_session before
         * the release that published DONE (acquire on the round). */
        uint64_t r = ph_load_acquire(&e->sh->round);
        if (ph_load_relaxed(&e->sh->final_session) || ph_aborted(e))
            break;
        /* Between sessions: wait for the next one to begin, or for the word
         * that none will (a stop may publish SYNC_DONE then DONE of the same
         * sequence so fast that the round looks unchanged). */
        uint64_t prev = r, spins = 0, deadline = ph_now_ns() + e->cfg.deadline_ns;
        c->where = PH_WHERE_SESSION_WAIT;
        for (;;) {
            r = ph_load_acquire(&e->sh->round);         /* pairs: ph_publish() */
            if (PH_ROUND_STATE(r) != PH_DONE || r != prev ||
                ph_load_relaxed(&e->sh->final_session) || ph_aborted(e))
                break;
            ph_beat(c);
            if (ph_spin_step(e, &spins, deadline) < 0) {
                ph_violation(e, PH_INV_DEADLINE, ph_self.idx, -1, PH_CTX_THREAD, r,
                             e->cfg.deadline_ns, 0);
                ph_abort_run(e);
                return -ETIMEDOUT;
            }
        }
        if (ph_load_relaxed(&e->sh->final_session) || ph_aborted(e))
            break;
    }
    c->where = PH_WHERE_VERIFY;
    return 0;
}

int ph_stuck_threads(struct ph_engine *e, int *out, int max)
{
    /* Secondaries that never entered the current session, else those whose
     * ack the protocol is missing. */
    uint64_t k = ph_load_acquire(&e->sh->session) + 1;   /* pairs: ph_primary_run() */
    int n = 0;
    for (int i = 0; i < e->cfg.nthreads && n < max; i++)
        if (i != e->cfg.primary && ph_load_relaxed(&e->thr[i].role) == PH_ROLE_SECONDARY &&
            ph_load_acquire(&e->thr[i].session_in) < k)   /* pairs: ph_secondary_run() */
            out[n++] = i;
    return n ? n : e->proto->stuck(e, out, max);
}

/* Executors run sites at full speed; with acks they also ack each state.
 * Aimed (PH_AIM_EXECUTOR), an executor that sees the state change runs the
 * sites under patch at once, in the window before the next poke. */
static int executor_run(struct ph_engine *e)
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
        /* DONE ends the run only after the last session; between sessions
         * executors keep running sites. */
        if (st == PH_DONE && ph_load_relaxed(&e->sh->final_session))
            break;
        if (ph_aborted(e))
            return -ECANCELED;
        if (e->cfg.secsync == PH_SECSYNC_ACK && st != PH_DONE)
            e->proto->executor_ack(e, c, r);
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
/*
 * A thread that leaves its role stops its own "NMIs" here, in C, before it
 * returns to Python: there it waits for the GIL, and with a thousand
 * threads queued for it each one would still take its timer's signals for
 * seconds (a --threads 1024 --nmi-rate 200 run spent 9-45 s after DONE
 * that way, and was killed as hung).  A signal already pending is
 * harmless: its handler finds no site under patch.
 */
static int leave_role(struct ph_engine *e, int rc)
{
    int me = ph_self.idx;
    if (me >= 0 && me < e->cfg.nthreads && e->timer_made[me]) {
        struct itimerspec off;
        memset(&off, 0, sizeof(off));
        timer_settime(e->timers[me], 0, &off, NULL);
    }
    return rc;
}

int ph_primary_run(struct ph_engine *e, int64_t nsites, uint64_t until_ns)
{
    return leave_role(e, primary_run(e, nsites, until_ns));
}

int ph_secondary_run(struct ph_engine *e)
{
    return leave_role(e, secondary_run(e));
}

int ph_executor_run(struct ph_engine *e)
{
    return leave_role(e, executor_run(e));
}

int ph_verify_run(struct ph_engine *e)
{
    struct ph_counters *c = ph_self.c;
    if (!c || ph_self.e != e)
        return -EPERM;
    /* Pairs with the release store of DONE in ph_primary_run(). */
    uint64_t r = ph_load_acquire(&e->sh->round);
    if (PH_ROUND_STATE(r) != PH_DONE)
        return -EAGAIN;
    /* An aborted run (a deadline) may have left a round half done, INT3s
     * included: the run has failed already, and running its sites now
     * would only trap on what the abort left. */
    if (ph_aborted(e))
        return -ECANCELED;
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
        if (ph_spin_step(e, &spins, deadline) < 0)
            return -ETIMEDOUT;
        if (ph_aborted(e))
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
    if (cfg->protocol < PH_PROTO_RFC || cfg->protocol > PH_PROTO_POSTED || cfg->nmi_level < 0 ||
        cfg->nmi_level > 3 || cfg->sessions < 0 || cfg->stress > 15)
        return -EINVAL;
    /* The posted code knows no executors and no membarrier (stop_machine only). */
    if (cfg->protocol == PH_PROTO_POSTED && cfg->secsync != PH_SECSYNC_ACK)
        return -EINVAL;
    if ((cfg->stress & PH_STRESS_PAIRED) && (cfg->nsites < 2 || cfg->nsites % 2 ||
                                            (cfg->batch > 1 && cfg->batch % 2)))
        return -EINVAL;     /* pairs need an even number of sites, and whole pairs per round */
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
    e->proto = cfg->protocol == PH_PROTO_POSTED ? &ph_proto_posted : &ph_proto_rfc;
    steps_init(e);
    e->cpuid_token = ph_sync_token_expect(PH_SYNC_CPUID);
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
    e->sh->num_acks = (uint64_t)cfg->nthreads;   /* every participant, primary included */

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
