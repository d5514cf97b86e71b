/*
 * kinds.c -- the site kinds (kinds.def), one entry each: how long the
 * patchable bytes are, how each variant is encoded, what the text holds
 * around them, how a breakpoint emulates the new instruction (upstream's
 * int3_emulate_*), and what the interrupted context must look like after
 * that emulation (the observer holds it to the *schedule's* variant).
 *
 * Every site is a function returning a 32-bit value that names the variant
 * that ran; a value that is neither is a torn execution.  Emulation runs in
 * a signal handler: async-signal-safe.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <ucontext.h>
#include "ph_internal.h"

static const uint8_t nop5[5] = {0x0f, 0x1f, 0x44, 0x00, 0x00};

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

static int rel32(uint64_t site_addr, uint64_t target, int32_t *out)
{
    int64_t rel = (int64_t)target - (int64_t)(site_addr + 5);
    if (rel < INT32_MIN || rel > INT32_MAX)
        return -ERANGE;
    *out = (int32_t)rel;
    return 0;
}

/* ------------------------------------------------------------------ */
/* movret: mov eax, imm32 ; ret                                        */

static int movret_encode(int v, uint64_t at, uint64_t tgt, uint32_t value, uint8_t *out)
{
    (void)v; (void)at; (void)tgt;
    out[0] = 0xb8;                            /* mov eax, imm32 */
    put32(out + 1, value);
    return 5;
}

static int movret_emulate(const struct ph_patch *p, ucontext_t *uc)
{
    greg_t *g = uc->uc_mcontext.gregs;
    int32_t rel;
    memcpy(&rel, p->text + 1, 4);
    if (p->text[0] != 0xb8)
        return -1;
    g[REG_RAX] = (greg_t)(uint64_t)(uint32_t)rel;
    g[REG_RIP] = (greg_t)(p->addr + 5);
    return 0;
}

static int movret_check(const struct ph_site *s, int v, uint64_t tgt, const ucontext_t *uc,
                        uint64_t sp0, uint64_t *got)
{
    const greg_t *g = uc->uc_mcontext.gregs;
    (void)tgt; (void)sp0;
    *got = (uint64_t)g[REG_RIP];
    if ((uint64_t)g[REG_RIP] != s->addr + 5)
        return 1;
    *got = (uint64_t)(uint32_t)g[REG_RAX];
    return (uint32_t)g[REG_RAX] != s->value[v] ? 2 : 0;
}

/* ------------------------------------------------------------------ */
/* call: call rel32 ; ret  (the paravirt case)                         */

static int call_encode(int v, uint64_t at, uint64_t tgt, uint32_t value, uint8_t *out)
{
    int32_t rel;
    (void)v; (void)value;
    if (rel32(at, tgt, &rel) < 0)
        return -ERANGE;
    out[0] = 0xe8;                            /* call rel32 */
    put32(out + 1, (uint32_t)rel);
    return 5;
}

/* The call targets: two before every site, two after (text.c lays them
 * out); every other group of eight sites calls the far pair. */
static void call_values(struct ph_engine *e, int i, struct ph_site *s, uint64_t slot, uint64_t tgt[2])
{
    int far = (i >> 3) & 1;
    (void)slot;
    s->value[0] = far ? 0xca11c000u : 0xca11a000u;
    s->value[1] = far ? 0xca11d000u : 0xca11b000u;
    tgt[0] = far ? e->fn_c : e->fn_a;
    tgt[1] = far ? e->fn_d : e->fn_b;
}

static int call_emulate(const struct ph_patch *p, ucontext_t *uc)
{
    greg_t *g = uc->uc_mcontext.gregs;
    int32_t rel;
    memcpy(&rel, p->text + 1, 4);
    if (p->text[0] != 0xe8)
        return -1;
    {                                             /* call rel32 */
        uint64_t sp = (uint64_t)g[REG_RSP] - 8;
        *(uint64_t *)sp = p->addr + 5;
        g[REG_RSP] = (greg_t)sp;
        g[REG_RIP] = (greg_t)(p->addr + 5 + (int64_t)rel);
        return 0;
    }
}

static int call_check(const struct ph_site *s, int v, uint64_t tgt, const ucontext_t *uc,
                      uint64_t sp0, uint64_t *got)
{
    const greg_t *g = uc->uc_mcontext.gregs;
    (void)v;
    *got = (uint64_t)g[REG_RIP];
    if ((uint64_t)g[REG_RIP] != tgt)
        return 1;
    *got = *(const uint64_t *)(uintptr_t)(sp0 - 8);
    return (uint64_t)g[REG_RSP] != sp0 - 8 || *got != s->addr + 5 ? 3 : 0;
}

/* ------------------------------------------------------------------ */
/* jmpnop: nopl 0(%rax,%rax) <-> jmp rel32  (a static key)             */

static int jmpnop_encode(int v, uint64_t at, uint64_t tgt, uint32_t value, uint8_t *out)
{
    int32_t rel;
    (void)value;
    if (v == 0) {
        memcpy(out, nop5, 5);
        return 5;
    }
    if (rel32(at, tgt, &rel) < 0)
        return -ERANGE;
    out[0] = 0xe9;                            /* jmp rel32 */
    put32(out + 1, (uint32_t)rel);
    return 5;
}

/* Forward: past "mov eax, value0; ret"; backward (every other group of
 * eight): a stub at the slot's start, so rel32 takes both signs. */
static void jmpnop_values(struct ph_engine *e, int i, struct ph_site *s, uint64_t slot, uint64_t tgt[2])
{
    int far = (i >> 3) & 1;
    tgt[1] = far ? (uint64_t)e->text_x + slot : s->addr + 11;
}

static uint64_t jmpnop_offset(int i) { return ((i >> 3) & 1) ? 16 : 0; }

static void jmpnop_layout(struct ph_engine *e, int i, struct ph_site *s, uint8_t *buf, uint64_t slot)
{
    uint8_t *p = buf + s->off;
    int far = (i >> 3) & 1;
    (void)e;
    p[5] = 0xb8; put32(p + 6, s->value[0]); p[10] = 0xc3;
    uint8_t *stub = far ? buf + slot : p + 11;
    stub[0] = 0xb8; put32(stub + 1, s->value[1]); stub[5] = 0xc3;
}

static int jmpnop_emulate(const struct ph_patch *p, ucontext_t *uc)
{
    greg_t *g = uc->uc_mcontext.gregs;
    int32_t rel;
    memcpy(&rel, p->text + 1, 4);
    switch (p->text[0]) {
    case 0xe9:                                    /* jmp rel32 */
        g[REG_RIP] = (greg_t)(p->addr + 5 + (int64_t)rel);
        return 0;
    case 0x0f:                                    /* nopl 0(%rax,%rax) */
        if (p->len == 5 && p->text[1] == 0x1f) {
            g[REG_RIP] = (greg_t)(p->addr + 5);
            return 0;
        }
        return -1;
    default:
        return -1;
    }
}

static int jmpnop_check(const struct ph_site *s, int v, uint64_t tgt, const ucontext_t *uc,
                        uint64_t sp0, uint64_t *got)
{
    (void)v; (void)sp0;
    *got = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
    return *got != (tgt ? tgt : s->addr + 5) ? 1 : 0;
}

/* ------------------------------------------------------------------ */
/* block: 14 bytes, several instructions (native only)                 */

static int block_encode(int v, uint64_t at, uint64_t tgt, uint32_t value, uint8_t *out)
{
    /* Two different instruction sequences of equal length computing
     * `value`: a torn mix computes something else or faults. */
    uint32_t x = (uint32_t)(value * 2654435761u) | 0x01010101u;
    (void)at; (void)tgt;
    if (v == 0) {                    /* mov eax,x; add eax,value-x; nopl (%rax) */
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

/* Each variant out of line, in the site's own slot, ending in a jump back
 * past the site: where the primary's breakpoint runs a block it is
 * patching (proto/rfc.c), rather than finishing it under a CPU that may be
 * between its instructions. */
static void block_layout(struct ph_engine *e, int i, struct ph_site *s, uint8_t *buf, uint64_t slot)
{
    uint64_t base = (uint64_t)e->text_x;
    (void)slot;
    buf[s->off + (uint64_t)s->len] = 0xc3;           /* ret */
    for (int var = 0; var < 2; var++) {
        uint64_t o = ph_site_ool(e, i, var) - base;
        memcpy(buf + o, s->text[var], (size_t)s->len);
        buf[o + s->len] = 0xe9;
        put32(buf + o + s->len + 1,
              (uint32_t)(int32_t)((int64_t)(s->addr + (uint64_t)s->len) -
                                  (int64_t)(base + o + (uint64_t)s->len + 5)));
    }
}

/* ------------------------------------------------------------------ */

static void ret_after(struct ph_engine *e, int i, struct ph_site *s, uint8_t *buf, uint64_t slot)
{
    (void)e; (void)i; (void)slot;
    buf[s->off + (uint64_t)s->len] = 0xc3;           /* ret */
}

const struct ph_kind_ops ph_kind_movret = {
    .len = 5, .encode = movret_encode, .layout = ret_after,
    .emulate = movret_emulate, .emulated_check = movret_check,
};
const struct ph_kind_ops ph_kind_call = {
    .len = 5, .encode = call_encode, .values = call_values, .layout = ret_after,
    .emulate = call_emulate, .emulated_check = call_check, .branches = 1,
};
const struct ph_kind_ops ph_kind_jmpnop = {
    .len = 5, .encode = jmpnop_encode, .values = jmpnop_values, .offset = jmpnop_offset,
    .layout = jmpnop_layout, .emulate = jmpnop_emulate, .emulated_check = jmpnop_check,
    .branches = 1,
};
const struct ph_kind_ops ph_kind_block = {
    .len = 14, .encode = block_encode, .layout = block_layout, .out_of_line = 1,
};

const struct ph_kind_ops *const ph_kinds[PH_NKINDS] = {
#define PH_KIND(e, name, ops, desc) [PH_KIND_##e] = &ops,
#include "kinds.def"
#undef PH_KIND
};

int ph_site_len(int kind)
{
    return kind >= 0 && kind < PH_NKINDS ? ph_kinds[kind]->len : -EINVAL;
}

int ph_kind_emulable(int kind)
{
    return kind >= 0 && kind < PH_NKINDS && ph_kinds[kind]->emulate != NULL;
}

/*
 * Encode the patchable bytes of one variant.  target_addr: for a kind that
 * branches, where to; value: what the variant returns (an immediate, or
 * what a block computes).
 */
int ph_encode(int kind, int variant, uint64_t site_addr, uint64_t target_addr,
              uint32_t value, uint8_t *out)
{
    if ((variant != 0 && variant != 1) || kind < 0 || kind >= PH_NKINDS)
        return -EINVAL;
    return ph_kinds[kind]->encode(variant, site_addr, target_addr, value, out);
}
