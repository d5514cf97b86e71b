/*
 * invariants.c -- the invariants' names and descriptions, from the one table
 * (invariants.def) that also makes their enum: Python reads them by number,
 * never by position in a list of its own.
 */
#include "ph_internal.h"

_Static_assert(PH_TRAP_BOUND == 4, "invariants.def's trap-bound line says 4 traps");
_Static_assert(PH_NINVARIANTS <= 32, "inv_count[] holds 32 invariants");

static const char *const names[] = {
#define PH_INVARIANT(e, name, desc) [PH_INV_##e] = name,
#include "invariants.def"
#undef PH_INVARIANT
};

static const char *const descriptions[] = {
#define PH_INVARIANT(e, name, desc) [PH_INV_##e] = desc,
#include "invariants.def"
#undef PH_INVARIANT
};

const char *ph_invariant_name(int inv)
{
    return inv >= 0 && inv < PH_NINVARIANTS ? names[inv] : NULL;
}

const char *ph_invariant_description(int inv)
{
    return inv >= 0 && inv < PH_NINVARIANTS ? descriptions[inv] : NULL;
}
