/*
 * bench.c -- the primitives the protocol is built from, timed in C loops so
 * that no Python runs between iterations.  The floor of a patched site is
 * computed from these (pyharness/bench.py).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <linux/membarrier.h>
#include <unistd.h>
#include "ph_internal.h"

int ph_bench_sync(int sync, uint64_t iters, uint64_t *ns)
{
    if (!ph_sync_method_available(sync))
        return -EOPNOTSUPP;
    uint64_t t0 = ph_now_ns();
    for (uint64_t i = 0; i < iters; i++)
        ph_sync_one(sync);
    *ns = ph_now_ns() - t0;
    return 0;
}

int ph_bench_membarrier(uint64_t iters, uint64_t *ns)
{
    if (syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0) < 0)
        return -errno;
    uint64_t t0 = ph_now_ns();
    for (uint64_t i = 0; i < iters; i++)
        if (syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0) < 0)
            return -errno;
    *ns = ph_now_ns() - t0;
    return 0;
}

/* One RX -> RWX -> RX pair on one touched page inside a larger text
 * mapping, as the mprotect poke method does: the VMA splits and merges. */
int ph_bench_mprotect(uint64_t iters, uint64_t *ns)
{
    size_t ps = (size_t)sysconf(_SC_PAGESIZE), len = 64 * ps;
    uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    memset(p, 0xc3, len);                          /* populated, like laid-out text */
    int rc = 0;
    if (mprotect(p, len, PROT_READ | PROT_EXEC) < 0)
        rc = -errno;
    uint8_t *page = p + 32 * ps;
    uint64_t t0 = ph_now_ns();
    for (uint64_t i = 0; i < iters && !rc; i++)
        if (mprotect(page, ps, PROT_READ | PROT_WRITE | PROT_EXEC) < 0 ||
            mprotect(page, ps, PROT_READ | PROT_EXEC) < 0)
            rc = -errno;
    *ns = ph_now_ns() - t0;
    munmap(p, len);
    return rc;
}

/* A 5-byte write through the RW view of a memfd whose RX view is mapped. */
int ph_bench_alias_write(uint64_t iters, uint64_t *ns)
{
    long ps = sysconf(_SC_PAGESIZE);
    int fd = memfd_create("pyharness-bench", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = 0;
    void *w = MAP_FAILED, *x = MAP_FAILED;
    if (ftruncate(fd, ps) < 0) { rc = -errno; goto out; }
    w = mmap(NULL, (size_t)ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    x = mmap(NULL, (size_t)ps, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0);
    if (w == MAP_FAILED || x == MAP_FAILED) { rc = -errno; goto out; }
    volatile uint8_t *dst = (volatile uint8_t *)w + 64;
    uint64_t t0 = ph_now_ns();
    for (uint64_t i = 0; i < iters; i++)
        for (int k = 0; k < 5; k++)
            dst[k] = (uint8_t)(i + (uint64_t)k);
    *ns = ph_now_ns() - t0;
out:
    if (w != MAP_FAILED) munmap(w, (size_t)ps);
    if (x != MAP_FAILED) munmap(x, (size_t)ps);
    close(fd);
    return rc;
}

/* One INT3 round trip through the real handler (the caller is the engine's
 * registered primary; use an rwx engine so no mprotect is timed). */
int ph_bench_trap(struct ph_engine *e, uint64_t iters, uint64_t *ns)
{
    uint32_t v;
    uint64_t t0 = ph_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        int rc = ph_test_trap_site(e, (int)(i % (uint64_t)e->cfg.nsites), &v);
        if (rc < 0)
            return rc;
    }
    *ns = ph_now_ns() - t0;
    return 0;
}

/* A cache line bounced between two pinned threads: the state hand-off. */
static struct { uint64_t v; uint64_t pad[7]; } __attribute__((aligned(64))) pingpong_line;

void ph_bench_pingpong_reset(void)
{
    ph_store_release(&pingpong_line.v, 0);   /* pairs with the acquire loads below */
}

/* role 0 writes odd values and waits for the next even one; role 1 answers.
 * Each store is a release that pairs with the other side's acquire load. */
int ph_bench_pingpong(int role, uint64_t iters, uint64_t *ns)
{
    uint64_t deadline = ph_now_ns() + 30ULL * 1000000000ULL, spins = 0;
    uint64_t t0 = ph_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        uint64_t want = 2 * i + (uint64_t)role;          /* value we wait for */
        while (ph_load_acquire(&pingpong_line.v) != want) {
            ph_cpu_relax();
            if ((++spins & 0xffff) == 0 && ph_now_ns() > deadline)
                return -ETIMEDOUT;
        }
        ph_store_release(&pingpong_line.v, want + 1);
    }
    *ns = ph_now_ns() - t0;
    return 0;
}

/* A thread of this process busy on another CPU, so that mprotect pays the
 * TLB shootdown it pays in the protocol (the secondaries run the same mm). */
static uint64_t spin_stop_flag;

void ph_bench_spin(void)
{
    uint64_t deadline = ph_now_ns() + 60ULL * 1000000000ULL;
    /* Pairs with the release store in ph_bench_spin_stop(). */
    while (!ph_load_acquire(&spin_stop_flag) && ph_now_ns() < deadline)
        ph_cpu_relax();
    ph_store_relaxed(&spin_stop_flag, 0);
}

void ph_bench_spin_stop(void)
{
    ph_store_release(&spin_stop_flag, 1);   /* pairs with ph_bench_spin() */
}
