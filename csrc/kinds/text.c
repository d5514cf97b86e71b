/*
 * text.c -- executable text, site encodings and the three poke methods.
 *
 * Text layout: page 0 holds two call targets (fn_a, fn_b), the last page
 * two more (fn_c, fn_d); each site gets a PH_SLOT-byte slot between them.
 * Every fourth site starts PH_STRADDLE_OFF bytes into its slot so that its
 * patchable bytes straddle a 64-byte line.  Branch targets lie on both
 * sides, so emulation is exercised with negative and positive rel32: every
 * other group of eight sites calls fn_c/fn_d (after the sites, not before),
 * and jumps back to a stub at the start of its slot (not forward).
 *
 * Every site is a function returning a 32-bit value that names the variant
 * that ran; a value that is neither is a torn execution.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "ph_internal.h"

#define PH_MFD_EXEC 0x0010U   /* MFD_EXEC, Linux 6.3 */

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

/* The page size, read once outside any handler (sysconf is not on POSIX's
 * async-signal-safe list; ph_site_containing() runs in handlers). */
static uint64_t page_sz;

static uint64_t page_size(void)
{
    uint64_t p = ph_load_relaxed(&page_sz);
    if (!p) {
        p = (uint64_t)sysconf(_SC_PAGESIZE);
        ph_store_relaxed(&page_sz, p);
    }
    return p;
}

static int pick_kind(struct ph_engine *e, int i)
{
    int kinds[PH_NKINDS], n = 0;
    for (int k = 0; k < PH_NKINDS; k++)
        if (e->cfg.kinds_mask & (1 << k))
            kinds[n++] = k;
    return kinds[i % n];
}

/* Lay out every site's bytes into buf (the image of the text region). */
static int text_layout(struct ph_engine *e, uint8_t *buf)
{
    uint64_t base = (uint64_t)e->text_x;
    uint64_t rng = e->cfg.seed ^ 0x5eedULL;
    memset(buf, 0xcc, e->text_len);      /* stray execution traps */

    /* The paravirt call targets: two before every site, two after. */
    uint64_t last = e->text_len - page_size();
    e->fn_a = base;
    e->fn_b = base + 64;
    e->fn_c = base + last;
    e->fn_d = base + last + 64;
    buf[0] = 0xb8; put32(buf + 1, 0xca11a000u); buf[5] = 0xc3;
    buf[64] = 0xb8; put32(buf + 65, 0xca11b000u); buf[69] = 0xc3;
    buf[last] = 0xb8; put32(buf + last + 1, 0xca11c000u); buf[last + 5] = 0xc3;
    buf[last + 64] = 0xb8; put32(buf + last + 65, 0xca11d000u); buf[last + 69] = 0xc3;

    uint64_t first = page_size();
    for (int i = 0; i < e->cfg.nsites; i++) {
        struct ph_site *s = &e->sites[i];
        s->kind = pick_kind(e, i);
        const struct ph_kind_ops *k = ph_kinds[s->kind];
        s->len = k->len;
        s->straddles = (i % 4) == 3;
        uint64_t slot = first + (uint64_t)i * PH_SLOT;
        s->off = slot + (s->straddles ? PH_STRADDLE_OFF : k->offset ? k->offset(i) : 0);
        s->addr = base + s->off;
        s->variant = 0;
        uint32_t v = (uint32_t)ph_splitmix(&rng);
        if (v == 0 || v == 0xffffffffu)
            v = 0x5a5a1234u;
        s->value[0] = v;
        s->value[1] = ~v;                /* every byte differs */
        uint64_t tgt[2] = {0, 0};
        if (k->values)
            k->values(e, i, s, slot, tgt);
        for (int var = 0; var < 2; var++) {
            int r = k->encode(var, s->addr, tgt[var], s->value[var], s->text[var]);
            if (r < 0)
                return r;
        }
        memcpy(buf + s->off, s->text[0], (size_t)s->len);
        if (k->layout)
            k->layout(e, i, s, buf, slot);
    }
    return 0;
}

/* alias: one memfd, two views: RX runs, RW is written.  Never W and X in
 * one mapping, so this works under MDWE. */
static int alias_create(struct ph_engine *e)
{
    /* Ask for an executable memfd explicitly: with vm.memfd_noexec set,
     * one created without MFD_EXEC cannot be mapped PROT_EXEC.  Kernels
     * before 6.3 do not know the flag (EINVAL): they need none. */
    e->memfd = memfd_create("pyharness-text", MFD_CLOEXEC | PH_MFD_EXEC);
    if (e->memfd < 0 && errno == EINVAL)
        e->memfd = memfd_create("pyharness-text", MFD_CLOEXEC);
    if (e->memfd < 0)
        return -errno;
    if (ftruncate(e->memfd, (off_t)e->text_len) < 0)
        return -errno;
    e->text_w = mmap(NULL, e->text_len, PROT_READ | PROT_WRITE, MAP_SHARED, e->memfd, 0);
    if (e->text_w == MAP_FAILED) { e->text_w = NULL; return -errno; }
    e->text_x = mmap(NULL, e->text_len, PROT_READ | PROT_EXEC, MAP_SHARED, e->memfd, 0);
    if (e->text_x == MAP_FAILED) { e->text_x = NULL; return -errno; }
    return text_layout(e, e->text_w);
}

/* One anonymous mapping, laid out writable, then given `final` (RX for
 * mprotect; left RWX for rwx). */
static int anon_create(struct ph_engine *e, int prot, int final)
{
    e->text_x = mmap(NULL, e->text_len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (e->text_x == MAP_FAILED) { e->text_x = NULL; return -errno; }
    e->text_w = e->text_x;
    int r = text_layout(e, e->text_w);
    if (r < 0)
        return r;
    if (final != prot && mprotect(e->text_x, e->text_len, final) < 0)
        return -errno;       /* EACCES under MDWE: use the alias method */
    return 0;
}

static int mprotect_create(struct ph_engine *e)
{
    return anon_create(e, PROT_READ | PROT_WRITE, PROT_READ | PROT_EXEC);
}

static int rwx_create(struct ph_engine *e)
{
    int rwx = PROT_READ | PROT_WRITE | PROT_EXEC;
    return anon_create(e, rwx, rwx);
}

/* Make [lo, hi) writable (the kernel's temporary poking_mm mapping).  Text
 * stays executable: other threads may run it meanwhile. */
static int mprotect_open(struct ph_engine *e, uint64_t lo, uint64_t hi)
{
    uint64_t ps = page_size(), a = lo & ~(ps - 1), b = (hi + ps - 1) & ~(ps - 1);
    (void)e;
    if (mprotect((void *)a, b - a, PROT_READ | PROT_WRITE | PROT_EXEC) < 0)
        return -errno;
    return 0;
}

static int mprotect_close(struct ph_engine *e, uint64_t lo, uint64_t hi)
{
    uint64_t ps = page_size(), a = lo & ~(ps - 1), b = (hi + ps - 1) & ~(ps - 1);
    (void)e;
    if (mprotect((void *)a, b - a, PROT_READ | PROT_EXEC) < 0)
        return -errno;
    return 0;
}

/* A poke method: one entry (pokes.def).  NULL open/close: no window.  What
 * it promises the observer, which reads /proc/self/maps: the run view's
 * permissions outside a window (NULL: none) and the written view's. */
const struct ph_poke_ops poke_mprotect = {mprotect_create, mprotect_open, mprotect_close, "r-x", NULL};
const struct ph_poke_ops poke_alias = {alias_create, NULL, NULL, "r-x", "rw-"};
const struct ph_poke_ops poke_rwx = {rwx_create, NULL, NULL, NULL, NULL};

const struct ph_poke_ops *const ph_pokes[PH_NPOKES] = {
#define PH_POKE_METHOD(e, name, ops, desc) [PH_POKE_##e] = &ops,
#include "pokes.def"
#undef PH_POKE_METHOD
};

int ph_text_create(struct ph_engine *e)
{
    uint64_t ps = page_size();
    e->text_len = (size_t)((ps + (uint64_t)e->cfg.nsites * PH_SLOT + ps - 1) / ps * ps + ps);
    e->memfd = -1;
    return ph_pokes[e->cfg.poke]->create(e);
}

void ph_text_destroy(struct ph_engine *e)
{
    if (e->text_w && e->text_w != e->text_x)
        munmap(e->text_w, e->text_len);
    if (e->text_x)
        munmap(e->text_x, e->text_len);
    if (e->memfd >= 0)
        close(e->memfd);
    e->text_x = e->text_w = NULL;
    e->memfd = -1;
}

int ph_text_open(struct ph_engine *e, uint64_t lo, uint64_t hi)
{
    const struct ph_poke_ops *m = ph_pokes[e->cfg.poke];
    return m->open ? m->open(e, lo, hi) : 0;
}

int ph_text_close(struct ph_engine *e, uint64_t lo, uint64_t hi)
{
    const struct ph_poke_ops *m = ph_pokes[e->cfg.poke];
    return m->close ? m->close(e, lo, hi) : 0;
}

/* __text_do_poke: write through the writable view.  Byte stores are plain:
 * visibility to other CPUs is ordered by the release that publishes the next
 * state (poke_sync) and by their sync_one(). */
void ph_text_poke(struct ph_engine *e, uint64_t addr, const uint8_t *src, size_t len)
{
    struct ph_ev x;                   /* its subscribers see every write before it lands */
    x.c = ph_self.c;
    x.addr = addr;
    x.src = src;
    x.len = len;
    ph_emit(e, PH_E_POKE, &x);
    volatile uint8_t *dst = e->text_w + (addr - (uint64_t)e->text_x);
    for (size_t i = 0; i < len; i++)
        dst[i] = src[i];
}

/* Exact site start -> index, or -1 (binary search: sites are in address order). */
/* The out-of-line copy of a block's variant v (0: not a block): in the
 * free part of the site's slot, 32 bytes apart. */
uint64_t ph_site_ool(struct ph_engine *e, int site, int v)
{
    if (site < 0 || site >= e->cfg.nsites || !ph_kinds[e->sites[site].kind]->out_of_line)
        return 0;
    const struct ph_site *s = &e->sites[site];
    uint64_t slot = s->addr - (s->straddles ? PH_STRADDLE_OFF : 0);
    return slot + (s->straddles ? 0 : 64) + (uint64_t)(v ? 32 : 0);
}

/* Where variant v of a site branches to (0: it does not branch). */
uint64_t ph_site_target(struct ph_engine *e, int site, int v)
{
    if (site < 0 || site >= e->cfg.nsites || (v != 0 && v != 1))
        return 0;
    const struct ph_site *s = &e->sites[site];
    const uint8_t *t = s->text[v];
    if (!ph_kinds[s->kind]->branches || (t[0] != 0xe8 && t[0] != 0xe9))
        return 0;
    int32_t rel;
    memcpy(&rel, t + 1, 4);
    return s->addr + 5 + (uint64_t)(int64_t)rel;
}

int ph_site_find(struct ph_engine *e, uint64_t addr)
{
    int lo = 0, hi = e->cfg.nsites - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        uint64_t a = e->sites[mid].addr;
        if (a == addr)
            return mid;
        if (a < addr)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

/* Site whose slot contains addr, or -1. */
int ph_site_containing(struct ph_engine *e, uint64_t addr)
{
    uint64_t base = (uint64_t)e->text_x + page_size();
    if (addr < base || addr >= base + (uint64_t)e->cfg.nsites * PH_SLOT)
        return -1;
    return (int)((addr - base) / PH_SLOT);
}

typedef uint32_t (*ph_site_fn)(void);

/*
 * Run a site once: it is a function returning the value of the variant
 * that ran.  EXEC_ENTER and EXEC_EXIT frame the call for their subscribers
 * (the observer counts the traps it took and holds it to the schedule);
 * an unregistered caller runs it bare.  Returns its variant, or -1.
 */
int ph_site_run(struct ph_engine *e, int site, int ctx, uint32_t *value)
{
    const struct ph_site *s = &e->sites[site];
    struct ph_ev x;
    x.c = ph_self.c;
    x.site = site;
    x.ctx = ctx;
    if (x.c)
        ph_emit(e, PH_E_EXEC_ENTER, &x);
    uint32_t v = ((ph_site_fn)(uintptr_t)s->addr)();
    int got = v == s->value[0] ? 0 : v == s->value[1] ? 1 : -1;
    if (value)
        *value = v;
    if (x.c) {
        x.value = v;
        x.arg = got;
        ph_emit(e, PH_E_EXEC_EXIT, &x);
    }
    return got;
}
