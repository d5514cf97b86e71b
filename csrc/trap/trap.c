/*
 * trap.c -- the breakpoint path (SIGTRAP), the "NMI" (a per-thread signal)
 * and the fault recorder (SIGILL/SIGSEGV/SIGBUS).
 *
 * The kernel enters the breakpoint and NMI handlers through the entries
 * below, which save errno and emit TRAP_ENTER/TRAP_EXIT and
 * NMI_ENTER/NMI_EXIT around them: the observer counts what the kernel
 * delivered there (ph_events.h), never on the handlers' word.
 * All handlers are async-signal-safe: they save errno, touch only
 * lock-free shared state and the interrupted context, and never call into
 * Python.  They run on each participant's alternate signal stack.
 *
 * SIGTRAP is installed with SA_NODEFER: a breakpoint inside breakpoint
 * handling (the RFC's unhandled case: a site inside the sync loop itself)
 * re-enters the handler, which diagnoses it (invariant h) instead of the
 * kernel killing the process with a blocked synchronous signal.  The NMI
 * signal is blocked while a breakpoint is handled and while an NMI runs, so
 * NMIs never nest.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>
#include "ph_internal.h"

static struct sigaction old_trap, old_nmi, old_fault[3];
static const int fault_sigs[3] = {SIGILL, SIGSEGV, SIGBUS};
static int nmi_sig_installed;

/* ------------------------------------------------------------------ */
/* Breakpoint descriptor: try_get / put (upstream's try_get_desc).     */

static struct ph_bp_desc *desc_try_get(struct ph_engine *e)
{
    /* Pairs with the release store publishing the descriptor in
     * patch_batch() (protocol.c): seeing the pointer means seeing vec/nr. */
    struct ph_bp_desc *d = ph_load_acquire(&e->bp_desc);
    if (!d)
        return NULL;
    struct ph_ev x;          /* found, no reference yet (and held, below): aimed stress */
    x.c = ph_self.c;
    x.addr = (uint64_t)(uintptr_t)d;
    ph_emit(e, PH_E_DESC_FOUND, &x);
    int32_t r = ph_load_relaxed(&d->refs);
    do {
        if (r == 0)
            return NULL;      /* being retracted: take no new reference */
        /* acquire: pairs with the release store of refs = 1 on publish. */
    } while (!__atomic_compare_exchange_n(&d->refs, &r, r + 1, 1,
                                          __ATOMIC_ACQUIRE, __ATOMIC_RELAXED));
    ph_emit(e, PH_E_DESC_HELD, &x);
    return d;
}

static void desc_put(struct ph_bp_desc *d)
{
    /* release: pairs with the acquire load of refs in the primary's
     * wait for the count to drop to zero (patch_batch()). */
    __atomic_fetch_sub(&d->refs, 1, __ATOMIC_RELEASE);
}

/* Binary search of the descriptor's vec (sorted by address). */
static struct ph_patch *desc_find(struct ph_bp_desc *d, uint64_t addr)
{
    int lo = 0, hi = d->nr - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        uint64_t a = d->vec[mid].addr;
        if (a == addr)
            return &d->vec[mid];
        if (a < addr)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

/* ------------------------------------------------------------------ */

static void chain_trap(int sig, siginfo_t *si, void *uc)
{
    if (old_trap.sa_flags & SA_SIGINFO) {
        if (old_trap.sa_sigaction)
            old_trap.sa_sigaction(sig, si, uc);
        return;
    }
    if (old_trap.sa_handler == SIG_IGN)
        return;
    if (old_trap.sa_handler == SIG_DFL) {
        /* Nobody else wanted it: die of SIGTRAP as if we were not here. */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof(dfl));
        dfl.sa_handler = SIG_DFL;
        sigaction(SIGTRAP, &dfl, NULL);
        raise(SIGTRAP);
        return;
    }
    old_trap.sa_handler(sig);
}

/* Upstream's int3_emulate_*: run the new single instruction in the context,
 * as the site's kind does it (kinds/kinds.c). */
static int emulate(struct ph_engine *e, int site, struct ph_patch *p, ucontext_t *uc)
{
    const struct ph_kind_ops *k = ph_kinds[e->sites[site].kind];
    return k->emulate ? k->emulate(p, uc) : -1;     /* not one instruction */
}

void ph_record_crash(struct ph_engine *e, int signo, int code, uint64_t addr, uint64_t rip)
{
    struct ph_shared *sh = e->sh;
    int32_t zero = 0;
    if (!__atomic_compare_exchange_n(&sh->crash.valid, &zero, -1, 0,
                                     __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        return;                                   /* first crash wins */
    sh->crash.signo = signo;
    sh->crash.code = code;
    sh->crash.thread = ph_self.idx;
    sh->crash.addr = addr;
    sh->crash.rip = rip;
    sh->crash.round = ph_load_relaxed(&sh->round);
    sh->crash.ts = ph_now_ns();
    int site = ph_site_containing(e, rip);
    if (site < 0)
        site = ph_site_containing(e, addr);
    sh->crash.site = site;
    uint64_t lo = (uint64_t)e->text_x, hi = lo + e->text_len;
    if (rip >= lo && rip + 16 <= hi)
        memcpy(sh->crash.bytes, (const void *)rip, 16);
    /* Pairs with the parent's reading after the worker is gone. */
    ph_store_release(&sh->crash.valid, 1);
}

/* Entered through on_sigtrap() below, which saves errno. */
void ph_bp_handle(int sig, siginfo_t *si, void *ucv)
{
    ucontext_t *uc = ucv;
    /* Pairs with the release store in ph_engine_create(). */
    struct ph_engine *e = ph_load_acquire(&ph_engine_live);
    struct ph_counters *c = ph_self.c;
    uint64_t ip = (uint64_t)uc->uc_mcontext.gregs[REG_RIP] - 1;  /* the INT3 */
    int site = -1;

    if (e && c && ph_self.e == e && si->si_code == SI_KERNEL) {
        site = ph_site_find(e, ip);
        uint64_t lo = (uint64_t)e->text_x;
        if (site < 0 && ip >= lo && ip < lo + e->text_len) {
            /* An INT3 in our text that starts no site: a fill byte, or the
             * middle of a site, reached by a bad jump, a bad rewind or a
             * torn site.  Nothing resolves it: this is the protocol failure
             * itself, so record it like a fault and end the worker.
             * a: the address, b: the site holding it (-1: a fill byte). */
            int holder = ph_site_containing(e, ip);
            ph_violation(e, holder < 0 ? PH_R_FILL_BYTE : PH_R_MID_SITE, ph_self.idx, holder,
                         ph_current_ctx(), ph_load_relaxed(&e->sh->round), ip,
                         (uint64_t)(int64_t)holder, 0);
            ph_record_crash(e, SIGTRAP, PH_EXIT_UNRESOLVED, ip, ip);
            syscall(SYS_exit_group, PH_EXIT_UNRESOLVED);
        }
    }
    if (site < 0) {
        if (c)
            ph_count(&c->bp_foreign, 1);
        chain_trap(sig, si, ucv);
        return;
    }

    uint64_t t0 = ph_now_ns();
    int64_t depth = c->bp_depth + 1;
    c->bp_depth = depth;
    if ((uint64_t)depth > c->bp_depth_max)
        c->bp_depth_max = (uint64_t)depth;
    int ctx = c->nmi_active ? PH_CTX_NMI_BP : PH_CTX_BP;
    uint64_t round = ph_load_relaxed(&e->sh->round);
    ph_count(&c->bp_hits, 1);
    if (c->nmi_active)
        ph_count(&c->bp_hits_nmi, 1);
    ph_trace(e, PH_EV_BP_ENTER, ctx, site, round, (uint32_t)depth);

    /* Depth 1; in NMI mode an NMI may land inside a breakpoint handler and
     * take a breakpoint of its own (breakpoint, NMI, breakpoint): one more. */
    int64_t bound = 1 + (e->cfg.nmi_mode && c->nmi_active ? c->nmi_bp_base : 0);
    if (depth > bound) {
        /* A breakpoint while handling a breakpoint: the site is on the
         * handler's own path (the RFC's unhandled case).  Returning would
         * recurse forever; record it and end the worker. */
        ph_violation(e, PH_R_RECURSION, ph_self.idx, site, ctx, round, (uint64_t)depth, ip, 0);
        ph_record_crash(e, SIGTRAP, PH_EXIT_RECURSION, ip, ip);
        syscall(SYS_exit_group, PH_EXIT_RECURSION);
    }

    int64_t where = c->where;
    c->where = PH_WHERE_BP;
    struct ph_bp_desc *d = desc_try_get(e);
    /* The generation we hold: a primary that retires and reuses the
     * descriptor under us (two rounds later) bumps it, and clears retired. */
    uint64_t gen = d ? ph_load_relaxed(&d->gen) : 0;
    struct ph_patch *p = d ? desc_find(d, ip) : NULL;

    if (!p) {
        /* No published descriptor covers the site: the patch finished (and
         * was retracted) between the trap and now.  Re-execute it; if an
         * INT3 is there again, a new round owns it and we trap again. */
        uc->uc_mcontext.gregs[REG_RIP] = (greg_t)ip;
        ph_count(&c->bp_late, 1);
    } else if (d->native) {
        if (ph_self.idx == e->cfg.primary) {
            /* Primary (an NMI during its own patching): what its protocol
             * does there (struct ph_proto bp_primary), then re-execute or,
             * out of line, resume where it said. */
            if (e->proto->bp_primary(e, p, site, uc)) {
                ph_count(&c->bp_native, 1);
                goto resolved;
            }
        } else {
            /* Secondary: keep the primary moving -- ack the remaining states
             * re-entrantly until SYNC_DONE is seen. */
            e->proto->sync_site(e, ctx, d->seq);
        }
        uc->uc_mcontext.gregs[REG_RIP] = (greg_t)ip;   /* re-execute the new site */
        ph_count(&c->bp_native, 1);
    } else if (emulate(e, site, p, uc) == 0) {
        ph_count(&c->bp_emulated, 1);
    } else {
        /* upstream BUG()s here.  Name the real cause: a descriptor retired
         * or rewritten under us (its bytes are then no variant of the site)
         * is not a site that cannot be emulated. */
        const struct ph_site *st = &e->sites[site];
        int reused = ph_load_acquire(&d->retired) || ph_load_relaxed(&d->gen) != gen ||
                     (memcmp(p->text, st->text[0], (size_t)st->len) != 0 &&
                      memcmp(p->text, st->text[1], (size_t)st->len) != 0);
        ph_violation(e, reused ? PH_R_DESC_RETIRED : PH_R_NOT_EMULABLE, ph_self.idx, site, ctx,
                     round, reused ? gen : p->text[0], 0, 0);
        ph_record_crash(e, SIGTRAP, PH_EXIT_UNRESOLVED, ip, ip);
        syscall(SYS_exit_group, PH_EXIT_UNRESOLVED);
    }

resolved:
    if (d) {
        /* Pairs with the release store of retired in patch_batch(): the
         * primary must not retire a descriptor we still hold. */
        if (ph_load_acquire(&d->retired) || ph_load_relaxed(&d->gen) != gen)
            ph_violation(e, PH_R_DESC_RETIRED, ph_self.idx, site, ctx,
                         ph_load_relaxed(&e->sh->round), gen, 0, 0);
        desc_put(d);
    }
    ph_bp_sample(e, ph_self.idx, ph_now_ns() - t0);
    ph_trace(e, PH_EV_BP_EXIT, ctx, site, ph_load_relaxed(&e->sh->round), (uint32_t)depth);
    c->where = where;
    c->bp_depth = depth - 1;
}

/* The "NMI": executes the sites assigned to the NMI path -- the ones being
 * patched right now, so that breakpoints are hit in NMI context. */
void ph_nmi_handle(int sig, siginfo_t *si, void *ucv)
{
    (void)sig; (void)si; (void)ucv;
    struct ph_engine *e = ph_load_acquire(&ph_engine_live);  /* pairs: ph_engine_create() */
    struct ph_counters *c = ph_self.c;
    if (!e || !c || ph_self.e != e)
        return;
    if (c->nmi_work) {
        /* NMI mode: this thread's session runs here, further NMIs held off */
        int64_t base = c->nmi_bp_base, where = c->where;
        c->nmi_bp_base = c->bp_depth;
        c->nmi_active = 1;
        c->nmi_rc = ph_nmi_work(e);
        c->nmi_active = 0;
        c->nmi_bp_base = base;
        c->where = where;
        return;
    }
    int64_t where = c->where, base = c->nmi_bp_base;
    c->nmi_bp_base = c->bp_depth;
    c->nmi_active = 1;
    c->where = PH_WHERE_NMI;
    ph_count(&c->nmis, 1);
    uint64_t rnd = ph_splitmix(&ph_self.rng);
    /* Pairs with the release store of cur_n in patch_batch(). */
    int32_t n = ph_load_acquire(&e->cur_n);
    int site = n > 0 ? e->cur_ids[rnd % (uint64_t)n] : (int)(rnd % (uint64_t)e->cfg.nsites);
    ph_trace(e, PH_EV_NMI_ENTER, PH_CTX_NMI, site, ph_load_relaxed(&e->sh->round), 0);
    ph_st_nmi_body(e, site);
    ph_count(&c->nmi_execs, 1);
    ph_trace(e, PH_EV_NMI_EXIT, PH_CTX_NMI, site, ph_load_relaxed(&e->sh->round), 0);
    c->where = where;
    c->nmi_active = 0;
    c->nmi_bp_base = base;
}

static int in_our_text(struct ph_engine *e, uint64_t ip)
{
    uint64_t lo = (uint64_t)e->text_x;
    return ip >= lo && ip < lo + e->text_len;
}

/* The kernel's SIGTRAP: TRAP_ENTER, the breakpoint handler, TRAP_EXIT. */
static void on_sigtrap(int sig, siginfo_t *si, void *ucv)
{
    int saved_errno = errno;
    ucontext_t *uc = ucv;
    /* Pairs with the release store in ph_engine_create(). */
    struct ph_engine *e = ph_load_acquire(&ph_engine_live);
    struct ph_ev x;
    x.c = ph_self.c;
    x.si = si;
    x.uc = uc;
    x.addr = (uint64_t)uc->uc_mcontext.gregs[REG_RIP] - 1;   /* the INT3 */
    x.ours = e && x.c && ph_self.e == e && si->si_code == SI_KERNEL && in_our_text(e, x.addr);
    x.site = x.ours ? ph_site_find(e, x.addr) : -1;
    if (x.ours)
        ph_emit(e, PH_E_TRAP_ENTER, &x);
    ph_bp_handle(sig, si, ucv);
    if (x.ours)
        ph_emit(e, PH_E_TRAP_EXIT, &x);
    errno = saved_errno;
}

/* The NMI signal: NMI_ENTER, the NMI handler, NMI_EXIT. */
static void on_nmi(int sig, siginfo_t *si, void *ucv)
{
    int saved_errno = errno;
    struct ph_engine *e = ph_load_acquire(&ph_engine_live);  /* pairs: ph_engine_create() */
    struct ph_ev x;
    x.c = ph_self.c;
    x.si = si;
    x.uc = ucv;
    x.ours = e && x.c && ph_self.e == e;
    if (x.ours)
        ph_emit(e, PH_E_NMI_ENTER, &x);
    ph_nmi_handle(sig, si, ucv);
    if (x.ours)
        ph_emit(e, PH_E_NMI_EXIT, &x);
    errno = saved_errno;
}

/* A primary's breakpoint that finishes a single instruction locally, tail
 * then first byte, and serializes only itself with `sync` (the protocols'
 * bp_primary).  Secondaries may run stale code: the state machine resumes
 * and forces their sync_one() later; one instruction is fetched whole, so
 * none can run half of it. */
void ph_bp_finish_locally(struct ph_engine *e, const struct ph_patch *p, int sync)
{
    ph_text_poke(e, p->addr + 1, p->text + 1, (size_t)p->len - 1);
    ph_text_poke(e, p->addr, p->text, 1);
    ph_sync_core_method(e, sync);
}

/*
 * The primary's own breakpoint (a NMI during its patching), as the RFC's
 * steps with a fix have it (proto/rfc.c).  A block (a site its kind runs
 * out of line): another CPU may be between its instructions (it entered
 * before the INT3), so finishing the site here would tear that execution;
 * run the old variant out of line instead and write nothing -- the state
 * machine writes the rest once every CPU acked.  (The RFC as posted
 * finishes locally: a finding, README.)  A single instruction: finish it
 * locally.  Returns 1 when resumed out of line (struct ph_proto bp_primary).
 */
int ph_bp_primary_default(struct ph_engine *e, const struct ph_patch *p, int site, ucontext_t *uc)
{
    uint64_t ool = ph_site_ool(e, site, !p->new_variant);
    if (ool) {
        uc->uc_mcontext.gregs[REG_RIP] = (greg_t)ool;
        return 1;
    }
    ph_bp_finish_locally(e, p, e->cfg.sync);
    return 0;
}

static void on_fault(int sig, siginfo_t *si, void *ucv)
{
    int saved_errno = errno;
    ucontext_t *uc = ucv;
    struct ph_engine *e = ph_load_acquire(&ph_engine_live);  /* pairs: ph_engine_create() */
    uint64_t rip = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
    if (e) {
        ph_record_crash(e, sig, si->si_code, (uint64_t)si->si_addr, rip);
        ph_violation(e, PH_R_FAULT, ph_self.idx, ph_site_containing(e, rip), ph_current_ctx(),
                     ph_load_relaxed(&e->sh->round), (uint64_t)sig, rip, 0);
    }
    /* Hand the fault back to whoever had it before (Python's faulthandler,
     * or the default action): returning re-executes the faulting access. */
    for (int i = 0; i < 3; i++)
        if (fault_sigs[i] == sig)
            sigaction(sig, &old_fault[i], NULL);
    errno = saved_errno;
}

int ph_signals_install(struct ph_engine *e)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_sigtrap;          /* its events, then the handler */
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    if (!e->cfg.nmi_mode)
        sigaddset(&sa.sa_mask, e->nmi_signal);     /* no NMI during a breakpoint */
    if (sigaction(SIGTRAP, &sa, &old_trap) < 0)
        return -errno;

    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_nmi;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&sa.sa_mask);                      /* the NMI signal itself is blocked while it runs */
    if (sigaction(e->nmi_signal, &sa, &old_nmi) < 0)
        return -errno;
    nmi_sig_installed = e->nmi_signal;

    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; i++)
        if (sigaction(fault_sigs[i], &sa, &old_fault[i]) < 0)
            return -errno;
    return 0;
}

void ph_signals_restore(struct ph_engine *e)
{
    (void)e;
    sigaction(SIGTRAP, &old_trap, NULL);
    for (int i = 0; i < 3; i++)
        sigaction(fault_sigs[i], &old_fault[i], NULL);
    if (nmi_sig_installed) {
        /* A timer signal still queued must not kill the process with the
         * default action of a real-time signal: leave it ignored. */
        struct sigaction ign;
        memset(&ign, 0, sizeof(ign));
        ign.sa_handler = old_nmi.sa_handler == SIG_DFL ? SIG_IGN : old_nmi.sa_handler;
        ign.sa_flags = old_nmi.sa_flags;
        ign.sa_mask = old_nmi.sa_mask;
        if (old_nmi.sa_flags & SA_SIGINFO)
            sigaction(nmi_sig_installed, &old_nmi, NULL);
        else
            sigaction(nmi_sig_installed, &ign, NULL);
        nmi_sig_installed = 0;
    }
}

void ph_nmi_self(struct ph_engine *e)
{
    syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), e->nmi_signal);
}

int ph_nmi_arm(struct ph_engine *e, int thread, uint64_t period_ns, uint64_t first_ns)
{
    if (thread < 0 || thread >= e->cfg.nthreads || !e->thr[thread].tid)
        return -EINVAL;
    if (!e->timer_made[thread]) {
        struct sigevent sev;
        memset(&sev, 0, sizeof(sev));
        sev.sigev_notify = SIGEV_THREAD_ID;
        sev.sigev_signo = e->nmi_signal;
        sev._sigev_un._tid = (pid_t)e->thr[thread].tid;
        if (timer_create(CLOCK_MONOTONIC, &sev, &e->timers[thread]) < 0)
            return -errno;
        e->timer_made[thread] = 1;
    }
    struct itimerspec its;
    memset(&its, 0, sizeof(its));
    if (period_ns) {
        if (!first_ns)
            first_ns = period_ns;
        its.it_value.tv_sec = (time_t)(first_ns / 1000000000ULL);
        its.it_value.tv_nsec = (long)(first_ns % 1000000000ULL);
        its.it_interval.tv_sec = (time_t)(period_ns / 1000000000ULL);
        its.it_interval.tv_nsec = (long)(period_ns % 1000000000ULL);
    }
    if (timer_settime(e->timers[thread], 0, &its, NULL) < 0)
        return -errno;
    return 0;
}

/* Test hook: an INT3 that is no site of ours must reach the previous handler. */
int ph_test_foreign_int3(void)
{
    __asm__ __volatile__("int3" ::: "memory");
    return 0;
}
