/*
 * litmus.c -- one cross-modifying-code litmus test: a writer thread
 * rewrites a site of real executable text, trial after trial, with the
 * test's steps (stores and syncs: stores.def, syncs.def), while executor threads run
 * it; each execution is classified by what came back (the variant's value,
 * neither, a signal) and by whether it raced a write.
 *
 * The region is a memfd mapped twice: the view that executes (RWX where
 * the kernel allows it, for the tests that write through it) and a RW
 * alias.  Everything in it but the site and its targets is INT3, so a
 * torn call or jump target that lands in it traps and is counted
 * (`landed`); a fault is counted with its bytes.  The worker process is
 * the test's alone: a landing outside the region can kill it, and the
 * parent records that death as the outcome it is (pyharness/litmus/).
 *
 * The window: the writer makes `seq` odd (release) before a trial's first
 * store and even (release) after its last sync; an executor reads it
 * (acquire) before and after each run: a run that saw it odd, or saw it
 * change, raced a write.  Its counts live in the parent's shared region
 * (struct ph_lit_result): they survive the worker's death.
 *
 * The signal handlers are async-signal-safe, save errno, and leave a run
 * by siglongjmp only from inside one of our runs (the thread's flag says
 * so); anywhere else they restore the default action and return, so the
 * fault repeats and kills the worker -- the parent reads the counts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>
#include <linux/membarrier.h>
#include "ph_api.h"

#define INT3 0xCC

static struct {
    uint8_t *x;                    /* the executing view */
    uint8_t *w;                    /* the RW alias */
    uint64_t size;
    int rwx;
    const struct ph_lit_test *t;
    struct ph_lit_result *r;
    uint64_t seq __attribute__((aligned(64)));   /* odd: a trial's writes are under way */
    uint64_t stop __attribute__((aligned(64)));
    uint64_t ack[PH_LIT_MAX_EXEC] __attribute__((aligned(64)));
    /* now_ns() a run began, 0 outside: relaxed on both sides, read only by
     * the writer's watchdog (a stale read delays a kill by one look; the
     * handler checks in_run itself, so a late signal only returns). */
    uint64_t in_run_since[PH_LIT_MAX_EXEC];
    pthread_t tids[PH_LIT_MAX_EXEC];
    uint64_t ready __attribute__((aligned(64)));
    uint8_t data[2][64] __attribute__((aligned(64)));   /* the floor's data word */
    uint64_t fseq __attribute__((aligned(64)));          /* the floor's seq, as the text's */
} L;

/* Per executor thread: where a signal inside a run goes. */
static __thread sigjmp_buf run_jb;
static __thread volatile sig_atomic_t in_run;
static __thread volatile int run_outcome;
static __thread int my_idx = -1;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void pin(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof(set), &set);
}

static void count(int window, int outcome)
{
    /* Relaxed: one counter per outcome, bumped by every executor; the
     * parent reads them after the threads are gone (or the worker died). */
    __atomic_fetch_add(&L.r->counts[window ? 1 : 0][outcome], 1, __ATOMIC_RELAXED);
}

static void first_seen(int signo, uint64_t rip, uint64_t value, const uint8_t *bytes)
{
    uint64_t zero = 0;
    /* The first odd outcome's evidence, kept once (acq_rel CAS: the bytes
     * below are written by the thread that won it). */
    if (!__atomic_compare_exchange_n(&L.r->first_signo, &zero, (uint64_t)signo, 0,
                                     __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        return;
    L.r->first_rip = rip;
    L.r->first_value = value;
    if (bytes)
        memcpy(L.r->first_bytes, bytes, PH_LIT_MAX_LEN);
}

static int in_region(uint64_t a, uint64_t len)
{
    return a >= (uint64_t)L.x && a + len <= (uint64_t)L.x + L.size;
}

/* ------------------------------------------------------------------ */
/* Signals                                                              */

static void on_fault(int sig, siginfo_t *si, void *ctx)
{
    int saved = errno;
    ucontext_t *uc = ctx;
    uint64_t rip = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
    if (!in_run) {
        signal(sig, SIG_DFL);      /* not ours: the fault repeats, the worker dies */
        errno = saved;
        return;
    }
    uint8_t bytes[PH_LIT_MAX_LEN] = {0};
    if (in_region(rip, PH_LIT_MAX_LEN))
        memcpy(bytes, (const void *)rip, PH_LIT_MAX_LEN);
    first_seen(sig, rip, (uint64_t)(uintptr_t)si->si_addr, bytes);
    run_outcome = PH_LO_FAULT;
    in_run = 0;
    errno = saved;
    siglongjmp(run_jb, 1);
}

static void on_trap(int sig, siginfo_t *si, void *ctx)
{
    int saved = errno;
    ucontext_t *uc = ctx;
    uint64_t rip = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
    const struct ph_lit_test *t = L.t;
    uint64_t site = (uint64_t)L.x + t->site_off + (uint64_t)t->entry;
    (void)si;
    if (!in_run || !in_region(rip - 1, 1)) {
        signal(sig, SIG_DFL);
        errno = saved;
        return;
    }
    if (rip - 1 == site && t->int3_handler) {
        /* The INT3 protocol's breakpoint: wait (bounded) until the byte
         * is gone, then run the site again from its start.  The return
         * from the handler serializes this CPU.  A trap whose INT3 is
         * already gone at the first look ran a stale INT3. */
        const uint8_t *b0 = (const uint8_t *)site;
        uint64_t deadline = now_ns() + t->stuck_ns;
        int first = 1;
        /* One read decides (the next trial may write the INT3 again at
         * once).  Acquire: pairs with the writer's stores being ordered
         * before its syncs. */
        uint8_t b;
        while ((b = __atomic_load_n(b0, __ATOMIC_ACQUIRE)) == INT3 && now_ns() < deadline)
            first = 0;
        __atomic_fetch_add(&L.r->traps_handled, 1, __ATOMIC_RELAXED);
        if (first)
            __atomic_fetch_add(&L.r->stale_int3, 1, __ATOMIC_RELAXED);
        if (b != INT3) {
            uc->uc_mcontext.gregs[REG_RIP] = (greg_t)site;
            errno = saved;
            return;
        }
        run_outcome = PH_LO_STUCK;
    } else {
        uint8_t bytes[PH_LIT_MAX_LEN] = {0};
        if (in_region(rip - 1, PH_LIT_MAX_LEN))
            memcpy(bytes, (const void *)(rip - 1), PH_LIT_MAX_LEN);
        first_seen(SIGTRAP, rip - 1, 0, bytes);
        run_outcome = rip - 1 == site ? PH_LO_TRAP : PH_LO_LANDED;
    }
    in_run = 0;
    errno = saved;
    siglongjmp(run_jb, 1);
}

/* The writer's watchdog: an executor that has not left its run within the
 * bound (a `jmp $` nobody rewrote, a wait that never ends) is stuck. */
static void on_stuck(int sig, siginfo_t *si, void *ctx)
{
    int saved = errno;
    (void)sig; (void)si; (void)ctx;
    if (!in_run) {
        errno = saved;
        return;
    }
    run_outcome = PH_LO_STUCK;
    in_run = 0;
    errno = saved;
    siglongjmp(run_jb, 1);
}

static int handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    /* SA_NODEFER: leaving by siglongjmp (no mask saved) leaves the signal
     * unblocked for the next run. */
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sa.sa_sigaction = on_fault;
    if (sigaction(SIGSEGV, &sa, NULL) || sigaction(SIGILL, &sa, NULL) ||
        sigaction(SIGBUS, &sa, NULL))
        return -errno;
    sa.sa_sigaction = on_trap;
    if (sigaction(SIGTRAP, &sa, NULL))
        return -errno;
    sa.sa_sigaction = on_stuck;
    if (sigaction(SIGUSR2, &sa, NULL))
        return -errno;
    return 0;
}

/* ------------------------------------------------------------------ */
/* The region                                                           */

int ph_lit_setup(uint64_t size, int rwx, uint64_t *xbase)
{
    int fd = (int)syscall(SYS_memfd_create, "pyharness-litmus", 0);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)size) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    int prot = PROT_READ | PROT_EXEC | (rwx ? PROT_WRITE : 0);
    void *x = mmap(NULL, size, prot, MAP_SHARED, fd, 0);
    if (x == MAP_FAILED && rwx) {
        rwx = 0;               /* W^X enforced: the alias only */
        x = mmap(NULL, size, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0);
    }
    if (x == MAP_FAILED) {
        int e = -errno;
        close(fd);
        return e;
    }
    void *w = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (w == MAP_FAILED)
        return -errno;
    memset(w, INT3, size);
    L.x = x;
    L.w = w;
    L.size = size;
    L.rwx = rwx;
    *xbase = (uint64_t)x;
    return rwx ? 1 : 0;
}

/* ------------------------------------------------------------------ */
/* The writer's stores and syncs                                        */

static void store(const struct ph_lit_step *s, uint8_t *dst, const uint8_t *src)
{
    switch (s->store) {
    case PH_LST_MOV:
        /* One instruction of the width, whatever the alignment. */
        if (s->len == 1)
            __asm__ __volatile__("movb %1, %0" : "=m"(*dst) : "q"(*src) : "memory");
        else if (s->len == 2) {
            uint16_t v;
            memcpy(&v, src, 2);
            __asm__ __volatile__("movw %1, %0" : "=m"(*(uint16_t *)dst) : "r"(v) : "memory");
        } else if (s->len == 4) {
            uint32_t v;
            memcpy(&v, src, 4);
            __asm__ __volatile__("movl %1, %0" : "=m"(*(uint32_t *)dst) : "r"(v) : "memory");
        } else {
            uint64_t v;
            memcpy(&v, src, 8);
            __asm__ __volatile__("movq %1, %0" : "=m"(*(uint64_t *)dst) : "r"(v) : "memory");
        }
        break;
    case PH_LST_BYTES:
        for (int i = 0; i < s->len; i++) {
            int k = s->order[i];
            __asm__ __volatile__("movb %1, %0" : "=m"(dst[k]) : "q"(src[k]) : "memory");
        }
        break;
    case PH_LST_XCHG:
        if (s->len == 4) {
            uint32_t v;
            memcpy(&v, src, 4);
            __asm__ __volatile__("xchgl %0, %1" : "+r"(v), "+m"(*(uint32_t *)dst) : : "memory");
        } else {
            uint64_t v;
            memcpy(&v, src, 8);
            __asm__ __volatile__("xchgq %0, %1" : "+r"(v), "+m"(*(uint64_t *)dst) : : "memory");
        }
        break;
    case PH_LST_CMPXCHG:
        if (s->len == 4) {
            uint32_t v, old;
            memcpy(&v, src, 4);
            memcpy(&old, dst, 4);
            __atomic_compare_exchange_n((uint32_t *)dst, &old, v, 0, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST);
        } else {
            uint64_t v, old;
            memcpy(&v, src, 8);
            memcpy(&old, dst, 8);
            __atomic_compare_exchange_n((uint64_t *)dst, &old, v, 0, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST);
        }
        break;
    case PH_LST_VEC: {
        /* 16 bytes from the step's start: the step's bytes, the rest as
         * they are now (only this thread writes the site). */
        uint8_t buf[16];
        memcpy(buf, dst, 16);
        memcpy(buf, src, (size_t)s->len);
        __asm__ __volatile__("movdqu (%1), %%xmm0\n\tmovdqu %%xmm0, %0"
                             : "=m"(*(uint8_t(*)[16])dst) : "r"(buf) : "xmm0", "memory");
        break;
    }
    }
}

static void sync_after(const struct ph_lit_step *s)
{
    switch (s->sync) {
    case PH_LSY_SFENCE:
        __asm__ __volatile__("sfence" ::: "memory");
        break;
    case PH_LSY_MFENCE:
        __asm__ __volatile__("mfence" ::: "memory");
        break;
    case PH_LSY_MEMBARRIER:
        syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
        break;
    case PH_LSY_MEMBARRIER_SYNC_CORE:
        syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0);
        break;
    case PH_LSY_MPROTECT: {
        uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);
        uint8_t *p = (uint8_t *)(((uint64_t)L.w + L.t->site_off) & ~(pg - 1));
        mprotect(p, 2 * pg, PROT_READ);
        mprotect(p, 2 * pg, PROT_READ | PROT_WRITE);
        break;
    }
    default:
        break;
    }
}

/* One trial's steps toward variant `to`, on the text (base: its views)
 * or, for the floor, on a data word. */
static void write_steps(const struct ph_lit_test *t, int to, uint8_t *xsite, uint8_t *wsite)
{
    for (int i = 0; i < t->nsteps; i++) {
        const struct ph_lit_step *s = &t->steps[i];
        uint8_t *dst = (s->direct ? xsite : wsite) + s->off;
        const uint8_t *src = s->literal ? s->lit : t->variant[to] + s->off;
        uint8_t tmp[PH_LIT_MAX_LEN];
        if (s->store == PH_LST_BYTES) {
            /* order[] indexes the step's bytes: src and dst both from off */
            memcpy(tmp, src, (size_t)s->len);
            src = tmp;
        }
        store(s, dst, src);
        sync_after(s);
    }
}

/* ------------------------------------------------------------------ */
/* The executor's side                                                   */

static void serialize(int ser)
{
    switch (ser) {
    case PH_LSER_CPUID: {
        unsigned a = 0, b, c = 0, d;
        __asm__ __volatile__("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d) : : "memory");
        break;
    }
    case PH_LSER_MFENCE:
        __asm__ __volatile__("mfence" ::: "memory");
        break;
    case PH_LSER_LFENCE:
        __asm__ __volatile__("lfence" ::: "memory");
        break;
    default:
        break;
    }
}

typedef uint32_t (*site_fn)(void);

/* One run of the site: its outcome against the variants the trial in
 * which it began (s0) and ended (s1) imply.  Returns the outcome. */
static int one_run(const struct ph_lit_test *t, uint64_t s0, int *window)
{
    site_fn fn = (site_fn)(void *)(L.x + t->site_off + t->entry);
    uint32_t v = 0;
    int oc;
    if (my_idx >= 0)
        __atomic_store_n(&L.in_run_since[my_idx], now_ns(), __ATOMIC_RELAXED);
    if (sigsetjmp(run_jb, 0) == 0) {
        in_run = 1;
        v = fn();
        in_run = 0;
        oc = -1;
    } else {
        oc = run_outcome;
    }
    if (my_idx >= 0)
        __atomic_store_n(&L.in_run_since[my_idx], 0, __ATOMIC_RELAXED);
    /* Pairs with the writer's release stores of seq. */
    uint64_t s1 = __atomic_load_n(&L.seq, __ATOMIC_ACQUIRE);
    *window = (s0 & 1) || s1 != s0;
    if (oc >= 0)
        return oc;
    /* The trial it overlapped (or the last one before it): its old and
     * new variants.  Trial k writes variant (k + 1) & 1 over k & 1. */
    uint64_t k = (s0 & 1) ? s0 / 2 : (s1 != s0 ? s0 / 2 : (s0 ? s0 / 2 - 1 : 0));
    int newv = (int)((k + 1) & 1), oldv = !newv;
    if (!*window && s0 == 0)
        newv = 0, oldv = 1;        /* before any trial: the first variant is current */
    if (v == t->value[newv])
        return PH_LO_NEW;
    if (v == t->value[oldv]) {
        if (*window)
            return PH_LO_OLD;
        if (t->mode == PH_LMODE_FLAG || t->ser != PH_LSER_NONE)
            return PH_LO_STALE_BARRIER;
        return PH_LO_STALE;
    }
    first_seen(-1, 0, v, NULL);
    return PH_LO_TORN;
}

static void *executor(void *arg)
{
    int idx = (int)(intptr_t)arg;
    const struct ph_lit_test *t = L.t;
    my_idx = idx;
    pin(t->exec_cpu[idx]);
    stack_t ss = {.ss_sp = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
                  .ss_size = 65536, .ss_flags = 0};
    if (ss.ss_sp != MAP_FAILED)
        sigaltstack(&ss, NULL);
    __atomic_fetch_add(&L.ready, 1, __ATOMIC_RELEASE);   /* pairs: the writer's wait */
    uint64_t last = 0;
    /* Pairs with the writer's release store of stop. */
    while (!__atomic_load_n(&L.stop, __ATOMIC_ACQUIRE)) {
        uint64_t s0 = __atomic_load_n(&L.seq, __ATOMIC_ACQUIRE);   /* pairs: the writer */
        if (t->mode == PH_LMODE_FLAG) {
            /* The SDM's method: wait for the done flag (an even seq past
             * the last one acked), serialize, run, ack. */
            if ((s0 & 1) || s0 == last) {
                __builtin_ia32_pause();
                continue;
            }
            serialize(t->ser);
            int w, oc = one_run(t, s0, &w);
            count(1, oc);        /* what the verdict rests on: a run right after a write */
            (void)w;
            last = s0;
            __atomic_store_n(&L.ack[idx], s0, __ATOMIC_RELEASE);   /* pairs: the writer's wait */
            continue;
        }
        if (t->mode == PH_LMODE_SYSCALL)
            syscall(SYS_getppid);      /* back to the site by SYSRET */
        serialize(t->ser);
        int w, oc = one_run(t, s0, &w);
        count(w, oc);
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* The floor: the same stores on a data word, loads on the executor      */

static void *floor_reader(void *arg)
{
    const struct ph_lit_test *t = L.t;
    pin(t->exec_cpu[0]);
    (void)arg;
    __atomic_fetch_add(&L.ready, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&L.stop, __ATOMIC_ACQUIRE)) {
        uint8_t got[PH_LIT_MAX_LEN];
        /* As an executor reads seq around its run (pairs: run_floor()). */
        uint64_t s0 = __atomic_load_n(&L.fseq, __ATOMIC_ACQUIRE);
        for (int i = 0; i < t->site_len; i++)
            got[i] = __atomic_load_n(&L.data[0][i], __ATOMIC_RELAXED);
        uint64_t s1 = __atomic_load_n(&L.fseq, __ATOMIC_ACQUIRE);
        if (t->mode == PH_LMODE_FLAG) {
            /* The flag's handshake, on data: a settled state, acked. */
            if ((s0 & 1) || s0 != s1 || s0 == L.ack[0]) {
                __builtin_ia32_pause();
                continue;
            }
            __atomic_store_n(&L.ack[0], s0, __ATOMIC_RELEASE);   /* pairs: run_floor() */
            continue;
        }
        if (memcmp(got, t->variant[0], (size_t)t->site_len) &&
            memcmp(got, t->variant[1], (size_t)t->site_len)) {
            int mixed = 0;       /* a step's literal bytes are an interim state, not a tear */
            for (int s = 0; s < t->nsteps && !mixed; s++)
                mixed = t->steps[s].literal;
            if (!mixed)
                __atomic_fetch_add(&L.r->floor_torn, 1, __ATOMIC_RELAXED);
        }
    }
    return NULL;
}

static void run_floor(const struct ph_lit_test *t)
{
    pthread_t th;
    memcpy(L.data[0], t->variant[0], PH_LIT_MAX_LEN);
    __atomic_store_n(&L.fseq, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&L.ack[0], 0, __ATOMIC_RELEASE);
    __atomic_store_n(&L.stop, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&L.ready, 0, __ATOMIC_RELEASE);
    int same = t->mode == PH_LMODE_SAME;
    if (!same && pthread_create(&th, NULL, floor_reader, NULL))
        return;
    while (!same && __atomic_load_n(&L.ready, __ATOMIC_ACQUIRE) < 1)
        __builtin_ia32_pause();
    uint64_t t0 = now_ns(), end = t0 + t->floor_ns, n = 0;
    while (now_ns() < end) {
        for (int j = 0; j < 16; j++, n++) {
            /* The text's trial, on data: seq odd, the steps, seq even
             * (release; pairs with floor_reader()'s acquire loads). */
            __atomic_store_n(&L.fseq, 2 * n + 1, __ATOMIC_RELEASE);
            write_steps(t, (int)((n + 1) & 1), L.data[0], L.data[0]);
            __atomic_store_n(&L.fseq, 2 * n + 2, __ATOMIC_RELEASE);
            if (same) {
                /* the writer reads what it wrote, as it runs the site */
                uint8_t got[PH_LIT_MAX_LEN];
                memcpy(got, (const void *)L.data[0], PH_LIT_MAX_LEN);
                __asm__ __volatile__("" : : "r"(got) : "memory");
            } else if (t->mode == PH_LMODE_FLAG) {
                /* the reader's ack before the next (pairs: floor_reader()) */
                uint64_t deadline = now_ns() + t->stuck_ns;
                while (__atomic_load_n(&L.ack[0], __ATOMIC_ACQUIRE) < 2 * n + 2 && now_ns() < deadline)
                    __builtin_ia32_pause();
            }
        }
    }
    L.r->floor_elapsed_ns = now_ns() - t0;
    L.r->floor_trials = n;
    __atomic_store_n(&L.stop, 1, __ATOMIC_RELEASE);
    if (!same)
        pthread_join(th, NULL);
}

/* ------------------------------------------------------------------ */
/* The writer                                                           */

int ph_lit_run(const struct ph_lit_test *t, struct ph_lit_result *r)
{
    if (!L.x || !t || !r || t->site_len < 1 || t->site_len > PH_LIT_MAX_LEN ||
        t->nsteps < 1 || t->nsteps > PH_LIT_MAX_STEPS || t->nexec < 0 || t->nexec > PH_LIT_MAX_EXEC ||
        t->site_off + PH_LIT_MAX_LEN > L.size || (t->mode != PH_LMODE_SAME && t->nexec < 1) ||
        t->entry < 0 || t->entry >= t->site_len)
        return -EINVAL;
    for (int i = 0; i < t->nsteps; i++) {
        const struct ph_lit_step *s = &t->steps[i];
        if (s->off < 0 || s->len < 1 || s->off + s->len > PH_LIT_MAX_LEN ||
            (s->store == PH_LST_MOV && s->len != 1 && s->len != 2 && s->len != 4 && s->len != 8) ||
            ((s->store == PH_LST_XCHG || s->store == PH_LST_CMPXCHG) && s->len != 4 && s->len != 8) ||
            (s->direct && !L.rwx) || s->store < 0 || s->store >= PH_LIT_NSTORES ||
            s->sync < 0 || s->sync >= PH_LIT_NSYNCS)
            return -EINVAL;
    }
    memset(r, 0, sizeof(*r));
    r->magic = PH_LIT_MAGIC;
    L.t = t;
    L.r = r;
    int rc = handlers();
    if (rc < 0)
        return r->error = rc;
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) < 0 ||
        syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0) < 0) {
        for (int i = 0; i < t->nsteps; i++)
            if (t->steps[i].sync == PH_LSY_MEMBARRIER || t->steps[i].sync == PH_LSY_MEMBARRIER_SYNC_CORE)
                return r->error = -ENOSYS;
    }
    pin(t->writer_cpu);
    /* The floor first, on data, with the same steps. */
    if (t->floor_ns)
        run_floor(t);
    /* The site's first variant and its targets, through the alias. */
    uint8_t *xsite = L.x + t->site_off, *wsite = L.w + t->site_off;
    for (int v = 0; v < 2; v++)
        if (t->stub_off[v])
            memcpy(L.w + t->stub_off[v], t->stub[v], PH_LIT_MAX_LEN);
    memcpy(wsite, t->variant[0], (size_t)t->site_len);
    __asm__ __volatile__("mfence" ::: "memory");
    syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0);
    __atomic_store_n(&L.seq, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&L.stop, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&L.ready, 0, __ATOMIC_RELEASE);
    memset(L.ack, 0, sizeof(L.ack));
    memset(L.in_run_since, 0, sizeof(L.in_run_since));
    int nexec = t->mode == PH_LMODE_SAME ? 0 : t->nexec, made = 0;
    for (; made < nexec; made++)
        if (pthread_create(&L.tids[made], NULL, executor, (void *)(intptr_t)made))
            break;
    if (made < nexec) {
        __atomic_store_n(&L.stop, 1, __ATOMIC_RELEASE);
        for (int i = 0; i < made; i++)
            pthread_join(L.tids[i], NULL);
        return r->error = -EAGAIN;
    }
    /* Pairs with each executor's release increment of ready. */
    while (__atomic_load_n(&L.ready, __ATOMIC_ACQUIRE) < (uint64_t)nexec)
        __builtin_ia32_pause();
    uint64_t t0 = now_ns(), end = t0 + t->duration_ns, k = 0;
    my_idx = -1;      /* the writer's own runs (same-thread) have no watchdog slot */
    while (now_ns() < end) {
        for (int j = 0; j < 16; j++, k++) {
            /* release: the executors that see it odd know a write is under
             * way (pairs with their acquire loads of seq). */
            __atomic_store_n(&L.seq, 2 * k + 1, __ATOMIC_RELEASE);
            write_steps(t, (int)((k + 1) & 1), xsite, wsite);
            /* release: the steps' stores and syncs are behind it. */
            __atomic_store_n(&L.seq, 2 * k + 2, __ATOMIC_RELEASE);
            if (t->mode == PH_LMODE_SAME) {
                int w, oc = one_run(t, 2 * k + 1, &w);
                count(w, oc);
            } else if (t->mode == PH_LMODE_FLAG) {
                /* Every executor acks this trial before the next begins
                 * (pairs with their release stores of ack). */
                uint64_t deadline = now_ns() + t->stuck_ns;
                for (int i = 0; i < nexec; i++)
                    while (__atomic_load_n(&L.ack[i], __ATOMIC_ACQUIRE) < 2 * k + 2) {
                        if (now_ns() > deadline) {
                            if (__atomic_load_n(&L.in_run_since[i], __ATOMIC_RELAXED)) {
                                pthread_kill(L.tids[i], SIGUSR2);
                                r->stuck_sent++;
                            }
                            deadline = now_ns() + t->stuck_ns;
                        }
                        __builtin_ia32_pause();
                    }
            }
        }
        /* The watchdog: a run that has lasted past the bound is stuck. */
        uint64_t now = now_ns();
        for (int i = 0; i < nexec; i++) {
            uint64_t since = __atomic_load_n(&L.in_run_since[i], __ATOMIC_RELAXED);
            if (since && now > since && now - since > t->stuck_ns) {
                pthread_kill(L.tids[i], SIGUSR2);
                r->stuck_sent++;
            }
        }
    }
    r->elapsed_ns = now_ns() - t0;
    r->trials = k;
    __atomic_store_n(&L.stop, 1, __ATOMIC_RELEASE);   /* pairs: the executors' loops */
    for (int i = 0; i < nexec; i++)
        pthread_join(L.tids[i], NULL);
    r->done = 1;
    return 0;
}
