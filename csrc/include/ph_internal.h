/*
 * ph_internal.h -- what the C files of the core share and Python never sees.
 */
#ifndef PH_INTERNAL_H
#define PH_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <time.h>
#include <ucontext.h>
#include "ph_api.h"
#include "ph_events.h"

#define PH_MAGIC 0x70796861726e6573ULL   /* "pyharnes" */
#define PH_CACHELINE 64
#define PH_INT3 0xCC
#define PH_SLOT 128                       /* bytes of text per site */
#define PH_STRADDLE_OFF 62                /* straddling sites start 2 bytes before a line */

_Static_assert(sizeof(struct ph_counters) % PH_CACHELINE == 0,
               "per-thread counters must fill whole cache lines");
_Static_assert(offsetof(struct ph_counters, exec) == PH_CACHELINE,
               "the ack word's cache line holds nothing the owner keeps writing");
_Static_assert(offsetof(struct ph_shared, round) % PH_CACHELINE == 0 &&
               offsetof(struct ph_shared, stop) - offsetof(struct ph_shared, round)
                   >= PH_CACHELINE,
               "the published state has a cache line of its own");
_Static_assert(offsetof(struct ph_shared, cur_site) - offsetof(struct ph_shared, stop)
                   >= PH_CACHELINE &&
               offsetof(struct ph_shared, sync_token_expect) / PH_CACHELINE !=
                   offsetof(struct ph_shared, flips_checked) / PH_CACHELINE,
               "what every wait or sync reads is apart from what the primary writes per round");
_Static_assert(sizeof(((struct ph_shared *)0)->violations) / sizeof(struct ph_violation)
                   == PH_MAX_VIOLATIONS, "violation array size");
_Static_assert(sizeof(((struct ph_shared *)0)->series_count) / sizeof(uint64_t)
                   == PH_NSERIES, "series count size");

/*
 * Atomics, named by intent (ck style).  Every call site names its order;
 * every acquire/release comment names the access it pairs with.
 */
#define ph_load_relaxed(p)       __atomic_load_n((p), __ATOMIC_RELAXED)
#define ph_load_acquire(p)       __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define ph_store_relaxed(p, v)   __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define ph_store_release(p, v)   __atomic_store_n((p), (v), __ATOMIC_RELEASE)
/* Counters have one writer: the owner thread, or its own signal handlers,
 * which run only between its instructions.  One non-locked `add` to memory
 * is a single instruction, so a handler's increment can neither interleave
 * with nor be lost to the thread's own; other threads only read (aligned
 * 64-bit loads are never torn).  A `lock` prefix would buy cross-CPU
 * atomicity nobody needs, at a price paid several times per round. */
static inline void ph_count(uint64_t *p, uint64_t n)
{
    __asm__ __volatile__("addq %1, %0" : "+m"(*p) : "er"(n) : "cc");
}

static inline void ph_cpu_relax(void) { __builtin_ia32_pause(); }

/* An aimed NMI's tag, in the si_value it is queued with (a neighbour's
 * is its sender's index + 1, positive): the sign bit, the aim's slot
 * (0..2 the primary's steps INT3, tail, first byte; 3..5 a secondary's
 * states SYNC_0..2) and the low bits of the round it aims at, so that the
 * observer can tell where it landed against where it was aimed. */
#define PH_AIM_TAG          0x80000000u
#define PH_AIM_SLOT(t)      ((int)(((t) >> 24) & 7))
#define PH_AIM_SEQ_MASK     0x00ffffffu
#define PH_AIM_SLOT_SYNC0   3
#define PH_AIM_SLOTS        6
/* Who sent the NMI a thread is handling (its counters' nmi_from). */
enum { PH_FROM_NONE, PH_FROM_TIMER, PH_FROM_NEIGHBOUR, PH_FROM_AIM, PH_FROM_SELF };

/* round = (site sequence << 3) | state; rounds only grow. */
#define PH_ROUND(seq, st)   (((uint64_t)(seq) << 3) | (uint64_t)(st))
#define PH_ROUND_STATE(r)   ((int)((r) & 7))
#define PH_ROUND_SEQ(r)     ((r) >> 3)

/* One site to patch in the current round (upstream's text_poke_loc). */
struct ph_patch {
    uint64_t addr;                 /* run address (RX view) */
    int32_t site;
    int32_t len;
    int32_t new_variant;
    uint32_t new_value;            /* value the new variant returns */
    uint8_t text[PH_SITE_MAX_LEN]; /* the new bytes */
};

/* The breakpoint descriptor (upstream's bp_patching_desc). */
struct ph_bp_desc {
    struct ph_patch *vec;          /* sorted by addr */
    int32_t nr;
    int32_t native;
    int32_t refs;                  /* handlers take a ref only while non-zero */
    int32_t retired;               /* set once the primary moved on */
    uint64_t gen;
    uint64_t seq;                  /* the round that owns its INT3s */
};

struct ph_site {
    uint64_t addr;                 /* start of the patchable bytes (RX view) */
    uint64_t off;                  /* offset in the text region */
    int32_t kind;
    int32_t len;
    int32_t variant;               /* current variant (primary's view) */
    int32_t straddles;
    uint32_t value[2];
    uint8_t text[2][PH_SITE_MAX_LEN];
};

/* One round as the schedule oracle issued it (check.c).  seq is written
 * last (release) and read first and last (acquire): a reader that sees the
 * same seq before and after its reads read one round, not two. */
struct ph_oround {
    uint64_t seq;
    int32_t n;
    int32_t pad;
    int32_t sites[PH_MAX_BATCH];
    uint8_t newv[PH_MAX_BATCH];    /* the variant each site must end up as */
};

/* The observer's state: the schedule, derived from the seed alone, and what
 * it needs to hold the protocol to it.  Protocol code never writes here. */
struct ph_oracle {
    int active;                    /* a run is under way: hooks check */
    uint64_t seq;                  /* last round issued */
    uint64_t pass;                 /* passes begun */
    int cursor;
    int *perm;                     /* this pass's order of sites */
    uint64_t *last_seq;            /* per site: the last round that patches it */
    uint64_t *trap_seq;            /* per site: the last round the primary trapped on it */
    uint8_t *variant;              /* per site: variant the schedule implies (sh + off_final) */
    struct ph_oround ring[PH_ORACLE_RING];
    uint64_t prot_last_ns;         /* last /proc/self/maps check */
    int step_pending;              /* the primary's last step (STEP_*) not yet published */
    char *maps_buf;                /* /proc/self/maps, read by the primary */
};

struct ph_engine;
struct ph_counters;

/* A site kind: one entry (kinds/kinds.def, kinds/kinds.c).  NULL hooks:
 * nothing to do (values: v0/v1 random, no targets; offset: 0; emulate:
 * not one instruction, native only). */
struct ph_kind_ops {
    int len;                       /* patchable bytes */
    int branches;                  /* its variants may branch (ph_site_target) */
    int out_of_line;               /* the primary's breakpoint runs it out of line */
    int (*encode)(int variant, uint64_t site_addr, uint64_t target, uint32_t value, uint8_t *out);
    void (*values)(struct ph_engine *e, int i, struct ph_site *s, uint64_t slot, uint64_t tgt[2]);
    uint64_t (*offset)(int i);     /* where in its slot a non-straddling site starts */
    void (*layout)(struct ph_engine *e, int i, struct ph_site *s, uint8_t *buf, uint64_t slot);
    int (*emulate)(const struct ph_patch *p, ucontext_t *uc);
    /* after an emulated breakpoint: 0, or what is wrong (1 RIP, 2 RAX, 3 the
     * pushed return address), *got the value found */
    int (*emulated_check)(const struct ph_site *s, int v, uint64_t tgt, const ucontext_t *uc,
                          uint64_t sp0, uint64_t *got);
};
#define PH_KIND(e, name, ops, desc) extern const struct ph_kind_ops ops;
#include "kinds.def"
#undef PH_KIND
extern const struct ph_kind_ops *const ph_kinds[PH_NKINDS];

/*
 * The steps a seeded bug may replace.  An engine starts with the defaults
 * (the correct protocol's own steps) and its mutant, if any, replaces one
 * (csrc/proto/mutants.c, ph_mutant_apply()): the correct protocols call these and
 * hold no seeded-bug branch of their own.
 */
struct ph_steps {
    int order[3];                  /* the write with SYNC_0, SYNC_1, SYNC_2: INT3, tail, byte 0 */
    void (*poke_tail)(struct ph_engine *e, const struct ph_patch *p);
    /* rfc: a secondary's sync_one() and ack of one observed state below SYNC_DONE */
    void (*ack_state)(struct ph_engine *e, struct ph_counters *c, uint64_t r, int ctx);
    /* rfc: what the sync loop does with each state it sees, before acking (NULL: nothing) */
    void (*sync_loop_state)(struct ph_engine *e, int st, int ctx);
    /* the primary's wait for every ack of the state it published (per protocol) */
    int (*await_acks)(struct ph_engine *e, uint64_t r, uint64_t t_pub);
    /* the primary's wait for handlers' references to a retracted descriptor */
    int (*await_refs)(struct ph_engine *e, struct ph_bp_desc *d, int site, int rc);
};

struct ph_engine {
    struct ph_config cfg;
    struct ph_shared *sh;          /* shared region */
    size_t sh_len;
    int sh_owned;                  /* anonymous mapping we created */
    struct ph_counters *thr;       /* sh + off_threads */
    struct ph_event *trace;        /* sh + off_trace */

    uint8_t *text_x;               /* the view that runs */
    uint8_t *text_w;               /* the view that is written (== text_x unless alias) */
    size_t text_len;
    int memfd;
    struct ph_site *sites;
    uint64_t fn_a, fn_b, fn_c, fn_d; /* call targets: two before the sites, two after */

    struct ph_bp_desc desc[2];     /* alternated per round */
    struct ph_bp_desc *bp_desc;    /* published descriptor or NULL */
    struct ph_patch *patches;      /* PH_MAX_BATCH */
    int32_t *cur_ids;              /* sites in the current round (for NMIs) */
    uint64_t *site_map;            /* a bit per site, zero between rounds (sort_sites) */
    int32_t cur_n;
    uint64_t seq;
    int registered;
    int ndone;
    timer_t timers[PH_MAX_THREADS];
    uint8_t timer_made[PH_MAX_THREADS];
    void *altstacks[PH_MAX_THREADS];
    int nmi_signal;
    struct ph_oracle orc;          /* the observer (check.c) */
    const struct ph_proto *proto;
    struct ph_steps steps;         /* the protocol's steps, one replaced by a mutant */
    uint64_t cpuid_token;          /* CPUID's token, for sync_one() in NMI context */
    uint64_t st_lock __attribute__((aligned(64)));  /* the selftest's lock shared by all */
};

/* Poke steps, named in the publish event's arg. */
enum { STEP_NONE, STEP_INT3, STEP_TAIL, STEP_FIRST };
#define STATUS_RUNNING 0
#define STATUS_DONE 1
#define STATUS_ABORTED 2

/*
 * A protocol behind one small interface (proto_rfc.c, proto_posted.c):
 *   (poke_sync  -- the primary: write one step's bytes, publish state st,
 *                  get every secondary serialized: one skeleton for all,
 *                  core/driver.c, with the steps below plugged in;)
 *   sync_site   -- text_poke_sync_site(): a secondary's sync loop, in thread
 *                  or breakpoint context; min_seq: the round owning the INT3
 *                  a breakpoint hit (0 in thread context);
 *   finish      -- text_poke_sync_finish(): a secondary's loop until DONE;
 *   executor_ack-- an executor's ack of the state it sees (ack style only);
 *   stuck       -- the threads whose ack is missing, for a hang's report.
 */
/* Call a step: the protocol's own one directly where the caller names it
 * (a protocol's loops), a seeded bug's replacement through the pointer.
 * The one poke_sync skeleton (core/driver.c) reaches a protocol's steps
 * through its table: one indirect call per published state, beside the
 * microseconds that state's acks take. */
#define PH_STEP(e, step, own, ...) \
    ((e)->steps.step == (own) ? (own)(__VA_ARGS__) : (e)->steps.step(__VA_ARGS__))

struct ph_proto {
    const char *name;
    /* poke_sync()'s steps (core/driver.c), NULL: the default: before the
     * state is published (its own bookkeeping), the publication
     * (ph_publish), the primary's own sync (ph_sync_core) */
    void (*before_publish)(struct ph_engine *e, uint64_t r);
    uint64_t (*publish)(struct ph_engine *e, uint64_t r, int step);
    void (*self_sync)(struct ph_engine *e);
    void (*sync_site)(struct ph_engine *e, int ctx, uint64_t min_seq);
    int (*finish)(struct ph_engine *e, int ctx);
    void (*executor_ack)(struct ph_engine *e, struct ph_counters *c, uint64_t r);
    int (*stuck)(struct ph_engine *e, int *out, int max);
    /* its default steps that a seeded bug may replace (struct ph_steps) */
    void (*ack_state)(struct ph_engine *e, struct ph_counters *c, uint64_t r, int ctx);
    int (*await_acks)(struct ph_engine *e, uint64_t r, uint64_t t_pub);
    /* What it promises the observer: the round thread i's ack stands for,
     * asked when r is about to be left (0: none) ... */
    uint64_t (*acked)(struct ph_engine *e, int i, uint64_t r);
    /* ... and what its primary does at its own breakpoint on a site under
     * patch (native): write, sync, and return 0 to re-execute, or set the
     * context to resume out of line and return 1 (trap.c). */
    int (*bp_primary)(struct ph_engine *e, const struct ph_patch *p, int site, ucontext_t *uc);
    uint32_t secsyncs;             /* 1 << PH_SECSYNC_*: the secondary syncs it can run with */
};
/* Every protocol's ops (protocols.def), and the table by number (core/engine.c). */
#define PH_PROTOCOL(e, name, ops, desc) extern const struct ph_proto ops;
#include "protocols.def"
#undef PH_PROTOCOL
extern const struct ph_proto *const ph_protocols[PH_NPROTOCOLS];

/* The rfc protocol's step, for the seeded bugs built from it (mutants.c). */
void ph_rfc_sync_and_ack(struct ph_engine *e, struct ph_counters *c, uint64_t r, int ctx);
/* mutants.c: replace the step the engine's mutant breaks (none: no change). */
void ph_mutant_apply(struct ph_engine *e);

/* The one live engine, read by the signal handlers. */
extern struct ph_engine *ph_engine_live;

/* Per-thread identity for handlers: initial-exec TLS is safe in handlers. */
struct ph_self {
    struct ph_engine *e;
    struct ph_counters *c;
    int idx;
    uint64_t rng;
    /* The wait under way at each nesting (thread, breakpoint, NMI): the
     * awaited thread's progress when last seen to change, and since when. */
    uint64_t w_prog[4], w_since[4];
};
extern __thread struct ph_self ph_self __attribute__((tls_model("initial-exec")));

/* shared.c */
void ph_trace(struct ph_engine *e, int type, int ctx, int site, uint64_t round, uint32_t arg);
void ph_trace_at(struct ph_engine *e, uint64_t ts, int type, int ctx, int site, uint64_t round,
                 uint32_t arg);
/* A violation: its reason (PH_R_*, which names the invariant) and values. */
void ph_violation(struct ph_engine *e, int reason, int thread, int site, int ctx,
                  uint64_t round, uint64_t a, uint64_t b, uint64_t c);
void ph_series_add(struct ph_engine *e, int series, uint64_t ns);
void ph_bp_sample(struct ph_engine *e, int thread, uint64_t ns);
uint64_t ph_splitmix(uint64_t *state);
void ph_clock_calibrate(void);
/* Liveness only: a plain increment; a handler's bump may be lost, never torn. */
/* PAUSEs before a wait yields when cfg.spin_pauses is 0 (no shared CPU). */
#define PH_SPIN_PAUSES_DEFAULT 1024u

#define ph_beat(c) ph_store_relaxed(&(c)->heartbeat, ph_load_relaxed(&(c)->heartbeat) + 1)

/* kinds/text.c: the poke methods (pokes.def) */
struct ph_poke_ops {
    int (*create)(struct ph_engine *e);
    int (*open)(struct ph_engine *e, uint64_t lo, uint64_t hi);
    int (*close)(struct ph_engine *e, uint64_t lo, uint64_t hi);
    const char *run_perms;         /* the run view outside a window, or NULL: no promise */
    const char *write_perms;       /* the written view, if apart */
};
#define PH_POKE_METHOD(e, name, ops, desc) extern const struct ph_poke_ops ops;
#include "pokes.def"
#undef PH_POKE_METHOD
extern const struct ph_poke_ops *const ph_pokes[PH_NPOKES];

/* text.c */
int ph_text_create(struct ph_engine *e);
void ph_text_destroy(struct ph_engine *e);
int ph_text_open(struct ph_engine *e, uint64_t lo, uint64_t hi);
int ph_text_close(struct ph_engine *e, uint64_t lo, uint64_t hi);
void ph_text_poke(struct ph_engine *e, uint64_t addr, const uint8_t *src, size_t len);
/* The bytes at a run address, read through the view we write: the same
 * physical bytes, without a load from another virtual alias right after a
 * store (which the CPU cannot forward and may answer with a machine clear). */
static inline const uint8_t *ph_text_bytes(struct ph_engine *e, uint64_t addr)
{
    return e->text_w + (addr - (uint64_t)e->text_x);
}
int ph_site_find(struct ph_engine *e, uint64_t addr);
uint64_t ph_site_ool(struct ph_engine *e, int site, int v);
int ph_site_containing(struct ph_engine *e, uint64_t addr);

/* sync.c: the serializing instructions and membarrier, each recording the
 * evidence that it ran (the observer's, in the thread's counters). */
void ph_sync_core(struct ph_engine *e);
void ph_sync_core_method(struct ph_engine *e, int sync);
long ph_membarrier_core(struct ph_engine *e);
int ph_membarrier_register(struct ph_engine *e);
/* observe/: the one membarrier syscall wrapper (the observer's own). */
long ph_sys_membarrier(struct ph_engine *e, int cmd);

/* observe/: the schedule oracle (the rest of the observer is subscribers) */
int ph_oracle_init(struct ph_engine *e);
void ph_oracle_free(struct ph_engine *e);
int ph_oracle_next(struct ph_engine *e, int n, int *ids);
void ph_record_crash(struct ph_engine *e, int signo, int code, uint64_t addr, uint64_t rip);

/* trap.c: the signal entries (they emit TRAP_* and NMI_*) and handlers */
void ph_bp_handle(int sig, siginfo_t *si, void *uc);
void ph_nmi_handle(int sig, siginfo_t *si, void *uc);
int ph_signals_install(struct ph_engine *e);
void ph_signals_restore(struct ph_engine *e);
void ph_nmi_self(struct ph_engine *e);
void ph_bp_finish_locally(struct ph_engine *e, const struct ph_patch *p, int sync);
int ph_bp_primary_default(struct ph_engine *e, const struct ph_patch *p, int site, ucontext_t *uc);

/* core/tables.c */
uint32_t ph_stress_mask(void);

/* core/driver.c */
void ph_fill_patch(struct ph_engine *e, struct ph_patch *p, int site);
void ph_steps_init(struct ph_engine *e);
void ph_poke_tail(struct ph_engine *e, const struct ph_patch *p);

/* core/primitives.c: what the protocols share */
int ph_current_ctx(void);
int ph_aborted(struct ph_engine *e);
void ph_abort_run(struct ph_engine *e);
/* A wait's step names whom it waits for (a thread, or PH_AWAIT_STATE:
 * whoever publishes the state; PH_AWAIT_ANY; PH_AWAIT_NONE: not the
 * protocol's) and
 * on what (a round), so its longest stall is recorded (ph_counters). */
#define PH_AWAIT_STATE (-1)
#define PH_AWAIT_NONE (-2)
#define PH_AWAIT_ANY (-3)        /* any other thread (a map, a count, references) */
int ph_spin_step(const struct ph_engine *e, uint64_t *spins, uint64_t deadline, int awaited,
                 uint64_t on);
int ph_wait_step(struct ph_engine *e, uint64_t *spins, uint64_t *t0, uint64_t *deadline,
                 uint64_t on);
void ph_account_wait(struct ph_counters *c, uint64_t t0);
uint64_t ph_wait_round_change(struct ph_engine *e, uint64_t prev, int ctx, int *err,
                              uint64_t *waited);
uint64_t ph_publish(struct ph_engine *e, uint64_t r, int step);
void ph_publish_store(struct ph_engine *e, uint64_t r);
uint64_t ph_publish_trace(struct ph_engine *e, uint64_t r, int step);
void ph_busy_wait(uint64_t ns);
void ph_poke_step(struct ph_engine *e, struct ph_patch *vec, int n, int step);
void ph_ack_wait_done(struct ph_engine *e, uint64_t r, uint64_t t0);
int ph_ack_wait_failed(struct ph_engine *e, uint64_t r, int timed_out, int thread, int ctx,
                       int reason, uint64_t b, uint64_t c);
int ph_nmi_work(struct ph_engine *e);

/* stress.c: what a NMI does (the rest of stress is subscribers) */
void ph_st_nmi_body(struct ph_engine *e, int site);

/* The observer's sampling (observe/check.c; SEEN's is tested inline, at
 * the emit, so an unsampled state costs no call). */
/* One round in `every`, the phase moving on every block of `every` rounds:
 * a fixed residue would line up with the aimed stress (round k aims at step
 * k mod 4) and never look at some class of rounds. */
static inline int ph_sampled(uint64_t seq, uint64_t every)
{
    return seq <= 1 || seq % every == (seq / every) % every;   /* the first round: always */
}
#define PH_SEEN_EVERY 16     /* a secondary reads one state back every this many rounds */

static inline int ph_obs_seen_wanted(const struct ph_engine *e, const struct ph_ev *x)
{
    uint64_t seq = PH_ROUND_SEQ(x->r);
    int st = PH_ROUND_STATE(x->r);
    if (!e->orc.active || st > PH_SYNC_DONE || seq == 0)
        return 0;
    return seq <= 1 ||
           ph_sampled(seq + (uint64_t)ph_self.idx * 5 + (uint64_t)st * 4, PH_SEEN_EVERY);
}

/* Emit event `type` (a PH_E_* constant) to its subscribers, in table
 * order, each when its line's condition holds.  Inlined with a constant
 * type, the other lines fold away. */
static inline __attribute__((always_inline)) void ph_emit(struct ph_engine *e, int type,
                                                          struct ph_ev *x)
{
#define PH_ON(ev, fn, when) if (type == PH_E_##ev && (when)) fn(e, x);
#include "subscribers.def"
#undef PH_ON
}

/*
 * Read the published state (acquire: pairs with the release store of the
 * round in ph_publish()).  A value new to this thread in this context is
 * the SEEN event: every read of the state by a protocol, an executor or a
 * wait goes through here, so no loop can skip its subscribers.
 */
static inline uint64_t ph_state_read(struct ph_engine *e, int ctx)
{
    uint64_t r = ph_load_acquire(&e->sh->round);
    struct ph_counters *c = ph_self.c;
    if (c && r != c->ev_seen[ctx & 3]) {
        c->ev_seen[ctx & 3] = r;
        struct ph_ev x;
        x.c = c;
        x.r = r;
        x.ctx = ctx;
        ph_emit(e, PH_E_SEEN, &x);
    }
    return r;
}

/* core/primitives.c: the acks (the word, the RFC's map) */
int ph_ack_word(struct ph_engine *e, struct ph_counters *c, uint64_t r, int ctx, int in_sync_loop);
uint64_t ph_ack_word_acked(struct ph_engine *e, int i, uint64_t r);
int ph_map_test(struct ph_engine *e, int i);
void ph_map_set(struct ph_engine *e, int i);
void ph_map_clear(struct ph_engine *e);
int ph_map_weight(struct ph_engine *e);
void ph_ack_map(struct ph_engine *e, struct ph_counters *c, int ctx, int in_sync_loop);

/* kinds/text.c: run a site once (EXEC_ENTER, the call, EXEC_EXIT): its
 * variant, or -1 (neither). */
int ph_site_run(struct ph_engine *e, int site, int ctx, uint32_t *value);

#endif
