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

int ph_sync_method_available(int sync)
{
    switch (sync) {
    case PH_SYNC_CPUID: case PH_SYNC_IRET: return 1;
    case PH_SYNC_SERIALIZE: return ph_cpu_has_serialize();
    default: return 0;
    }
}

static inline void sync_cpuid(void)
{
    unsigned a = 0, b, c = 0, d;
    __asm__ __volatile__("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d) : : "memory");
}

/*
 * IRET to the next instruction, from user mode to user mode.  The frame is
 * built below the red zone (sub 128 first): the C core is also built with
 * -mno-red-zone, but this must stay correct if someone inlines it elsewhere.
 */
static inline void sync_iret(void)
{
    unsigned long tmp;
    __asm__ __volatile__(
        "sub $128, %%rsp\n\t"
        "mov %%ss, %k0\n\t"
        "push %0\n\t"               /* SS */
        "lea 8(%%rsp), %0\n\t"
        "push %0\n\t"               /* RSP after the IRET */
        "pushfq\n\t"                /* RFLAGS */
        "mov %%cs, %k0\n\t"
        "push %0\n\t"               /* CS */
        "lea 1f(%%rip), %0\n\t"
        "push %0\n\t"               /* RIP */
        "iretq\n"
        "1:\n\t"
        "add $128, %%rsp"
        : "=&r"(tmp) : : "memory", "cc");
}

static inline void sync_serialize(void)
{
    __asm__ __volatile__(".byte 0x0f, 0x01, 0xe8" : : : "memory");  /* SERIALIZE */
}

/* Callers must have checked ph_sync_method_available(). */
void ph_sync_one(int sync)
{
    switch (sync) {
    case PH_SYNC_IRET: sync_iret(); break;
    case PH_SYNC_SERIALIZE: sync_serialize(); break;
    default: sync_cpuid(); break;
    }
}

void ph_sync_core(struct ph_engine *e)
{
    ph_sync_one(e->cfg.sync);
    if (ph_self.c)
        ph_count(&ph_self.c->sync_calls, 1);
}

int ph_set_mdwe(void)
{
    if (prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) < 0)
        return -errno;
    return 0;
}
