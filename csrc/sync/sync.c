/*
 * sync.c -- sync_one(): serialize the executing CPU.
 *
 * CPUID (the RFC's choice), IRET-to-self (upstream's sync_core() on x86-64
 * before SERIALIZE) and SERIALIZE (only where CPUID.(7,0):EDX[14] says so;
 * executing it elsewhere raises #UD, i.e. SIGILL).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <cpuid.h>
#include <linux/membarrier.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "ph_internal.h"

#ifndef PR_SET_MDWE
#define PR_SET_MDWE 65
#endif
#ifndef PR_MDWE_REFUSE_EXEC_GAIN
#define PR_MDWE_REFUSE_EXEC_GAIN 1
#endif

int ph_cpu_has_serialize(void)
{
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (d >> 14) & 1;
}

static long membarrier(int cmd, unsigned flags)
{
    return syscall(__NR_membarrier, cmd, flags, 0);
}

int ph_membarrier_sync_core_supported(void)
{
    long mask = membarrier(MEMBARRIER_CMD_QUERY, 0);
    if (mask < 0)
        return 0;
    return (mask & MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE) != 0;
}


/*
 * Each instruction wrapper returns a token that only the instruction can
 * produce, so the evidence that a thread serialized is the instruction's
 * own output, not a flag set next to the call:
 *   CPUID leaf 0 returns the vendor string (EBX: "Genu", "Auth", ...);
 *   IRET loads RSP (and RIP, RFLAGS) from its frame: the frame's RSP is 64
 *   bytes below the natural one, and only an IRET that ran leaves exactly
 *   that value (the saved stack pointer is restored after, so a build that
 *   replaced the IRET fails the token, not the stack);
 *   SERIALIZE has no output: its token only says the wrapper ran (the
 *   engine's start-up cost check is its only evidence; see check.c).
 * They are noinline so that the start-up cost check times the same code.
 */
__attribute__((noinline)) static uint64_t sync_cpuid(void)
{
    unsigned a = 0, b, c = 0, d;
    __asm__ __volatile__("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d) : : "memory");
    return b;
}

#define RFLAGS_ID (1L << 21)

/*
 * IRET to the next instruction, from user mode to user mode.  The frame is
 * built below the red zone (sub 128 first): the C core is also built with
 * -mno-red-zone, but this must stay correct if someone inlines it elsewhere.
 */
__attribute__((noinline)) static uint64_t sync_iret(void)
{
    unsigned long tmp, orig, after;
    __asm__ __volatile__(
        "mov %%rsp, %1\n\t"         /* the stack pointer to come back to */
        "sub $128, %%rsp\n\t"       /* below the red zone */
        "mov %%ss, %k0\n\t"
        "push %0\n\t"               /* SS */
        "lea -56(%%rsp), %0\n\t"
        "push %0\n\t"               /* RSP after the IRET: 64 below where it would be */
        "pushfq\n\t"                /* RFLAGS */
        "mov %%cs, %k0\n\t"
        "push %0\n\t"               /* CS */
        "lea 1f(%%rip), %0\n\t"
        "push %0\n\t"               /* RIP */
        "iretq\n"
        "1:\n\t"
        "mov %%rsp, %2\n\t"         /* only IRET loads that exact value */
        "mov %1, %%rsp"
        : "=&r"(tmp), "=&r"(orig), "=&r"(after) : : "memory", "cc");
    return after == orig - 128 - 64 ? 1 : 0;
}

__attribute__((noinline)) static uint64_t sync_serialize(void)
{
    __asm__ __volatile__(".byte 0x0f, 0x01, 0xe8" : : : "memory");  /* SERIALIZE */
    return 1;
}

/* The token each method must return, found without the wrappers above
 * (CPUID's vendor through the compiler's own cpuid.h). */
static uint64_t expect_vendor(void)
{
    unsigned a, b = 0, c, d;
    __get_cpuid(0, &a, &b, &c, &d);
    return b;
}

static uint64_t expect_one(void) { return 1; }
static int always(void) { return 1; }

/* A sync method: one entry (sync.def names it). */
struct sync_ops {
    uint64_t (*token)(void);       /* the instruction, returning its token */
    uint64_t (*expect)(void);      /* the token it must return */
    int (*available)(void);        /* this CPU has it */
};

static const struct sync_ops sync_m_cpuid = {sync_cpuid, expect_vendor, always};
static const struct sync_ops sync_m_iret = {sync_iret, expect_one, always};
static const struct sync_ops sync_m_serialize = {sync_serialize, expect_one, ph_cpu_has_serialize};

static const struct sync_ops *const methods[PH_NSYNCS] = {
#define PH_SYNC_METHOD(e, name, ops, desc) [PH_SYNC_##e] = &ops,
#include "sync.def"
#undef PH_SYNC_METHOD
};

int ph_sync_method_available(int sync)
{
    return sync >= 0 && sync < PH_NSYNCS && methods[sync]->available();
}

/* Callers must have checked ph_sync_method_available().  CPUID's and
 * IRET's wrappers are called directly: a sync is on every ack, and an
 * indirect call in front of IRET-to-self was a measurable part of a
 * round (the others go through the table). */
uint64_t ph_sync_token(int sync)
{
    if (sync == PH_SYNC_CPUID)
        return sync_cpuid();
    if (sync == PH_SYNC_IRET)
        return sync_iret();
    return methods[sync >= 0 && sync < PH_NSYNCS ? sync : PH_SYNC_CPUID]->token();
}

uint64_t ph_sync_token_expect(int sync)
{
    return methods[sync >= 0 && sync < PH_NSYNCS ? sync : PH_SYNC_CPUID]->expect();
}

void ph_sync_one(int sync)
{
    (void)ph_sync_token(sync);
}

/* sync_one() for a participant: the SYNC event carries the round it had
 * seen just before the instruction and the token the instruction returned;
 * the observer keeps the round only when the token proves the instruction
 * ran, and holds every ack to it (observe/check.c). */
void ph_sync_core(struct ph_engine *e)
{
    ph_sync_core_method(e, e->cfg.sync);
}

/* The same with a method chosen by the caller (the posted RFC: CPUID in
 * NMI context, the configured method otherwise). */
void ph_sync_core_method(struct ph_engine *e, int sync)
{
    struct ph_ev x;
    /* Pairs with the release store of the round in publish(): what we saw
     * before the instruction is what the instruction serializes after. */
    x.r = ph_load_acquire(&e->sh->round);
    x.c = ph_self.c;
    /* the context as the signal entries counted it (not the protocol's flags) */
    x.ctx = x.c ? (x.c->in_nmi ? PH_CTX_NMI : 0) | (x.c->in_bp ? PH_CTX_BP : 0) : PH_CTX_THREAD;
    x.arg = sync;
    if (x.c)
        ph_emit(e, PH_E_SYNC_BEGIN, &x);
    x.token = ph_sync_token(sync);
    if (x.c) {
        /* The instruction is behind this thread, whatever hears of it
         * first (the aims' windows close here, not at a subscriber). */
        ph_store_relaxed(&x.c->sync_tried, x.r);
        ph_emit(e, PH_E_SYNC, &x);
    }
}

/* membarrier(PRIVATE_EXPEDITED_SYNC_CORE) for the primary, upstream style,
 * through the observer's one syscall wrapper, which records the command
 * this issues, what the kernel returned and the round seen before it. */
long ph_membarrier_core(struct ph_engine *e)
{
    return ph_sys_membarrier(e, MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE);
}

/* The process's registration for it (engine start). */
int ph_membarrier_register(struct ph_engine *e)
{
    return ph_sys_membarrier(e, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE) < 0 ? -errno : 0;
}

int ph_set_mdwe(void)
{
    if (prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) < 0)
        return -errno;
    return 0;
}
