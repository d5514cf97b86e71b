/*
 * stress.c -- what the run does to the protocol, as opposed to what it
 * checks (check.c): aimed NMIs and executions, and the conditions of the
 * RFC's own selftest (patch 21).
 *
 *   - a secondary sends a NMI to its neighbouring thread at every state
 *     change it sees (PH_STRESS_NEIGHBOUR_NMI);
 *   - a secondary runs the site under patch from its own sync loop before
 *     acking, guarded against recursion (PH_STRESS_SYNC_LOOP_EXEC);
 *   - the primary runs the site in thread context right after SYNC_0
 *     (PH_STRESS_PRIMARY_EXEC);
 *   - the NMI handler's levels: (1) run the site, (2) also take a lock
 *     shared by all threads, (3) also hold it for 1 us (cfg.nmi_level);
 *   - paired sites, a lock and its unlock switched together
 *     (PH_STRESS_PAIRED): a NMI runs the lock site, the lock, the unlock
 *     site, and the two must be the same variant (invariant t).
 *
 * Each condition is a subscriber (include/subscribers.def): the protocols
 * never call it.  Everything here may run in a signal handler:
 * async-signal-safe.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "ph_internal.h"

/* Stress acts on the secondaries' view of the run: their thread's role. */
static int is_role(const struct ph_ev *x, int role)
{
    return x->c && x->c->role == role;
}

/* ------------------------------------------------------------------ */
/* Aim: executions and NMIs into the windows between a round's pokes.  */

/* Queue this thread an aimed NMI, tagged with where it is aimed (slot,
 * round): the observer's NMI_ENTER holds where it landed against that
 * (csrc/observe/check.c).  The count of NMIs already taken goes first:
 * one that enters before the aimed one competed with it.  Plain stores:
 * the signal is delivered to this thread, after the syscall returns. */
/* Queue the NMI signal to thread tid with value in si_value (the kernel
 * delivers it to the receiver's entry): 0, or -1 with errno. */
static int queue_nmi(struct ph_engine *e, pid_t tid, int value)
{
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    si.si_signo = e->nmi_signal;
    si.si_code = SI_QUEUE;
    si.si_pid = getpid();
    si.si_uid = getuid();
    si.si_value.sival_int = value;
    return (int)syscall(SYS_rt_tgsigqueueinfo, getpid(), tid, e->nmi_signal, &si);
}

static void aim_nmi(struct ph_engine *e, struct ph_counters *c, int slot, uint64_t seq)
{
    ph_store_relaxed(&c->aim_nmis, ph_load_relaxed(&c->nmi_entered));   /* first: see above */
    int tag = (int)(PH_AIM_TAG | (uint32_t)slot << 24 | (uint32_t)(seq & PH_AIM_SEQ_MASK));
    if (queue_nmi(e, (pid_t)ph_load_relaxed(&c->tid), tag) == 0)
        ph_count(&c->aim_sent[slot], 1);
    else
        ph_count(&c->aim_refused[slot], 1);   /* EAGAIN: the signal queue is full */
}

/* STEP_DONE: the primary wrote one step (x->arg) of a round. */
void ph_st_aim_primary(struct ph_engine *e, struct ph_ev *x)
{
    int step = x->arg;
    if (!(e->cfg.aim & PH_AIM_PRIMARY) || !e->orc.active)
        return;
    /* Round k aims a NMI at step k % 4 (INT3, tail, byte 0); the fourth
     * round runs its site in thread context right after the INT3 (the
     * RFC selftest's primary): a breakpoint outside any NMI. */
    int aim = (int)(e->orc.seq & 3) + 1;
    if (aim == step)
        aim_nmi(e, x->c, step - 1, e->orc.seq);
    else if (aim == 4 && step == 1) {
        int32_t n = ph_load_acquire(&e->cur_n);   /* pairs: patch_batch() */
        if (n > 0)
            ph_site_run(e, e->cur_ids[0], PH_CTX_THREAD, NULL);
    }
}

/* SYNC_BEGIN: a secondary NMIs itself on a new state, before it
 * serializes and acks it; the states rotate with the round, so each state
 * of each site gets hit. */
void ph_st_aim_secondary(struct ph_engine *e, struct ph_ev *x)
{
    struct ph_counters *c = x->c;
    if (!(e->cfg.aim & PH_AIM_SECONDARY) || !e->orc.active || !is_role(x, PH_ROLE_SECONDARY) ||
        x->ctx != PH_CTX_THREAD || c->in_nmi || c->in_bp || PH_ROUND_STATE(x->r) >= PH_SYNC_DONE)
        return;
    if ((int)(PH_ROUND_SEQ(x->r) & 3) == PH_ROUND_STATE(x->r))
        aim_nmi(e, c, PH_AIM_SLOT_SYNC0 + PH_ROUND_STATE(x->r), PH_ROUND_SEQ(x->r));
}

/* SEEN (without acks) or the executor's own ACK (with them: the window
 * before the next poke): executors run the sites under patch at once. */
void ph_st_aim_executor(struct ph_engine *e, struct ph_ev *x)
{
    if (!(e->cfg.aim & PH_AIM_EXECUTOR) || !is_role(x, PH_ROLE_EXECUTOR) ||
        x->ctx != PH_CTX_THREAD || PH_ROUND_STATE(x->r) == PH_DONE)
        return;
    /* with acks, at the ack (its ACK event); without, at the state (SEEN) */
    if ((e->cfg.secsync == PH_SECSYNC_ACK) != (x->c->acked_round == x->r))
        return;
    int32_t n = ph_load_acquire(&e->cur_n);   /* pairs: patch_batch() */
    for (int32_t i = 0; i < n && i < 4; i++)
        ph_site_run(e, e->cur_ids[i], PH_CTX_THREAD, NULL);
}

/* DESC_FOUND (--aim descriptor): on one executor trap in four, wait
 * before taking the reference until the primary retracts the descriptor:
 * a get after retire, which must find its count at zero and take none.
 * Bounded (RETIRE_WAIT_NS): with acks owed the primary cannot retract
 * meanwhile, and the wait only delays. */
#define RETIRE_WAIT_NS 50000
#define HOLD_NS 20000

void ph_st_aim_desc_retire(struct ph_engine *e, struct ph_ev *x)
{
    struct ph_counters *c = x->c;
    if (!is_role(x, PH_ROLE_EXECUTOR) || (c->traps & 3) != 1)
        return;
    const struct ph_bp_desc *d = (const struct ph_bp_desc *)(uintptr_t)x->addr;
    uint64_t end = ph_now_ns() + RETIRE_WAIT_NS;
    /* Pairs with the primary's release stores retracting it (patch_batch()). */
    while (ph_load_acquire(&e->bp_desc) == d && ph_load_acquire(&d->refs) != 0 &&
           ph_now_ns() < end)
        ph_cpu_relax();
}

/* DESC_HELD (--aim descriptor): on another trap in four, hold the
 * reference a while: the primary must wait for it before it retires the
 * descriptor, and reuse it two rounds later only after the put. */
void ph_st_aim_desc_hold(struct ph_engine *e, struct ph_ev *x)
{
    (void)e;
    if (is_role(x, PH_ROLE_EXECUTOR) && (x->c->traps & 3) == 3)
        ph_busy_wait(HOLD_NS);
}

/* SYNC_BEGIN: --force-nmi 2, a secondary NMIs itself before it acks
 * SYNC_0, to take the breakpoint in NMI context. */
void ph_st_force_nmi(struct ph_engine *e, struct ph_ev *x)
{
    if ((e->cfg.force_nmi & 2) && is_role(x, PH_ROLE_SECONDARY) && x->ctx == PH_CTX_THREAD &&
        PH_ROUND_STATE(x->r) == PH_SYNC_0 && ph_load_relaxed(&x->c->acked_round) < x->r)
        ph_nmi_self(e);
}

/* STATE_ACKED (SYNC_0): --force-nmi 1, the primary NMIs itself to hit its
 * own INT3 in NMI context; the RFC selftest's primary runs the site in
 * thread context. */
void ph_st_primary_exec(struct ph_engine *e, struct ph_ev *x)
{
    if (PH_ROUND_STATE(x->r) != PH_SYNC_0)
        return;
    if (e->cfg.force_nmi & 1)
        ph_nmi_self(e);
    if (e->cfg.stress & PH_STRESS_PRIMARY_EXEC) {
        /* A site the primary's own breakpoint path already finished this
         * round (native: it writes the whole instruction) has no INT3 left
         * to take: counted, so that its breakpoint is not asked for.  The
         * byte as the text holds it (only this thread writes it). */
        if (*(volatile const uint8_t *)(uintptr_t)e->sites[x->site].addr != 0xCC)
            ph_count(&x->c->pexec_done, 1);
        ph_site_run(e, x->site, ph_current_ctx(), NULL);
    }
}

/* ------------------------------------------------------------------ */
/* Probes: NMIs sent where the protocol promises to hold them off; the  */
/* observer's NMI_ENTER sees whether they were (invariant nmi-held-off). */

/* TRAP_ENTER, after the observer counted it: every 16th trap sends a NMI
 * from inside the breakpoint handler.  Held off as promised, it stays
 * pending until the handler returns.  (In NMI mode NMIs are allowed
 * there: no probe.) */
void ph_st_trap_probe(struct ph_engine *e, struct ph_ev *x)
{
    struct ph_counters *c = x->c;
    if ((c->traps & 15) == 1 && !e->cfg.nmi_mode) {
        ph_count(&c->probes, 1);
        ph_nmi_self(e);
    }
}

/* NMI_ENTER: every 32nd NMI sends another, which must wait until it returns. */
void ph_st_nmi_probe(struct ph_engine *e, struct ph_ev *x)
{
    struct ph_counters *c = x->c;
    if ((ph_load_relaxed(&c->nmis) & 31) == 7) {
        ph_count(&c->probes, 1);
        ph_nmi_self(e);
    }
}

/* NMI_ENTER, first: the latch a neighbour set (ph_st_neighbour_nmi) opens
 * again -- another NMI may now be pending, one at most.  Pairs with its
 * acq_rel exchange. */
void ph_st_nmi_latch(struct ph_engine *e, struct ph_ev *x)
{
    (void)e;
    ph_store_release(&x->c->nmi_latch, 0);
}

/* ------------------------------------------------------------------ */
/* The RFC selftest's conditions                                       */

/* SEEN: a secondary NMIs its neighbour at every state change.
 *
 * Accounting (checker.py's stress coverage): each state new to the sender
 * is one chance, and its fate is counted: queued, not sent because the
 * neighbour still had one pending (the box held it: a handler, off CPU),
 * not sent although everything queued to it had arrived (a latch that
 * never reopened: the harness's fault), or refused by the kernel.  This
 * thread is the neighbour's only sender (a ring; its own handlers wait,
 * below), so what had arrived is read before the latch is taken: a latch
 * seen set with nothing in flight is stale, never an arrival between the
 * two. */
static void neighbour_nmi(struct ph_engine *e, struct ph_ev *x, struct ph_counters *c)
{
    int n = (ph_self.idx + 1) % e->cfg.nthreads;
    pid_t tid = (pid_t)ph_load_relaxed(&e->thr[n].tid);
    int chance = x->r > c->nb_round;
    if (chance) {
        c->nb_round = x->r;
        ph_count(&c->nb_chances, 1);
    }
    if (tid <= 0)
        return;
    /* What had arrived, read before the latch: the receiver's NMI_ENTER
     * clears the latch before it counts the arrival (subscribers.def), so
     * an arrival counted here means a clear the exchange below will see.
     * Acquire: pairs with the release store of that count (ph_obs_nmi_enter). */
    uint64_t got = ph_load_acquire(&e->thr[n].nmi_neighbour);
    /* relaxed: a count, read only against `got` by this thread */
    uint64_t to = __atomic_fetch_add(&e->thr[n].nb_to, 1, __ATOMIC_RELAXED);
    /* A NMI latches: one pending at most.  The signal standing in for it
     * would queue (a real-time signal), and a target that spends a session
     * inside its own NMI would collect thousands, up to the queue's limit,
     * after which no NMI could be sent at all.  acq_rel: pairs with the
     * release store that clears the latch (ph_st_nmi_latch). */
    if (__atomic_exchange_n(&e->thr[n].nmi_latch, 1, __ATOMIC_ACQ_REL)) {
        __atomic_fetch_sub(&e->thr[n].nb_to, 1, __ATOMIC_RELAXED);   /* not sent */
        /* One queued and not yet arrived: held off by design while the
         * neighbour is inside a breakpoint handler or its own NMI (a
         * NMI-mode session), else the box holds it (off CPU, slow).
         * Relaxed: another thread's counts, read as a snapshot. */
        if (chance && to <= got)
            ph_count(&c->nb_stale, 1);
        else if (chance)
            ph_count(ph_load_relaxed(&e->thr[n].in_nmi) || ph_load_relaxed(&e->thr[n].in_bp)
                     ? &c->nb_held : &c->nb_inflight, 1);
        return;
    }
    {
        /* Queued with the sender in si_value (the kernel delivers it), so
         * that the receiver's entry can count a neighbour's NMI as such. */
        if (queue_nmi(e, tid, ph_self.idx + 1) < 0) {
            __atomic_fetch_sub(&e->thr[n].nb_to, 1, __ATOMIC_RELAXED);
            ph_store_release(&e->thr[n].nmi_latch, 0);   /* not sent: not pending */
            if (chance)
                ph_count(&c->nb_refused, 1);
        } else if (chance) {
            ph_count(&c->nb_sent, 1);
        }
    }
}

void ph_st_neighbour_nmi(struct ph_engine *e, struct ph_ev *x)
{
    if (!(e->cfg.stress & PH_STRESS_NEIGHBOUR_NMI) || !is_role(x, PH_ROLE_SECONDARY))
        return;
    struct ph_counters *c = x->c;
    /* This thread's own handlers (its NMI's or breakpoint's SEEN) re-enter
     * here.  While the thread is between reading its counts and taking the
     * latch they leave the neighbour alone, so that neither counts a chance
     * twice nor takes the other's latch for a stale one.  Signal fences:
     * the handler runs on this thread, between its instructions. */
    if (ph_load_relaxed(&c->nb_busy))
        return;
    ph_store_relaxed(&c->nb_busy, 1);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);   /* pairs: the fence before the clear below */
    neighbour_nmi(e, x, c);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);   /* pairs: the fence after the set above */
    ph_store_relaxed(&c->nb_busy, 0);
}

/* SYNC_BEGIN: a secondary runs the site under patch from its own sync
 * loop, before it serializes and acks a state below SYNC_DONE (in the
 * posted code: between its test_bit and its set_bit, as patch 21 does). */
void ph_st_sync_loop_exec(struct ph_engine *e, struct ph_ev *x)
{
    struct ph_counters *c = x->c;
    /* From the thread's own sync loop only: not from a breakpoint handler's
     * re-entry (a NMI may have taken the breakpoint before the thread's
     * execution set the guard), where running the site would recurse. */
    if (!(e->cfg.stress & PH_STRESS_SYNC_LOOP_EXEC) || !is_role(x, PH_ROLE_SECONDARY) ||
        PH_ROUND_STATE(x->r) >= PH_SYNC_DONE || c->guard || (x->ctx & PH_CTX_BP) || c->bp_depth)
        return;
    int32_t n = ph_load_acquire(&e->cur_n);   /* pairs: patch_batch() */
    if (n <= 0)
        return;
    c->guard = 1;                             /* the per-thread recursion guard */
    ph_site_run(e, e->cur_ids[0], x->ctx, NULL);
    c->guard = 0;
}

/* The lock shared by all threads, taken inside NMIs (levels 2 and 3). */
static int st_lock(struct ph_engine *e)
{
    uint64_t spins = 0, deadline = ph_now_ns() + e->cfg.deadline_ns, zero = 0;
    struct ph_counters *c = ph_self.c;
    int64_t where = c->where;
    c->where = PH_WHERE_LOCK;
    /* acquire: pairs with the release store in st_unlock(). */
    while (!__atomic_compare_exchange_n(&e->st_lock, &zero, (uint64_t)ph_self.idx + 1, 0,
                                        __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
        zero = 0;
        ph_cpu_relax();
        if ((++spins & 1023) == 0 && ph_now_ns() > deadline) {
            /* b: the thread holding it (the lock word is its index + 1) */
            ph_violation(e, PH_R_NMI_LOCK, ph_self.idx, -1, ph_current_ctx(),
                         ph_load_relaxed(&e->sh->round), e->cfg.deadline_ns,
                         ph_load_relaxed(&e->st_lock) - 1, 0);
            ph_abort_run(e);
            c->where = where;
            return -1;
        }
    }
    c->where = where;
    return 0;
}

static void st_unlock(struct ph_engine *e)
{
    ph_store_release(&e->st_lock, 0);   /* pairs: st_lock()'s acquire CAS */
}

/* What a NMI does on the site it picked. */
void ph_st_nmi_body(struct ph_engine *e, int site)
{
    int level = e->cfg.nmi_level;
    struct ph_counters *c = ph_self.c;
    if (e->cfg.stress & PH_STRESS_PAIRED) {
        int lk = site & ~1, un = lk + 1;
        uint32_t vl, vu;
        int a = ph_site_run(e, lk, PH_CTX_NMI, &vl);
        int locked = level >= 2 && st_lock(e) == 0;
        if (locked && level >= 3)
            ph_busy_wait(1000);
        if (locked)
            st_unlock(e);
        int b = ph_site_run(e, un, PH_CTX_NMI, &vu);
        ph_count(&c->pair_checks, 1);
        if (a >= 0 && b >= 0 && a != b)   /* a: lock's variant, b: unlock's */
            ph_violation(e, PH_R_PAIR_MISMATCH, ph_self.idx, lk, ph_current_ctx(),
                         ph_load_relaxed(&e->sh->round), (uint64_t)a, (uint64_t)b, 0);
        return;
    }
    ph_site_run(e, site, PH_CTX_NMI, NULL);
    if (level >= 2 && st_lock(e) == 0) {
        if (level >= 3)
            ph_busy_wait(1000);
        st_unlock(e);
    }
}
