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
 *     (PH_STRESS_PRIMARY_EXEC, protocol.c);
 *   - the NMI handler's levels: (1) run the site, (2) also take a lock
 *     shared by all threads, (3) also hold it for 1 us (cfg.nmi_level);
 *   - paired sites, a lock and its unlock switched together
 *     (PH_STRESS_PAIRED): a NMI runs the lock site, the lock, the unlock
 *     site, and the two must be the same variant (invariant t).
 *
 * Everything here may run in a signal handler: async-signal-safe.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "ph_internal.h"

/* ------------------------------------------------------------------ */
/* Aim: executions and NMIs into the windows between a round's pokes.  */

void ph_st_aim_primary(struct ph_engine *e, int step)
{
    if (!(e->cfg.aim & PH_AIM_PRIMARY) || !e->orc.active)
        return;
    /* Round k aims a NMI at step k % 4 (INT3, tail, byte 0); the fourth
     * round runs its site in thread context right after the INT3 (the
     * RFC selftest's primary): a breakpoint outside any NMI. */
    int aim = (int)(e->orc.seq & 3) + 1;
    if (aim == step)
        ph_nmi_self(e);
    else if (aim == 4 && step == 1) {
        int32_t n = ph_load_acquire(&e->cur_n);   /* pairs: patch_batch() */
        if (n > 0)
            ph_exec_check(e, e->cur_ids[0], PH_CTX_THREAD, NULL);
    }
}

void ph_st_aim_secondary(struct ph_engine *e, uint64_t r)
{
    struct ph_counters *c = ph_self.c;
    if (!(e->cfg.aim & PH_AIM_SECONDARY) || !e->orc.active || !c || c->in_nmi || c->in_bp)
        return;
    /* States rotate with the round, so each state of each site gets hit. */
    if ((int)(PH_ROUND_SEQ(r) & 3) == PH_ROUND_STATE(r))
        ph_nmi_self(e);
}

/* ------------------------------------------------------------------ */
/* The RFC selftest's conditions                                       */

void ph_st_state_seen(struct ph_engine *e, uint64_t r)
{
    (void)r;
    if (!(e->cfg.stress & PH_STRESS_NEIGHBOUR_NMI) || ph_self.idx == e->cfg.primary)
        return;
    int n = (ph_self.idx + 1) % e->cfg.nthreads;
    pid_t tid = (pid_t)ph_load_relaxed(&e->thr[n].tid);
    /* A NMI latches: one pending at most.  The signal standing in for it
     * would queue (a real-time signal), and a target that spends a session
     * inside its own NMI would collect thousands, up to the queue's limit,
     * after which no NMI could be sent at all.  acq_rel: pairs with the
     * release store that clears the latch in the NMI wrapper (check.c). */
    if (tid > 0 && !__atomic_exchange_n(&e->thr[n].nmi_latch, 1, __ATOMIC_ACQ_REL)) {
        if (syscall(SYS_tgkill, getpid(), tid, e->nmi_signal) < 0)
            ph_store_release(&e->thr[n].nmi_latch, 0);   /* not sent: not pending */
    }
}

void ph_st_sync_loop_exec(struct ph_engine *e, int ctx)
{
    struct ph_counters *c = ph_self.c;
    /* From the thread's own sync loop only: not from a breakpoint handler's
     * re-entry (a NMI may have taken the breakpoint before the thread's
     * execution set the guard), where running the site would recurse. */
    if (!(e->cfg.stress & PH_STRESS_SYNC_LOOP_EXEC) || c->guard || (ctx & PH_CTX_BP) ||
        c->bp_depth)
        return;
    int32_t n = ph_load_acquire(&e->cur_n);   /* pairs: patch_batch() */
    if (n <= 0)
        return;
    c->guard = 1;                             /* the per-thread recursion guard */
    ph_exec_check(e, e->cur_ids[0], ctx, NULL);
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
            ph_violation(e, PH_INV_DEADLINE, ph_self.idx, -1, ph_current_ctx(),
                         ph_load_relaxed(&e->sh->round), e->cfg.deadline_ns,
                         ph_load_relaxed(&e->st_lock) << 32);
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
        int a = ph_exec_check(e, lk, PH_CTX_NMI, &vl);
        int locked = level >= 2 && st_lock(e) == 0;
        if (locked && level >= 3)
            ph_busy_wait(1000);
        if (locked)
            st_unlock(e);
        int b = ph_exec_check(e, un, PH_CTX_NMI, &vu);
        ph_count(&c->pair_checks, 1);
        if (a >= 0 && b >= 0 && a != b)   /* a: lock's variant, b: unlock's */
            ph_violation(e, PH_INV_PAIRED, ph_self.idx, lk, ph_current_ctx(),
                         ph_load_relaxed(&e->sh->round), (uint64_t)a, (uint64_t)b);
        return;
    }
    ph_exec_check(e, site, PH_CTX_NMI, NULL);
    if (level >= 2 && st_lock(e) == 0) {
        if (level >= 3)
            ph_busy_wait(1000);
        st_unlock(e);
    }
}
