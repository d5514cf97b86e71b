/*
 * ph_events.h -- the events the primitives emit, and their subscribers.
 *
 * The protocols are built from primitives (core/primitives.c, the acks,
 * kinds/text.c's poke, the site run, sync/sync.c, trap/trap.c's signal
 * entries, the driver's rounds); each primitive emits its event, and every
 * subscriber of that event in subscribers.def runs, in table order.  The
 * observer (csrc/observe/) and the stress conditions (csrc/stress/) are
 * such subscribers: a protocol cannot forget a check by forgetting a call,
 * nor switch the observer off, because it never calls either.
 *
 * Dispatch is static: ph_emit() is inlined with a constant event type, so
 * each emit compiles to the direct calls of that event's subscribers and
 * nothing else (no indirect call, no registration at run time), each
 * behind its line's condition (a stress condition that is off costs a
 * test of the configuration, not a call).  Everything a subscriber does may run in a signal handler: it
 * must be async-signal-safe.
 */
#ifndef PH_EVENTS_H
#define PH_EVENTS_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <ucontext.h>

struct ph_engine;
struct ph_counters;

enum ph_ev_type {
    PH_E_ENGINE_READY,  /* the engine is made (before any thread runs) */
    PH_E_RUN_START,     /* the primary begins its run */
    PH_E_POKE,          /* a write to the text, before it lands: addr, src, len */
    PH_E_STEP_DONE,     /* one step's writes for every site of the round: arg = STEP_* */
    PH_E_PUBLISH,       /* the primary publishes r after prev (just before its store) */
    PH_E_STATE_ACKED,   /* the primary's poke_sync of r returned: every participant acked */
    PH_E_SEEN,          /* a participant read a published state new to it (r) in ctx */
    PH_E_ACK,           /* an ack of r became visible: arg = given in the sync loop */
    PH_E_SYNC_BEGIN,    /* a participant is about to serialize, having seen r (in a sync
                           loop: just before it acks r) */
    PH_E_SYNC,          /* a serializing instruction ran: r seen before it, arg = method,
                           token = what it returned */
    PH_E_EXEC_ENTER,    /* a site is about to run: site, ctx */
    PH_E_EXEC_EXIT,     /* ... it returned value (arg: its variant, -1 neither) */
    PH_E_TRAP_ENTER,    /* SIGTRAP delivered: si, uc, addr (the INT3), site (-1), ours */
    PH_E_TRAP_EXIT,     /* ... the breakpoint handler returned */
    PH_E_DESC_FOUND,    /* a handler found the published descriptor (addr), no reference yet */
    PH_E_DESC_HELD,     /* ... and took a reference to it */
    PH_E_NMI_ENTER,     /* the NMI signal delivered: ours */
    PH_E_NMI_EXIT,
    PH_E_ROUND_END,     /* the primary finished a round (the descriptor retired) */
    PH_E_RUN_END,       /* the primary's last round and DONE are behind it */
    PH_E_VERIFIED,      /* after DONE, site ran and returned value (arg: its variant) */
    PH_NEVENTS
};

/* One event.  Only the fields its type names are set (primitives fill
 * them one by one: an event on the hot path costs a few stores, not a
 * cleared struct); f[] is the observer's frame between an ENTER and its
 * EXIT (the same struct is passed to both). */
struct ph_ev {
    struct ph_counters *c;     /* the emitting thread's counters (NULL: not registered) */
    uint64_t r;                /* a round: published, seen, acked, seen before a sync */
    uint64_t prev;             /* PUBLISH: the round before */
    uint64_t token;            /* SYNC: the instruction's token; MEMBARRIER: its return */
    uint64_t addr;             /* POKE: where; TRAP: the INT3's address */
    const uint8_t *src;        /* POKE: the bytes */
    size_t len;
    siginfo_t *si;             /* TRAP, NMI */
    ucontext_t *uc;
    int ctx;
    int site;
    int arg;
    int ours;                  /* TRAP, NMI: delivered to a participant of the live engine */
    uint32_t value;            /* EXEC_EXIT, VERIFIED: what the site returned */
    uint64_t f[6];
};

/* Every subscriber's prototype, from the table.  ph_emit(), which needs
 * the engine's layout for the subscribers' conditions, is in ph_internal.h. */
#define PH_ON(ev, fn, when) void fn(struct ph_engine *e, struct ph_ev *x);
#include "subscribers.def"
#undef PH_ON

#endif
