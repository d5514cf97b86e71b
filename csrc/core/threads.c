/*
 * threads.c -- participants: each registers itself (pinned by its caller),
 * with its alternate signal stack and its counters.
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
        if (ph_spin_step(e, &spins, deadline, PH_AWAIT_NONE, 0) < 0)
            return -ETIMEDOUT;
        if (ph_aborted(e))
            return -ECANCELED;
    }
    return 0;
}

