/*
 * driver.c -- the driver: sessions, the primary's rounds (text_poke_site /
 * text_poke_bp_batch), the secondaries' and executors' roles, verification.
 * The protocol itself (poke_sync, the sync loop, the finish loop) sits
 * behind struct ph_proto (csrc/proto/).
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


static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/*
 * A round's sites in address order (= site order: the text lays them out
 * so), for the descriptor's binary search.  Where the layout's bitmap is
 * at most a few words per site of the round, set a bit per site and read
 * them back in order (consuming them, so the map is zero for the next
 * round): no comparison, no indirect call -- qsort() was a quarter of a
 * site's time in a batch of 256.  Larger layouts sort by comparison.
 */
static void sort_sites(struct ph_engine *e, int *ids, int n)
{
    uint64_t words = ((uint64_t)e->cfg.nsites + 63) / 64;
    if (n < 2)
        return;
    if (words > 4 * (uint64_t)n || !e->site_map) {
        qsort(ids, (size_t)n, sizeof(int), cmp_int);
        return;
    }
    uint64_t *m = e->site_map;
    for (int i = 0; i < n; i++)
        m[ids[i] >> 6] |= 1ULL << (ids[i] & 63);
    int k = 0;
    for (uint64_t w = 0; k < n && w < words; w++) {
        uint64_t b = m[w];
        m[w] = 0;
        for (; b; b &= b - 1)
            ids[k++] = (int)(w * 64 + (uint64_t)__builtin_ctzll(b));
    }
}

/* One site's entry in a round: its new bytes are the other variant's. */
void ph_fill_patch(struct ph_engine *e, struct ph_patch *p, int site)
{
    struct ph_site *s = &e->sites[site];
    p->addr = s->addr;
    p->site = site;
    p->len = s->len;
    p->new_variant = !s->variant;
    p->new_value = s->value[p->new_variant];
    memcpy(p->text, s->text[p->new_variant], PH_SITE_MAX_LEN);
}

/* The default steps a seeded bug may replace (struct ph_steps; ph_poke_tail()
 * in primitives.c). */

/*
 * poke_sync(): the one skeleton every protocol's steps plug into (struct
 * ph_proto): write one step's bytes, publish state st, serialize ourselves,
 * get every secondary serialized.  A run option that changes the
 * primary's work (--inject-delay-ns, the secondary sync) acts here, once,
 * for every protocol: tests/test_protocol.py runs each against every
 * protocol in the table.
 */
static int poke_sync(struct ph_engine *e, struct ph_patch *vec, int n, int st, int step)
{
    struct ph_counters *c = ph_self.c;
    const struct ph_proto *p = e->proto;
    ph_poke_step(e, vec, n, step);
    if (e->cfg.inject_delay_ns)
        ph_busy_wait(e->cfg.inject_delay_ns);
    uint64_t r = PH_ROUND(e->seq, st);
    /* Counted before it is published: the checker holds each secondary's
     * acks to the primary's count, and a crash between publish and count
     * must not show a secondary acking a round never counted. */
    ph_count(&c->acks[st], 1);
    ph_count(&c->rounds, 1);
    if (p->before_publish)
        p->before_publish(e, r);
    uint64_t t_pub = p->publish ? p->publish(e, r, step) : ph_publish(e, r, step);
    if (p->self_sync)
        p->self_sync(e);
    else
        ph_sync_core(e);
    /* The primary acks itself (its publish event already says so, so no
     * trace event here on the critical path). */
    ph_store_release(&c->acked_round, r);         /* pairs: nobody waits on it */
    if (e->cfg.secsync == PH_SECSYNC_MEMBARRIER) {
        if (st < PH_SYNC_DONE && ph_membarrier_core(e) < 0)
            return -errno;
        return 0;
    }
    return PH_STEP(e, await_acks, p->await_acks, e, r, t_pub);
}
/* Wait until no handler holds a reference to the retracted descriptor `d`. */
static int await_refs(struct ph_engine *e, struct ph_bp_desc *d, int site, int rc)
{
    struct ph_counters *c = ph_self.c;
    uint64_t spins = 0, deadline = ph_now_ns() + e->cfg.deadline_ns;
    int64_t where = c->where;
    c->where = PH_WHERE_WAIT_REFS;
    /* Pairs with the release decrement in desc_put(). */
    while (ph_load_acquire(&d->refs) != 0) {
        if (ph_spin_step(e, &spins, deadline, PH_AWAIT_ANY, ph_load_relaxed(&e->sh->round)) < 0) {
            ph_violation(e, PH_R_REFS_WAIT, ph_self.idx, site, PH_CTX_THREAD,
                         ph_load_relaxed(&e->sh->round), e->cfg.deadline_ns,
                         (uint64_t)ph_load_relaxed(&d->refs), 0);
            ph_abort_run(e);
            rc = rc ? rc : -ETIMEDOUT;
            break;
        }
    }
    c->where = where;
    return rc;
}

void ph_steps_init(struct ph_engine *e)
{
    e->steps = (struct ph_steps){
        .order = {STEP_INT3, STEP_TAIL, STEP_FIRST},
        .poke_tail = ph_poke_tail,
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
    sort_sites(e, ids, n);      /* the descriptor's vec is address-ordered */
    e->seq++;
    struct ph_bp_desc *d = &e->desc[e->seq & 1];
    struct ph_patch *vec = e->patches + (e->seq & 1) * PH_MAX_BATCH;
    uint64_t lo = UINT64_MAX, hi = 0;
    for (int i = 0; i < n; i++) {
        struct ph_patch *p = &vec[i];
        ph_fill_patch(e, p, ids[i]);
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
    if ((rc = poke_sync(e, vec, n, PH_SYNC_0, e->steps.order[0])))
        goto out;
    struct ph_ev x;         /* every participant acked SYNC_0: its subscribers (stress) */
    x.c = c;
    x.r = PH_ROUND(e->seq, PH_SYNC_0);
    x.site = ids[0];
    ph_emit(e, PH_E_STATE_ACKED, &x);
    /* second step: the tail */
    if ((rc = poke_sync(e, vec, n, PH_SYNC_1, e->steps.order[1])))
        goto out;
    /* third step: the new first byte */
    if ((rc = poke_sync(e, vec, n, PH_SYNC_2, e->steps.order[2])))
        goto out;
    /* Every secondary acks SYNC_DONE from thread context: no laggard can
     * still be in a breakpoint handler for this round. */
    if ((rc = poke_sync(e, vec, n, PH_SYNC_DONE, STEP_NONE)))
        goto out;

out:
    if (rc) {
        /* The round failed mid-way (a deadline, already recorded, or an
         * error such as a failed membarrier):
         * complete the round's bytes, so that no INT3 outlives it for NMIs
         * and the verification to trap on forever.  Not a protocol step:
         * the run ends here, and the observer stands down at the abort. */
        ph_abort_run(e);
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
        struct ph_ev x;
        x.c = c;
        ph_emit(e, PH_E_ROUND_END, &x);
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
        ph_violation(e, PH_R_NMI_QUEUE, ph_self.idx, -1, PH_CTX_THREAD,
                     ph_load_relaxed(&e->sh->round), 0, 0, 0);
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
    struct ph_counters *c = ph_self.c;
    int64_t where = c->where;
    int rc = 0;
    c->where = leaving ? PH_WHERE_SESSION_EXIT : PH_WHERE_SESSION_ENTRY;
    for (int i = 0; i < e->cfg.nthreads && !rc; i++) {
        if (i == e->cfg.primary || ph_load_relaxed(&e->thr[i].role) != PH_ROLE_SECONDARY)
            continue;
        /* Pairs with the release stores of session_in / session_out in
         * ph_nmi_work() and ph_secondary_run(). */
        while (ph_load_acquire(leaving ? &e->thr[i].session_out : &e->thr[i].session_in) < k) {
            if (ph_aborted(e) || ph_load_acquire(&e->sh->stop))
                break;
            if (ph_spin_step(e, &spins, deadline, i, ph_load_relaxed(&e->sh->round)) < 0) {
                ph_violation(e, leaving ? PH_R_SESSION_EXIT : PH_R_SESSION_ENTRY, i, -1,
                             PH_CTX_THREAD, ph_load_relaxed(&e->sh->round), e->cfg.deadline_ns, 0, 0);
                ph_abort_run(e);
                rc = -ETIMEDOUT;
                break;
            }
        }
        if (ph_aborted(e) || ph_load_acquire(&e->sh->stop))
            break;
    }
    c->where = where;
    return rc;
}

static int primary_run(struct ph_engine *e, int64_t nsites, uint64_t until_ns)
{
    struct ph_counters *c = ph_self.c;
    if (!c || ph_self.e != e || ph_self.idx != e->cfg.primary)
        return -EPERM;
    int sessions = e->cfg.sessions > 1 ? e->cfg.sessions : 1, rc = 0;
    uint64_t t0 = ph_now_ns();
    e->sh->t_start = t0;
    struct ph_ev x;
    x.c = c;
    ph_emit(e, PH_E_RUN_START, &x);
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
    ph_emit(e, PH_E_RUN_END, &x);
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
            if (ph_spin_step(e, &spins, deadline, PH_AWAIT_STATE, r) < 0) {
                ph_violation(e, PH_R_SESSION_WAIT, ph_self.idx, -1, PH_CTX_THREAD, r,
                             e->cfg.deadline_ns, 0, 0);
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
    for (uint64_t k = 0;; k++) {
        uint64_t r = ph_state_read(e, PH_CTX_THREAD);
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
        uint64_t rnd = ph_splitmix(&ph_self.rng);
        /* Half the time a site being patched. */
        int site = (n > 0 && (rnd & 1)) ? e->cur_ids[(rnd >> 1) % (uint64_t)n]
                                        : (int)((rnd >> 1) % (uint64_t)e->cfg.nsites);
        ph_site_run(e, site, PH_CTX_THREAD, NULL);
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
        struct ph_ev x;     /* its subscriber holds it to the schedule's variant */
        x.c = c;
        x.r = r;
        x.site = s;
        x.arg = ph_site_run(e, s, PH_CTX_THREAD, &x.value);
        ph_emit(e, PH_E_VERIFIED, &x);
        ph_count(&c->verified, 1);
    }
    return 0;
}

