/*
 * tables.c -- every table's names, descriptions and codes, from the same
 * .def lines that make the C enums (ph_api.h): Python reads them by number
 * (pyharness/engine.py), never by position in a list of its own.
 */
#include <errno.h>
#include "ph_internal.h"

struct entry {
    const char *name;
    const char *desc;
    int64_t code;
};

static const struct entry protocols[] = {
#define PH_PROTOCOL(e, name, ops, desc) {name, desc, PH_PROTO_##e},
#include "protocols.def"
#undef PH_PROTOCOL
};
static const struct entry kinds[] = {
#define PH_KIND(e, name, ops, desc) {name, desc, PH_KIND_##e},
#include "kinds.def"
#undef PH_KIND
};
static const struct entry pokes[] = {
#define PH_POKE_METHOD(e, name, ops, desc) {name, desc, PH_POKE_##e},
#include "pokes.def"
#undef PH_POKE_METHOD
};
static const struct entry syncs[] = {
#define PH_SYNC_METHOD(e, name, ops, desc) {name, desc, PH_SYNC_##e},
#include "sync.def"
#undef PH_SYNC_METHOD
};
static const struct entry mutants[] = {
#define PH_MUTANT(e, name, apply, desc) {name, desc, PH_MUT_##e},
#include "mutants.def"
#undef PH_MUTANT
};
static const struct entry stress[] = {
#define PH_STRESS(e, bit, name, desc) {name, desc, PH_STRESS_##e},
#define PH_AIM(e, bit, name, desc)
#include "stress.def"
#undef PH_STRESS
#undef PH_AIM
};
static const struct entry aims[] = {
#define PH_STRESS(e, bit, name, desc)
#define PH_AIM(e, bit, name, desc) {name, desc, PH_AIM_##e},
#include "stress.def"
#undef PH_STRESS
#undef PH_AIM
};
static const struct entry invariants[] = {
#define PH_INVARIANT(e, name, desc) {name, desc, PH_INV_##e},
#define PH_REASON(inv, e, name, text)
#include "invariants.def"
#undef PH_INVARIANT
#undef PH_REASON
};
/* Reasons by number (0: none given); their names are "invariant.reason". */
static const struct entry reasons[] = {
    {"none", "", PH_R_NONE},
#define PH_INVARIANT(e, name, desc)
#define PH_REASON(inv, e, name, text) {name, text, PH_R_##e},
#include "invariants.def"
#undef PH_INVARIANT
#undef PH_REASON
};
static const int reason_inv[] = {
    -1,
#define PH_INVARIANT(e, name, desc)
#define PH_REASON(inv, e, name, text) PH_INV_##inv,
#include "invariants.def"
#undef PH_INVARIANT
#undef PH_REASON
};

static const struct entry lstores[] = {
#define PH_LSTORE(e, name, desc) {name, desc, PH_LST_##e},
#include "stores.def"
#undef PH_LSTORE
};
static const struct entry lsyncs[] = {
#define PH_LSYNC(e, name, desc) {name, desc, PH_LSY_##e},
#include "syncs.def"
#undef PH_LSYNC
};
static const struct entry lsers[] = {
#define PH_LSER(e, name, desc) {name, desc, PH_LSER_##e},
#include "serializers.def"
#undef PH_LSER
};
static const struct entry lmodes[] = {
#define PH_LMODE(e, name, desc) {name, desc, PH_LMODE_##e},
#include "sides.def"
#undef PH_LMODE
};
static const struct entry loutcomes[] = {
#define PH_LOUTCOME(e, name, desc) {name, desc, PH_LO_##e},
#include "outcomes.def"
#undef PH_LOUTCOME
};
_Static_assert(PH_LIT_NOUTCOMES == PH_LIT_NOUT, "PH_LIT_NOUT: the lines of outcomes.def");

#define T(a) {a, (int)(sizeof(a) / sizeof(a[0]))}
static const struct { const struct entry *v; int n; } tables[PH_NTABLES] = {
    [PH_TABLE_PROTOCOL] = T(protocols), [PH_TABLE_KIND] = T(kinds), [PH_TABLE_POKE] = T(pokes),
    [PH_TABLE_SYNC] = T(syncs), [PH_TABLE_MUTANT] = T(mutants), [PH_TABLE_STRESS] = T(stress),
    [PH_TABLE_AIM] = T(aims), [PH_TABLE_INVARIANT] = T(invariants), [PH_TABLE_REASON] = T(reasons),
    [PH_TABLE_LSTORE] = T(lstores), [PH_TABLE_LSYNC] = T(lsyncs), [PH_TABLE_LSER] = T(lsers),
    [PH_TABLE_LMODE] = T(lmodes), [PH_TABLE_LOUTCOME] = T(loutcomes),
};
#undef T

_Static_assert(PH_TRAP_BOUND == 4, "invariants.def's trap-bound line says 4 traps");
_Static_assert(PH_NINVARIANTS <= 32, "inv_count[] holds 32 invariants");
_Static_assert(sizeof(protocols) / sizeof(protocols[0]) == PH_NPROTOCOLS, "protocol table");
_Static_assert(sizeof(kinds) / sizeof(kinds[0]) == PH_NKINDS, "kind table");
_Static_assert(sizeof(mutants) / sizeof(mutants[0]) == PH_NMUTANTS, "mutant table");
_Static_assert(sizeof(reasons) / sizeof(reasons[0]) == PH_NREASONS, "reason table");

int ph_reason_invariant(int reason)
{
    return reason >= 0 && reason < PH_NREASONS ? reason_inv[reason] : -1;
}

static const struct entry *at(int table, int i)
{
    if (table < 0 || table >= PH_NTABLES || i < 0 || i >= tables[table].n)
        return NULL;
    return &tables[table].v[i];
}

int ph_table_size(int table)
{
    return table >= 0 && table < PH_NTABLES ? tables[table].n : -EINVAL;
}

const char *ph_table_name(int table, int i)
{
    const struct entry *x = at(table, i);
    return x ? x->name : NULL;
}

const char *ph_table_description(int table, int i)
{
    const struct entry *x = at(table, i);
    return x ? x->desc : NULL;
}

int64_t ph_table_code(int table, int i)
{
    const struct entry *x = at(table, i);
    return x ? x->code : -EINVAL;
}

/* Every stress bit, every aim bit (config checks). */
uint32_t ph_stress_mask(void)
{
    uint32_t m = 0;
    for (int i = 0; i < tables[PH_TABLE_STRESS].n; i++)
        m |= (uint32_t)stress[i].code;
    return m;
}
