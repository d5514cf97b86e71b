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

static const uint8_t nop5[5] = {0x0f, 0x1f, 0x44, 0x00, 0x00};

int ph_site_len(int kind)
{
    switch (kind) {
    case PH_KIND_MOVRET: case PH_KIND_CALL: case PH_KIND_JMPNOP: return 5;
    case PH_KIND_BLOCK: return 14;
    default: return -EINVAL;
    }
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

/*
 * Encode the patchable bytes of one variant.  target_addr: for CALL, the
 * function to call; for JMPNOP, the jump target; value: for MOVRET, the
 * immediate; for BLOCK, the value the block computes.
 */
int ph_encode(int kind, int variant, uint64_t site_addr, uint64_t target_addr,
              uint32_t value, uint8_t *out)
{
    int64_t rel = (int64_t)target_addr - (int64_t)(site_addr + 5);
    if (variant != 0 && variant != 1)
        return -EINVAL;
    switch (kind) {
    case PH_KIND_MOVRET:                      /* mov eax, imm32 */
        out[0] = 0xb8;
        put32(out + 1, value);
        return 5;
    case PH_KIND_CALL:                        /* call rel32 */
    case PH_KIND_JMPNOP:                      /* jmp rel32 | nopl 0(%rax,%rax) */
        if (kind == PH_KIND_JMPNOP && variant == 0) {
            memcpy(out, nop5, 5);
            return 5;
        }
        if (rel < INT32_MIN || rel > INT32_MAX)
            return -ERANGE;
        out[0] = kind == PH_KIND_CALL ? 0xe8 : 0xe9;
        put32(out + 1, (uint32_t)(int32_t)rel);
        return 5;
    case PH_KIND_BLOCK: {
        /* Two different instruction sequences of equal length computing
         * `value`: a torn mix computes something else or faults. */
        uint32_t x = (uint32_t)(value * 2654435761u) | 0x01010101u;
        if (variant == 0) {              /* mov eax,x; add eax,value-x; nopl (%rax) */
            out[0] = 0xb8; put32(out + 1, x);
            out[5] = 0x05; put32(out + 6, value - x);
            out[10] = 0x0f; out[11] = 0x1f; out[12] = 0x40; out[13] = 0x00;
        } else {                         /* mov ecx,x; lea eax,[rcx+value-x]; nopl (%rax) */
            out[0] = 0xb9; put32(out + 1, ~x);
            out[5] = 0x8d; out[6] = 0x81; put32(out + 7, value - ~x);
            out[11] = 0x0f; out[12] = 0x1f; out[13] = 0x00;
        }
        return 14;
    }
    default:
        return -EINVAL;
    }
}

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
        s->len = ph_site_len(s->kind);
        s->straddles = (i % 4) == 3;
        int far = (i >> 3) & 1;          /* call forward, jump backward */
        uint64_t slot = first + (uint64_t)i * PH_SLOT;
        s->off = slot + (s->straddles ? PH_STRADDLE_OFF
                                      : (far && s->kind == PH_KIND_JMPNOP ? 16 : 0));
        s->addr = base + s->off;
        s->variant = 0;
        uint32_t v = (uint32_t)ph_splitmix(&rng);
        if (v == 0 || v == 0xffffffffu)
            v = 0x5a5a1234u;
        s->value[0] = v;
        s->value[1] = ~v;                /* every byte differs */
        uint64_t tgt[2] = {0, 0};
        if (s->kind == PH_KIND_CALL) {
            s->value[0] = far ? 0xca11c000u : 0xca11a000u;
            s->value[1] = far ? 0xca11d000u : 0xca11b000u;
            tgt[0] = far ? e->fn_c : e->fn_a;
            tgt[1] = far ? e->fn_d : e->fn_b;
        } else if (s->kind == PH_KIND_JMPNOP) {
            /* forward: past "mov eax, value0; ret"; backward: the slot's start */
            tgt[1] = far ? base + slot : s->addr + 11;
        }
        for (int var = 0; var < 2; var++) {
            int r = ph_encode(s->kind, var, s->addr, tgt[var], s->value[var], s->text[var]);
            if (r < 0)
                return r;
        }
        uint8_t *p = buf + s->off;
        memcpy(p, s->text[0], (size_t)s->len);
        if (s->kind == PH_KIND_JMPNOP) {
            p[5] = 0xb8; put32(p + 6, s->value[0]); p[10] = 0xc3;
            uint8_t *stub = far ? buf + slot : p + 11;
            stub[0] = 0xb8; put32(stub + 1, s->value[1]); stub[5] = 0xc3;
        } else {
            p[s->len] = 0xc3;            /* ret */
        }
        if (s->kind == PH_KIND_BLOCK) {
            /* Each variant out of line, in the site's own slot, ending in a
             * jump back past the site: where the primary's breakpoint runs a
             * block it is patching (proto_rfc.c), rather than finishing it
             * under a CPU that may be between its instructions. */
            for (int var = 0; var < 2; var++) {
                uint64_t o = ph_site_ool(e, i, var) - base;
                memcpy(buf + o, s->text[var], (size_t)s->len);
                buf[o + s->len] = 0xe9;
                put32(buf + o + s->len + 1,
                      (uint32_t)(int32_t)((int64_t)(s->addr + (uint64_t)s->len) -
                                          (int64_t)(base + o + (uint64_t)s->len + 5)));
            }
        }
    }
    return 0;
}

int ph_text_create(struct ph_engine *e)
{
    uint64_t ps = page_size();
    e->text_len = (size_t)((ps + (uint64_t)e->cfg.nsites * PH_SLOT + ps - 1) / ps * ps + ps);
    e->memfd = -1;
    if (e->cfg.poke == PH_POKE_ALIAS) {
        /* One memfd, two views: RX runs, RW is written.  Never W and X in
         * one mapping, so this works under MDWE. */
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
    int prot = e->cfg.poke == PH_POKE_RWX ? PROT_READ | PROT_WRITE | PROT_EXEC
                                          : PROT_READ | PROT_WRITE;
    e->text_x = mmap(NULL, e->text_len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (e->text_x == MAP_FAILED) { e->text_x = NULL; return -errno; }
    e->text_w = e->text_x;
    int r = text_layout(e, e->text_w);
    if (r < 0)
        return r;
    if (e->cfg.poke == PH_POKE_MPROTECT &&
        mprotect(e->text_x, e->text_len, PROT_READ | PROT_EXEC) < 0)
        return -errno;       /* EACCES under MDWE: use the alias method */
    return 0;
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

/* Make [lo, hi) writable (the kernel's temporary poking_mm mapping).  Text
 * stays executable: other threads may run it meanwhile. */
int ph_text_open(struct ph_engine *e, uint64_t lo, uint64_t hi)
{
    if (e->cfg.poke != PH_POKE_MPROTECT)
        return 0;
    uint64_t ps = page_size(), a = lo & ~(ps - 1), b = (hi + ps - 1) & ~(ps - 1);
    if (mprotect((void *)a, b - a, PROT_READ | PROT_WRITE | PROT_EXEC) < 0)
        return -errno;
    return 0;
}

int ph_text_close(struct ph_engine *e, uint64_t lo, uint64_t hi)
{
    if (e->cfg.poke != PH_POKE_MPROTECT)
        return 0;
    uint64_t ps = page_size(), a = lo & ~(ps - 1), b = (hi + ps - 1) & ~(ps - 1);
    if (mprotect((void *)a, b - a, PROT_READ | PROT_EXEC) < 0)
        return -errno;
    return 0;
}

/* __text_do_poke: write through the writable view.  Byte stores are plain:
 * visibility to other CPUs is ordered by the release that publishes the next
 * state (poke_sync) and by their sync_one(). */
void ph_text_poke(struct ph_engine *e, uint64_t addr, const uint8_t *src, size_t len)
{
    ph_chk_poke(e, addr, src, len);   /* the observer sees every write before it lands */
    volatile uint8_t *dst = e->text_w + (addr - (uint64_t)e->text_x);
    for (size_t i = 0; i < len; i++)
        dst[i] = src[i];
}

/* Exact site start -> index, or -1 (binary search: sites are in address order). */
/* The out-of-line copy of a block's variant v (0: not a block): in the
 * free part of the site's slot, 32 bytes apart. */
uint64_t ph_site_ool(struct ph_engine *e, int site, int v)
{
    if (site < 0 || site >= e->cfg.nsites || e->sites[site].kind != PH_KIND_BLOCK)
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
    if ((s->kind != PH_KIND_CALL && s->kind != PH_KIND_JMPNOP) || (t[0] != 0xe8 && t[0] != 0xe9))
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
