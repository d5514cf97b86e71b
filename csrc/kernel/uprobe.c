/*
 * uprobe.c -- the uprobe target's sites and their observer: the kernel
 * patches *our* text (a uprobe's INT3, then, since 6.18, a call to its
 * trampoline), and every execution must behave as the unprobed code
 * would: every general-purpose register, the arithmetic flags, the stack
 * pointer and the 128-byte red zone below it, as a call-free leaf may
 * rely on (System V ABI).
 *
 * A site is file-backed code (uprobes attach to an inode and offset): the
 * probed instruction, then `jmp *slot(%rip)` back into the harness through
 * a slot in the page after it.  The harness (one per site, below) enters a
 * site by a jump, never a call, so nothing is pushed: it loads a pattern
 * into every register but %rsp, the flags and the red zone, jumps, and
 * on its way back stores what it finds before anything can disturb it.
 *
 * A sampler thread reads the sites' bytes over and over and records each
 * state it sees and how long it lasted: the kernel's write sequence as our
 * observer sees it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "ph_api.h"

/* What the harness loads and what it finds (the asm's offsets, asserted). */
struct up_area {
    uint64_t in[16];        /*   0: rax rbx rcx rdx rsi rdi rbp r8 .. r15 (15: unused) */
    uint64_t out[16];       /* 128: the same, after the site */
    uint64_t flags_in;      /* 256 */
    uint64_t flags_out;     /* 264 */
    uint64_t rsp_in;        /* 272 */
    uint64_t rsp_out;       /* 280 */
    uint8_t rz_in[128];     /* 288: [rsp-128, rsp) before */
    uint8_t rz_out[128];    /* 416: ... and after */
};
_Static_assert(__builtin_offsetof(struct up_area, out) == 128, "asm offsets");
_Static_assert(__builtin_offsetof(struct up_area, flags_in) == 256, "asm offsets");
_Static_assert(__builtin_offsetof(struct up_area, rsp_in) == 272, "asm offsets");
_Static_assert(__builtin_offsetof(struct up_area, rz_in) == 288, "asm offsets");
_Static_assert(__builtin_offsetof(struct up_area, rz_out) == 416, "asm offsets");

/* The sites' entries (the harness jumps through these). */
uint64_t ph_up_site[PH_UP_NSITES] __attribute__((visibility("hidden")));

#define RZ_COPY(from, to)                                                      \
    "mov 0(" from "), %rdx\n\tmov %rdx, 0(" to ")\n\t"                         \
    "mov 8(" from "), %rdx\n\tmov %rdx, 8(" to ")\n\t"                         \
    "mov 16(" from "), %rdx\n\tmov %rdx, 16(" to ")\n\t"                       \
    "mov 24(" from "), %rdx\n\tmov %rdx, 24(" to ")\n\t"                       \
    "mov 32(" from "), %rdx\n\tmov %rdx, 32(" to ")\n\t"                       \
    "mov 40(" from "), %rdx\n\tmov %rdx, 40(" to ")\n\t"                       \
    "mov 48(" from "), %rdx\n\tmov %rdx, 48(" to ")\n\t"                       \
    "mov 56(" from "), %rdx\n\tmov %rdx, 56(" to ")\n\t"                       \
    "mov 64(" from "), %rdx\n\tmov %rdx, 64(" to ")\n\t"                       \
    "mov 72(" from "), %rdx\n\tmov %rdx, 72(" to ")\n\t"                       \
    "mov 80(" from "), %rdx\n\tmov %rdx, 80(" to ")\n\t"                       \
    "mov 88(" from "), %rdx\n\tmov %rdx, 88(" to ")\n\t"                       \
    "mov 96(" from "), %rdx\n\tmov %rdx, 96(" to ")\n\t"                       \
    "mov 104(" from "), %rdx\n\tmov %rdx, 104(" to ")\n\t"                     \
    "mov 112(" from "), %rdx\n\tmov %rdx, 112(" to ")\n\t"                     \
    "mov 120(" from "), %rdx\n\tmov %rdx, 120(" to ")\n\t"

/* up_harnessN(area = %rdi): enter site N by a jump with every register but
 * %rsp, the flags and the red zone loaded from the area; on the way back
 * (ph_up_backN, through the site's slot) store them before anything can
 * disturb them.  Only moves and lea between the flags' load and store, so
 * nothing of ours changes a flag; memory below the red zone is written
 * only with %rsp below it, so a signal frame cannot land on it. */
#define UP_HARNESS(N)                                                          \
    __asm__(".text\n"                                                          \
            ".p2align 4\n"                                                     \
            ".type up_harness" #N ", @function\n"                              \
            "up_harness" #N ":\n\t"                                            \
            "push %rbp\n\tpush %rbx\n\tpush %r12\n\tpush %r13\n\t"             \
            "push %r14\n\tpush %r15\n\t"                                       \
            "push %rdi\n\t"                      /* the area, above %rsp */    \
            "mov %rsp, 272(%rdi)\n\t"                                          \
            "lea 288(%rdi), %rsi\n\t"                                          \
            "lea -128(%rsp), %rax\n\t"                                         \
            RZ_COPY("%rsi", "%rax")                                            \
            "mov 256(%rdi), %rax\n\t"                                          \
            "lea -136(%rsp), %rsp\n\t"           /* below the red zone */      \
            "mov %rax, (%rsp)\n\tpopfq\n\t"                                    \
            "lea 128(%rsp), %rsp\n\t"                                          \
            "mov 0(%rdi), %rax\n\tmov 8(%rdi), %rbx\n\tmov 16(%rdi), %rcx\n\t" \
            "mov 24(%rdi), %rdx\n\tmov 32(%rdi), %rsi\n\tmov 48(%rdi), %rbp\n\t" \
            "mov 56(%rdi), %r8\n\tmov 64(%rdi), %r9\n\tmov 72(%rdi), %r10\n\t" \
            "mov 80(%rdi), %r11\n\tmov 88(%rdi), %r12\n\tmov 96(%rdi), %r13\n\t" \
            "mov 104(%rdi), %r14\n\tmov 112(%rdi), %r15\n\t"                   \
            "mov 40(%rdi), %rdi\n\t"                                           \
            "jmp *ph_up_site+8*" #N "(%rip)\n"                                 \
            ".globl ph_up_back" #N "\n"                                        \
            ".hidden ph_up_back" #N "\n"                                       \
            "ph_up_back" #N ":\n\t"                                            \
            "xchg %rdi, (%rsp)\n\t"              /* the area back; rdi kept */ \
            "mov %rax, 128(%rdi)\n\tmov %rbx, 136(%rdi)\n\tmov %rcx, 144(%rdi)\n\t" \
            "mov %rdx, 152(%rdi)\n\tmov %rsi, 160(%rdi)\n\tmov %rbp, 176(%rdi)\n\t" \
            "mov %r8, 184(%rdi)\n\tmov %r9, 192(%rdi)\n\tmov %r10, 200(%rdi)\n\t" \
            "mov %r11, 208(%rdi)\n\tmov %r12, 216(%rdi)\n\tmov %r13, 224(%rdi)\n\t" \
            "mov %r14, 232(%rdi)\n\tmov %r15, 240(%rdi)\n\t"                   \
            "mov (%rsp), %rax\n\tmov %rax, 168(%rdi)\n\t"                      \
            "mov %rsp, 280(%rdi)\n\t"                                          \
            "lea -128(%rsp), %rsi\n\t"                                         \
            "lea 416(%rdi), %rax\n\t"                                          \
            RZ_COPY("%rsi", "%rax")                                            \
            "lea -136(%rsp), %rsp\n\t"           /* pushfq below the zone */   \
            "pushfq\n\tpopq 264(%rdi)\n\t"                                     \
            "lea 136(%rsp), %rsp\n\t"                                          \
            "pop %rdi\n\t"                                                     \
            "pop %r15\n\tpop %r14\n\tpop %r13\n\tpop %r12\n\tpop %rbx\n\t"     \
            "pop %rbp\n\tret\n\t"                                              \
            ".size up_harness" #N ", .-up_harness" #N "\n")

UP_HARNESS(0);
UP_HARNESS(1);

void up_harness0(struct up_area *a) __attribute__((visibility("hidden")));
void up_harness1(struct up_area *a) __attribute__((visibility("hidden")));
extern char ph_up_back0[] __attribute__((visibility("hidden")));
extern char ph_up_back1[] __attribute__((visibility("hidden")));

static struct {
    uint8_t *code;          /* the file's code page, RX */
    uint64_t *slots;        /* the page after it, RW: the way back */
    uint64_t off[PH_UP_NSITES];
} U;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

int ph_up_setup(const char *path, const uint64_t *site_off, uint64_t *code)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -errno;
    long pg = sysconf(_SC_PAGESIZE);
    /* Two pages reserved together, then the file's page over the first
     * (RX, the inode uprobes attach to) and a private RW page for the
     * slots over the second: the jmp's disp32 reaches it. */
    uint8_t *base = mmap(NULL, 2 * (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
        int e = -errno;
        close(fd);
        return e;
    }
    if (mmap(base, (size_t)pg, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_FIXED, fd, 0) == MAP_FAILED) {
        int e = -errno;
        close(fd);
        munmap(base, 2 * (size_t)pg);
        return e;
    }
    close(fd);
    U.code = base;
    U.slots = (uint64_t *)(base + pg);
    U.slots[0] = (uint64_t)(uintptr_t)ph_up_back0;
    U.slots[1] = (uint64_t)(uintptr_t)ph_up_back1;
    for (int i = 0; i < PH_UP_NSITES; i++) {
        U.off[i] = site_off[i];
        ph_up_site[i] = (uint64_t)(uintptr_t)(base + site_off[i]);
    }
    *code = (uint64_t)(uintptr_t)base;
    return 0;
}

static uint64_t mix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Arithmetic flags: CF PF AF ZF SF OF. */
#define UP_FLAGS_MASK 0x8D5ULL

/* One executor: runs each site in turn until `ns` pass, holding each run
 * to the unprobed code's effect (site 0: nothing; site 1: rax + 1). */
int ph_up_exec(uint64_t ns, uint64_t seed, struct ph_up_stats *st)
{
    if (!U.code)
        return -EINVAL;
    struct up_area a;
    uint64_t end = now_ns() + ns, rng = seed;
    memset(st, 0, sizeof(*st));
    while (now_ns() < end) {
        for (int rep = 0; rep < 64; rep++) {
            int site = rep & 1;
            for (int k = 0; k < 16; k++)
                a.in[k] = mix(&rng);
            for (int k = 0; k < 16; k++) {
                uint64_t v = mix(&rng);
                memcpy(a.rz_in + 8 * k, &v, 8);
            }
            /* a pattern of arithmetic flags, and IF/the reserved bit as they must be */
            a.flags_in = 0x202ULL | (mix(&rng) & UP_FLAGS_MASK);
            if (site == 0)
                up_harness0(&a);
            else
                up_harness1(&a);
            st->runs[site]++;
            uint64_t want[16];
            memcpy(want, a.in, sizeof(want));
            if (site == 1)
                want[0] += 1;             /* lea 1(%rax), %rax */
            int bad = -1;
            for (int k = 0; k < 15 && bad < 0; k++)
                if (a.out[k] != want[k])
                    bad = k;
            if (bad < 0 && a.rsp_out != a.rsp_in)
                bad = 16;
            if (bad < 0 && (a.flags_out & UP_FLAGS_MASK) != (a.flags_in & UP_FLAGS_MASK))
                bad = 17;
            int64_t off = 0;
            if (bad < 0 && memcmp(a.rz_in, a.rz_out, sizeof(a.rz_in))) {
                bad = 18;
                for (int w = 0; w < 16 && !off; w++)
                    if (memcmp(a.rz_in + 8 * w, a.rz_out + 8 * w, 8))
                        off = -128 + 8 * w;
            }
            if (bad >= 0) {
                if (!st->bad[0] && !st->bad[1]) {
                    st->first_site = (uint64_t)site;
                    st->first_what = (uint64_t)bad;
                    st->first_got = bad < 16 ? a.out[bad] : bad == 16 ? a.rsp_out
                                  : bad == 17 ? a.flags_out : 0;
                    st->first_want = bad < 16 ? want[bad] : bad == 16 ? a.rsp_in
                                   : bad == 17 ? a.flags_in : 0;
                    if (bad == 18) {
                        memcpy(&st->first_got, a.rz_out + 128 + off, 8);
                        memcpy(&st->first_want, a.rz_in + 128 + off, 8);
                        st->first_off = off;
                    }
                }
                st->bad[site]++;
            }
        }
    }
    return 0;
}

/* The sampler: every state of the sites' bytes it sees, in order, with how
 * long it lasted (the kernel's write sequence as we see it). */
int ph_up_sample(uint64_t ns, struct ph_up_state *out, int max, int *n)
{
    if (!U.code)
        return -EINVAL;
    uint64_t end = now_ns() + ns;
    int k = 0;
    uint8_t cur[PH_UP_NSITES][8];
    for (int i = 0; i < PH_UP_NSITES; i++)
        memcpy(cur[i], U.code + U.off[i], 8);
    uint64_t since = now_ns();
    for (;;) {
        uint64_t t = now_ns();
        int changed = -1;
        for (int i = 0; i < PH_UP_NSITES && changed < 0; i++) {
            /* volatile reads: the kernel writes this page behind our back */
            uint8_t b[8];
            for (int j = 0; j < 8; j++)
                b[j] = ((volatile uint8_t *)(U.code + U.off[i]))[j];
            if (memcmp(b, cur[i], 8)) {
                changed = i;
                if (k < max) {
                    out[k].site = i;
                    memcpy(out[k].before, cur[i], 8);
                    memcpy(out[k].after, b, 8);
                    out[k].at_ns = t;
                    out[k].lasted_ns = t - since;
                }
                k++;
                memcpy(cur[i], b, 8);
                since = t;
            }
        }
        if (t > end)
            break;
    }
    *n = k;
    return 0;
}
