/*
 * bench.c -- the primitives the protocol is built from, timed in C loops so
 * that no Python runs between iterations.  The floor of a patched site is
 * computed from these (pyharness/bench.py).
 *
 * Every function returns 0 or -errno and stores the total nanoseconds of
 * `iters` operations in *ns; none prints.  Cross-thread loops give up with
 * -ETIMEDOUT after BENCH_DEADLINE_NS, so a lost partner cannot hang a run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <linux/membarrier.h>
#include <unistd.h>
#include "ph_internal.h"

#define BENCH_DEADLINE_NS (30ULL * 1000000000ULL)

/* PAUSEs before a wait yields: as the engine's cfg.spin_pauses (0: default),
 * so a hand-off on a shared CPU is timed as the protocol pays it.  Set
 * before the threads start (thread creation orders it; relaxed is enough). */
static uint32_t bench_pauses = PH_SPIN_PAUSES_DEFAULT;

void ph_bench_set_spin_pauses(uint32_t pauses)
{
    ph_store_relaxed(&bench_pauses, pauses ? pauses : PH_SPIN_PAUSES_DEFAULT);
}

/*
 * One step of a bounded cross-thread wait: pause, and after bench_pauses
 * pauses yield, so that threads sharing a CPU still make progress.
 * Returns -ETIMEDOUT once the deadline has passed.
 */
static int bench_spin(uint64_t *spins, uint64_t deadline)
{
    uint64_t n = ++*spins;
    if ((n & 0xffff) == 0 && ph_now_ns() > deadline)
        return -ETIMEDOUT;
    if (n <= ph_load_relaxed(&bench_pauses))
        ph_cpu_relax();
    else
        sched_yield();
    return 0;
}

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

/*
 * The poke of one site as the engine does it, without the rounds between
 * its steps: make the site's text writable (mprotect: one RX -> RWX -> RX
 * pair around the writes; alias and rwx: nothing), write INT3 over byte 0,
 * the tail, the new byte 0.  Sites are taken in turn and end in a valid
 * variant; nothing may run the engine's text meanwhile (no participant
 * threads: the caller alone).
 */
int ph_bench_poke(struct ph_engine *e, uint64_t iters, uint64_t *ns)
{
    static const uint8_t int3 = PH_INT3;
    uint64_t t0 = ph_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        struct ph_site *s = &e->sites[i % (uint64_t)e->cfg.nsites];
        int v = !s->variant;
        int rc = ph_text_open(e, s->addr, s->addr + (uint64_t)s->len);
        if (rc < 0)
            return rc;
        ph_text_poke(e, s->addr, &int3, 1);
        ph_text_poke(e, s->addr + 1, s->text[v] + 1, (size_t)s->len - 1);
        ph_text_poke(e, s->addr, s->text[v], 1);
        if ((rc = ph_text_close(e, s->addr, s->addr + (uint64_t)s->len)) < 0)
            return rc;
        s->variant = v;
    }
    *ns = ph_now_ns() - t0;
    return 0;
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

/* A cache line bounced between two pinned threads. */
static struct { uint64_t v; uint64_t pad[7]; } __attribute__((aligned(64))) pingpong_line;

void ph_bench_pingpong_reset(void)
{
    ph_store_release(&pingpong_line.v, 0);   /* pairs with the acquire loads below */
}

/* role 0 writes odd values and waits for the next even one; role 1 answers.
 * Each store is a release that pairs with the other side's acquire load. */
int ph_bench_pingpong(int role, uint64_t iters, uint64_t *ns)
{
    if (role != 0 && role != 1)
        return -EINVAL;
    uint64_t deadline = ph_now_ns() + BENCH_DEADLINE_NS, spins = 0;
    uint64_t t0 = ph_now_ns();
    for (uint64_t i = 0; i < iters; i++) {
        uint64_t want = 2 * i + (uint64_t)role;          /* value we wait for */
        while (ph_load_acquire(&pingpong_line.v) != want)
            if (bench_spin(&spins, deadline) < 0)
                return -ETIMEDOUT;
        spins = 0;
        ph_store_release(&pingpong_line.v, want + 1);
    }
    *ns = ph_now_ns() - t0;
    return 0;
}

/*
 * The state hand-off of one round, shaped as the protocol's: the leader
 * publishes a value on a line of its own; each follower, spinning on that
 * line, optionally runs sync_one() and acks on a line of its own; the
 * leader waits until every follower acked.  One iteration is one round:
 * with sync < 0, a cross-thread round trip to the slowest of nfollowers.
 * Timed in `chunks` chunks of `iters` rounds (ns[k]: chunk k's total), so
 * the caller can take a median that one host interruption cannot move.
 * Every participant calls it with the same arguments.
 */
enum { BENCH_MAX_FOLLOWERS = 256 };
struct bench_line { uint64_t v; uint64_t pad[7]; } __attribute__((aligned(64)));
static struct bench_line handoff_state, handoff_ack[BENCH_MAX_FOLLOWERS];

void ph_bench_handoff_reset(void)
{
    /* Pairs with the acquire loads in ph_bench_handoff(). */
    ph_store_release(&handoff_state.v, 0);
    for (int k = 0; k < BENCH_MAX_FOLLOWERS; k++)
        ph_store_release(&handoff_ack[k].v, 0);
}

int ph_bench_handoff(int role, int nfollowers, int sync, uint64_t iters, int chunks, uint64_t *ns)
{
    if (nfollowers < 1 || nfollowers > BENCH_MAX_FOLLOWERS || role < 0 || role > nfollowers ||
        chunks < 1)
        return -EINVAL;
    if (sync >= 0 && !ph_sync_method_available(sync))
        return -EOPNOTSUPP;
    uint64_t deadline = ph_now_ns() + BENCH_DEADLINE_NS, spins = 0, seq = 0;
    for (int chunk = 0; chunk < chunks; chunk++) {
        uint64_t t0 = ph_now_ns();
        for (uint64_t i = 0; i < iters; i++) {
            seq++;                  /* never repeats: no stale value matches */
            if (role == 0) {
                /* release: pairs with the followers' acquire load of the state. */
                ph_store_release(&handoff_state.v, seq);
                for (int k = 0; k < nfollowers; k++) {
                    /* Pairs with the follower's release store of its ack. */
                    while (ph_load_acquire(&handoff_ack[k].v) != seq)
                        if (bench_spin(&spins, deadline) < 0)
                            return -ETIMEDOUT;
                    spins = 0;
                }
            } else {
                /* Pairs with the leader's release store of the state. */
                while (ph_load_acquire(&handoff_state.v) != seq)
                    if (bench_spin(&spins, deadline) < 0)
                        return -ETIMEDOUT;
                spins = 0;
                if (sync >= 0)
                    ph_sync_one(sync);
                /* release: pairs with the leader's acquire load of this ack. */
                ph_store_release(&handoff_ack[role - 1].v, seq);
            }
        }
        ns[chunk] = ph_now_ns() - t0;
    }
    return 0;
}

/* A thread of this process busy on another CPU, so that mprotect and
 * membarrier pay the IPI they pay in the protocol (the secondaries run in
 * the same mm).  ph_bench_spin(token) spins until ph_bench_spin_stop(token)
 * (a stop that comes first is not lost), or for 60 s at most. */
static uint64_t spin_stop_token;

void ph_bench_spin(uint64_t token)
{
    uint64_t deadline = ph_now_ns() + 60ULL * 1000000000ULL, n = 0;
    /* Pairs with the release store in ph_bench_spin_stop(). */
    while (ph_load_acquire(&spin_stop_token) != token)
        if ((++n & 1023) == 0 && ph_now_ns() > deadline)
            break;
        else
            ph_cpu_relax();
}

void ph_bench_spin_stop(uint64_t token)
{
    ph_store_release(&spin_stop_token, token);   /* pairs with ph_bench_spin() */
}
