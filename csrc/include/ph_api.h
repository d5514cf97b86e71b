/*
 * ph_api.h -- the C API of pyharness's core.
 *
 * This file is both the C declaration of the API and, verbatim minus its
 * preprocessor lines, cffi's cdef (see csrc/build_ffi.py).  It therefore
 * holds only plain declarations: no attributes, no conditionals.  Layout
 * rules the compiler cannot see from here (cache-line sizes) are enforced by
 * static assertions in ph_internal.h.
 *
 * Every function that can fail returns 0 or -errno (or a negative PH_E_*
 * code below) and never prints.  Python maps the codes to exceptions in
 * exactly one place (pyharness/errors.py).
 */

#define PH_ABI_VERSION 20

enum {
    PH_MAX_THREADS = 1024,      /* participants (threads), one ack word each */
    PH_MAX_BATCH = 1024,        /* sites per poke_sync round */
    PH_MAX_VIOLATIONS = 256,    /* recorded in full; more are only counted */
    PH_MAX_PER_INVARIANT = 24,  /* so one flood cannot hide another invariant */
    PH_SAMPLES = 65536,         /* per-site and per-state sample rings */
    PH_BP_SAMPLES = 4096,       /* per-thread breakpoint handler samples */
    PH_SITE_MAX_LEN = 16,       /* longest patchable region */
    PH_EXIT_RECURSION = 97,     /* worker exit code after a recursive breakpoint */
    PH_EXIT_UNRESOLVED = 98,    /* worker exit code after an INT3 nobody resolves */
    PH_TRAP_BOUND = 4,          /* traps one execution may take (1, plus late re-traps) */
    PH_TRAP_HARD = 65536,       /* ... past which the worker ends, with a crash record */
    PH_ORACLE_RING = 4          /* rounds the schedule oracle keeps for late readers */
};

/* Patch states, in protocol order (the RFC's PATCH_SYNC_0 .. PATCH_DONE). */
enum ph_state {
    PH_SYNC_0 = 0,      /* INT3 written over byte 0 */
    PH_SYNC_1 = 1,      /* tail (bytes 1..len-1) written */
    PH_SYNC_2 = 2,      /* new byte 0 written */
    PH_SYNC_DONE = 3,   /* site finished; acked only in thread context */
    PH_DONE = 4         /* all sites finished */
};

/* Site kinds: one line each in kinds/kinds.def. */
enum ph_kind {
#define PH_KIND(e, name, ops, desc) PH_KIND_##e,
#include "kinds.def"
#undef PH_KIND
    PH_NKINDS
};

/* How the text is written: kinds/pokes.def. */
enum ph_poke {
#define PH_POKE_METHOD(e, name, ops, desc) PH_POKE_##e,
#include "pokes.def"
#undef PH_POKE_METHOD
    PH_NPOKES
};
/* The serializing instruction: sync/sync.def. */
enum ph_sync {
#define PH_SYNC_METHOD(e, name, ops, desc) PH_SYNC_##e,
#include "sync.def"
#undef PH_SYNC_METHOD
    PH_NSYNCS
};
enum ph_bp { PH_BP_NATIVE = 0, PH_BP_EMULATE = 1 };

/* How secondaries are made to serialize after each poke. */
enum ph_secsync {
    PH_SECSYNC_ACK = 0,         /* the RFC: publish a state, wait for acks */
    PH_SECSYNC_MEMBARRIER = 1   /* upstream: membarrier(PRIVATE_EXPEDITED_SYNC_CORE) */
};

/* What non-primary threads do while the primary patches. */
enum ph_role {
    PH_ROLE_PRIMARY = 0,
    PH_ROLE_SECONDARY = 1,  /* parked in the finish loop (stop_machine) */
    PH_ROLE_EXECUTOR = 2    /* keeps executing sites at full speed */
};

/* Deliberately broken protocols, to prove the checker catches them:
 * proto/mutants.def. */
enum ph_mutant {
#define PH_MUTANT(e, name, apply, desc) PH_MUT_##e,
#include "mutants.def"
#undef PH_MUTANT
    PH_NMUTANTS
};

/* Invariants: one line each in invariants.def (their names and descriptions
 * too: ph_table_name(PH_TABLE_INVARIANT, i)).  build_ffi.py
 * expands the #include for cffi's cdef. */
enum ph_invariant {
#define PH_INVARIANT(e, name, desc) PH_INV_##e,
#define PH_REASON(inv, e, name, text)
#include "invariants.def"
#undef PH_INVARIANT
#undef PH_REASON
    PH_NINVARIANTS
};

/* What exactly a violation found (invariants.def's PH_REASON lines, each
 * under one invariant): recorded with it, with its values a, b, c. */
enum ph_reason {
    PH_R_NONE = 0,
#define PH_INVARIANT(e, name, desc)
#define PH_REASON(inv, e, name, text) PH_R_##e,
#include "invariants.def"
#undef PH_INVARIANT
#undef PH_REASON
    PH_NREASONS
};

/* Which protocol runs: proto/protocols.def (csrc/proto/ behind struct ph_proto). */
enum ph_protocol {
#define PH_PROTOCOL(e, name, ops, desc) PH_PROTO_##e,
#include "protocols.def"
#undef PH_PROTOCOL
    PH_NPROTOCOLS
};

/* The RFC selftest's conditions (patch 21), cfg.stress bits: stress/stress.def. */
enum ph_stress {
#define PH_STRESS(e, bit, name, desc) PH_STRESS_##e = 1 << bit,
#define PH_AIM(e, bit, name, desc)
#include "stress.def"
#undef PH_STRESS
#undef PH_AIM
};

/* Aimed stress (cfg.aim bits): executions and NMIs put into the windows
 * between a round's pokes instead of left to chance (stress/stress.def). */
enum ph_aim {
#define PH_STRESS(e, bit, name, desc)
#define PH_AIM(e, bit, name, desc) PH_AIM_##e = 1 << bit,
#include "stress.def"
#undef PH_STRESS
#undef PH_AIM
};

/* The tables above, by number, for Python (core/tables.c): a name, a
 * description and a code (a bit for stress and aim) per entry. */
enum ph_table {
    PH_TABLE_PROTOCOL = 0, PH_TABLE_KIND = 1, PH_TABLE_POKE = 2, PH_TABLE_SYNC = 3,
    PH_TABLE_MUTANT = 4, PH_TABLE_STRESS = 5, PH_TABLE_AIM = 6, PH_TABLE_INVARIANT = 7,
    PH_TABLE_REASON = 8, PH_TABLE_LSTORE = 9, PH_TABLE_LSYNC = 10, PH_TABLE_LSER = 11,
    PH_TABLE_LMODE = 12, PH_TABLE_LOUTCOME = 13, PH_NTABLES = 14
};

enum ph_ctx { PH_CTX_THREAD = 0, PH_CTX_NMI = 1, PH_CTX_BP = 2, PH_CTX_NMI_BP = 3 };

enum ph_event_type {
    PH_EV_STATE_SEEN = 1, PH_EV_ACK = 2, PH_EV_SYNC = 3, PH_EV_BP_ENTER = 4,
    PH_EV_BP_EXIT = 5, PH_EV_NMI_ENTER = 6, PH_EV_NMI_EXIT = 7,
    PH_EV_PUBLISH = 9,   /* arg: the poke written just before (1 INT3, 2 tail, 3 byte 0) */
    PH_EV_RETRACT = 10, PH_EV_VIOLATION = 11
};

/* Where a thread is, for naming stuck threads. */
enum ph_where {
    PH_WHERE_NONE = 0, PH_WHERE_REGISTERED = 1, PH_WHERE_FINISH_LOOP = 2,
    PH_WHERE_SYNC_LOOP = 3, PH_WHERE_BP = 4, PH_WHERE_NMI = 5, PH_WHERE_POKE = 6,
    PH_WHERE_WAIT_ACKS = 7, PH_WHERE_WAIT_REFS = 8, PH_WHERE_EXECUTING = 9,
    PH_WHERE_VERIFY = 10, PH_WHERE_EXITED = 11, PH_WHERE_SYNC_WAIT = 12,
    PH_WHERE_FINISH_WAIT = 13, PH_WHERE_SYNC_TEST = 14, PH_WHERE_SESSION_WAIT = 15,
    PH_WHERE_LOCK = 16, PH_WHERE_SESSION_ENTRY = 17, PH_WHERE_SESSION_EXIT = 18
};

/* Sample rings kept by the primary. */
enum ph_series {
    PH_SERIES_SITE_NS = 0,       /* per patched site (batch time / batch size) */
    PH_SERIES_ACK_NS_0 = 1,      /* primary's ack wait, SYNC_0 .. SYNC_DONE */
    PH_SERIES_ACK_NS_1 = 2,
    PH_SERIES_ACK_NS_2 = 3,
    PH_SERIES_ACK_NS_DONE = 4,
    PH_SERIES_BATCH_NS = 5,      /* per poke_sync batch (whole) */
    PH_NSERIES = 6
};

struct ph_config {
    int nthreads;          /* participants, primary included */
    int primary;           /* index of the primary thread */
    int nsites;            /* sites laid out */
    int kinds_mask;        /* bit (1 << ph_kind) per kind used */
    int poke;              /* enum ph_poke */
    int sync;              /* enum ph_sync */
    int bp;                /* enum ph_bp */
    int secsync;           /* enum ph_secsync */
    int batch;             /* sites per poke_sync round, 1..PH_MAX_BATCH */
    int mutant;            /* enum ph_mutant */
    int trace_len;         /* events per thread ring: 0 or a power of two */
    int nmi_signal;        /* 0: SIGRTMIN+3 */
    int force_nmi;         /* 1: primary NMIs itself after each INT3 poke;
                              2: secondaries NMI themselves on seeing SYNC_0 */
    uint64_t seed;
    uint64_t deadline_ns;      /* every wait gives up after this */
    uint64_t inject_delay_ns;  /* busy wait added to each poke_sync round */
    uint32_t spin_pauses;      /* PAUSEs before a wait starts to sched_yield();
                                  0: 1024.  Small when threads share a CPU, so a
                                  waiter gives its CPU to the thread it waits on */
    uint32_t aim;              /* enum ph_aim bits */
    int32_t protocol;          /* enum ph_protocol */
    int32_t nmi_mode;          /* 1: the RFC's NMI mode (patch 19): the primary patches,
                                  and each secondary runs its finish loop, inside a NMI */
    uint32_t stress;           /* enum ph_stress bits */
    int32_t nmi_level;         /* NMI handler: 0/1 run the site; 2 also take a lock
                                  shared by all threads; 3 also hold it 1 us */
    int32_t sessions;          /* stop_machine calls in a run; 0 or 1: one */
    int32_t pad1;
};

struct ph_event {
    uint64_t stamp;        /* index + 1, written last: a reader checks it */
    uint64_t ts;
    uint64_t round;
    uint16_t type;
    uint16_t ctx;
    int32_t site;
    uint32_t arg;
    uint32_t pad;
};

/* One recorded violation. */
struct ph_violation {
    int32_t invariant;
    int32_t thread;
    int32_t site;
    int32_t state;
    int32_t ctx;
    int32_t reason;        /* enum ph_reason: what exactly, and what a, b, c are */
    uint64_t round;
    uint64_t ts;
    uint64_t a;            /* the reason's values (its sentence in invariants.def) */
    uint64_t b;
    uint64_t c;
    int32_t naround;       /* events frozen when the violation was recorded: */
    int32_t pad2;
    struct ph_event around[16];  /* the thread's last events, then the primary's */
};

/* A fault (SIGILL/SIGSEGV/SIGBUS) or recursion recorded before the worker dies. */
struct ph_crash {
    int32_t valid;
    int32_t signo;
    int32_t code;
    int32_t thread;
    int32_t site;          /* site containing rip, or -1 */
    int32_t pad;
    uint64_t addr;         /* si_addr */
    uint64_t rip;
    uint64_t round;
    uint64_t ts;
    uint8_t bytes[16];     /* text at rip, when rip is in site text */
};


/* Per-thread counters (one owner thread writes; others only read).  The
 * first cache line holds the ack word, which the primary polls, apart from
 * the counters the owner keeps bumping (no false sharing). */
struct ph_counters {
    uint64_t acked_round;      /* last round acked: the ack word */
    int64_t role;
    int64_t cpu;               /* CPU seen at registration */
    int64_t tid;
    uint64_t pad0[4];
    uint64_t exec[2];          /* site executions returning variant 0 / 1 */
    uint64_t exec_torn;        /* returned neither */
    uint64_t bp_hits;          /* INT3 traps on our sites */
    uint64_t bp_hits_nmi;      /* ... of which in NMI context */
    uint64_t bp_native;        /* resolved by the native path */
    uint64_t bp_emulated;      /* resolved by emulation */
    uint64_t bp_late;          /* trap seen after the patch finished: re-executed */
    uint64_t bp_foreign;       /* passed to the previous SIGTRAP disposition */
    uint64_t bp_depth_max;
    uint64_t acks[4];          /* per state SYNC_0..SYNC_DONE */
    uint64_t acks_bp;          /* ... of which from breakpoint context */
    uint64_t acks_done_in_sync_loop; /* must stay 0 (RFC: SYNC_DONE acked in finish loop) */
    uint64_t sync_calls;       /* sync_one() */
    uint64_t wait_ns;          /* time spent spinning */
    uint64_t nmis;
    uint64_t nmi_execs;        /* site executions in NMI context */
    uint64_t sites_patched;    /* primary */
    uint64_t rounds;           /* primary: poke_sync rounds */
    uint64_t verified;         /* sites checked after DONE */
    uint64_t heartbeat;        /* bumped in every loop: liveness */
    int64_t where;             /* enum ph_where */
    int64_t bp_depth;          /* current breakpoint nesting */
    int64_t nmi_active;
    /* Written only by the observer (check.c, sync.c's instruction
     * wrappers, the signal entry wrappers), never by protocol code. */
    uint64_t sync_round;       /* round seen just before the last serializing
                                  instruction whose token proved it ran */
    uint64_t sync_bad;         /* sync calls whose instruction left no token */
    uint64_t mb_round;         /* round seen before the last membarrier that returned 0 */
    uint64_t mb_calls;         /* membarrier(SYNC_CORE) calls that returned 0 */
    uint64_t traps;            /* SIGTRAPs the kernel delivered for our text */
    uint64_t trap_exec[4];     /* traps within the execution at each nesting depth */
    int64_t exec_depth;        /* nesting of executions (thread, NMI, ...) */
    int64_t in_bp;             /* breakpoint handlers active (entry wrapper's count) */
    int64_t in_nmi;            /* NMI handlers active (entry wrapper's count) */
    uint64_t exec_checked;     /* executions held to the schedule's variant */
    uint64_t bytes_checked;    /* states whose bytes this thread read back */
    uint64_t probes;           /* NMIs sent into our own breakpoint handlers */
    /* Diagnosis and the RFC selftest's stress (protocol side). */
    uint64_t seen_round;       /* the published word this thread last read in a loop */
    int64_t guard;             /* sync-loop execution in progress (recursion guard) */
    int64_t nmi_bp_base;       /* breakpoint depth when the current NMI came in */
    int64_t nmi_work;          /* NMI mode: 1 patch (primary), 2 finish loop (secondary) */
    int64_t nmi_rc;            /* ... and what it returned */
    uint64_t pair_checks;      /* lock/unlock pairs run by this thread's NMIs */
    uint64_t session_in;       /* the session this thread has entered (stop_machine) */
    int64_t where_abort;       /* where and what it had last seen when the run aborted */
    uint64_t seen_abort;
    uint64_t ool_exec[4];      /* breakpoints resolved out of line, per execution depth */
    uint64_t nmi_latch;        /* a neighbour's NMI is pending (a NMI latches, never queues) */
    uint64_t session_out;      /* the sessions this thread has left (seen their DONE) */
    uint64_t ev_seen[4];       /* per context: the last state its SEEN event carried (ph_state_read) */
    uint64_t seen_pending;     /* observer: a sampled state to read back at this thread's ack */
    uint64_t seen_pending_ctx;
    /* The stress as the signal entries saw it arrive (observer), and the
     * breakpoint path's writes held to a sync after them. */
    uint64_t nmi_entered;      /* NMIs the kernel delivered (NMI_ENTER) */
    uint64_t nmi_neighbour;    /* ... of which another thread queued (si_value: the sender) */
    uint64_t bp_thread;        /* breakpoints taken outside any NMI (TRAP_ENTER) */
    uint64_t bp_writes;        /* writes to the text from inside a breakpoint handler */
    uint64_t bp_write_syncs;   /* proven syncs counted at the last such write */
    uint64_t bp_syncs_checked; /* breakpoint handlers that wrote, held to a sync after */
    uint64_t nmi_timer;        /* NMIs the kernel delivered from this thread's timer (SI_TIMER) */
    uint64_t exec_in_window;   /* an executor's runs of a site while a round patched it */
    uint64_t obs_acked;        /* observer: the last round this thread's ACK event carried */
    uint64_t sessions_seen;    /* observer: sessions in which this thread read a state ... */
    uint64_t sessions_done;    /* ... and in which it read their DONE */
    uint64_t obs_session;      /* observer: the session of its last counted state (+1) */
    uint64_t obs_session_done; /* ... and of its last counted DONE (+1) */
    /* Progress (the observer's SEEN, ACK, PUBLISH and STEP_DONE) and the
     * longest stall of this thread's waits: how long the thread it waited
     * for (stall_for; -1: the published state) showed no progress, the
     * wait's `where` and what it waited on (stall_on), when it last grew
     * (stall_end, ph_now_ns).  Written by the shared wait step
     * (ph_spin_step), never by protocol code. */
    uint64_t progress;
    uint64_t stall_ns;
    uint64_t stall_end;
    int64_t stall_for;
    uint64_t stall_on;
    int64_t stall_where;
    uint64_t sync_tried;       /* round seen before the last serializing instruction, proved
                                  or not: its wrapper's, before any subscriber hears of it */
    /* Stress accounting: each aimed NMI as the harness sent it and as the
     * kernel delivered it, and what competed with it (checker.py judges the
     * harness against what the box could deliver).  Index: the aim, 0..2
     * the primary's steps (INT3, tail, first byte), 3..5 a secondary's
     * states SYNC_0..2 (PH_AIM_SLOT_*). */
    uint64_t aim_sent[6];      /* stress: queued to this thread by its aim (the tag in si_value) */
    uint64_t aim_refused[6];   /* stress: ... the kernel refused to queue (EAGAIN: its queue full) */
    uint64_t aim_landed[6];    /* observer: arrived inside the window it was aimed at */
    uint64_t aim_behind[6];    /* observer: arrived after the window closed, another NMI first */
    uint64_t aim_missed[6];    /* observer: arrived outside its window with none before it */
    uint64_t aim_taken[3];     /* observer: an aimed state acked by a handler (another NMI's
                                  breakpoint path) before the thread's own loop reached it */
    uint64_t aim_nmis;         /* stress: nmi_entered when the last aim was queued */
    uint64_t obs_began;        /* observer: the last round this thread began a sync of, in
                                  thread context (SYNC_BEGIN) */
    uint64_t nmi_overrun;      /* observer: timer expirations the kernel merged into one
                                  pending signal (si_overrun) */
    uint64_t nb_chances;       /* stress, as a sender: states new to it (one neighbour NMI each) */
    uint64_t nb_sent;          /* ... queued to the neighbour */
    uint64_t nb_inflight;      /* ... not sent: the neighbour still had one pending (latched) */
    uint64_t nb_stale;         /* ... not sent: latched, yet all it was sent had arrived */
    uint64_t nb_refused;       /* ... the kernel refused to queue */
    uint64_t nb_round;         /* stress: the last state it counted a chance for */
    uint64_t nb_to;            /* as a receiver: neighbour NMIs queued to it (senders add) */
    uint64_t obs_acked_handler; /* observer: the last round a handler (NMI, breakpoint) acked */
    uint64_t nb_busy;          /* stress: this thread is between its latch's test and set (its
                                  own handlers leave the neighbour alone meanwhile) */
    uint64_t nb_held;          /* stress, as a sender: not sent, the neighbour inside a handler
                                  that holds NMIs off by design (a breakpoint, a NMI-mode session) */
    uint64_t exec_in_round;    /* observer: an executor's runs of any site while a round was
                                  below SYNC_DONE (half of them aim at a site under patch) */
    uint64_t aim_taken_nb[3];  /* observer: ... of aim_taken, by a neighbour's NMI */
    uint64_t aim_taken_timer[3]; /* observer: ... by a timer NMI (the rest: other NMIs, traps) */
    uint64_t nmi_from;         /* observer: who sent the NMI being handled (PH_FROM_*) */
    uint64_t pexec_done;       /* stress: the primary's post-SYNC_0 run found its site already
                                  finished (its own breakpoint path did it earlier this round) */
    uint64_t pad2[6];          /* to a multiple of 64 bytes (asserted) */
};

/* Header of the shared region (a memfd both the worker and the parent map). */
struct ph_shared {
    uint64_t magic;
    uint64_t abi;
    uint64_t size;
    int32_t nthreads;
    int32_t nsites;
    int32_t trace_len;
    int32_t primary;
    uint64_t pad_a[3];
    uint64_t round;            /* (seq << 3) | state: the published state */
    uint64_t pad0[7];          /* round has its own cache line */
    /* Read in every spin of every wait (status): nothing here is written
     * per round, or each write would cost every spinning thread a miss. */
    uint64_t stop;             /* set by the parent: finish now */
    uint64_t status;           /* 0 running, 1 done, 2 aborted */
    uint64_t nviolations;      /* total recorded (may exceed the array) */
    uint64_t t_start;
    uint64_t t_end;
    uint64_t stuck_round;      /* the round whose wait for acks timed out, or 0 */
    uint64_t pad1[2];
    /* Written by the primary every round. */
    uint64_t cur_site;         /* site being patched (-1 none), for NMIs */
    uint64_t desc_gen;
    uint64_t pad2[6];
    uint64_t sync_ack_map[16];  /* 1024 bits: the RFC's map (proto_posted.c) */
    uint64_t inv_count[32];     /* every violation counted, per invariant */
    /* The observer's own record (check.c). */
    uint64_t oracle_rounds;     /* rounds the schedule issued */
    uint64_t flips_scheduled;   /* site flips the schedule issued */
    uint64_t flips_checked;     /* ... read back at SYNC_DONE (all of a round, or
                                   DONE_SITES of a larger one) */
    uint64_t flips_observed;    /* ... of which showed the new variant */
    uint64_t prot_checks;       /* /proc/self/maps reads of the text's protection */
    uint64_t mb_registrations;  /* MEMBARRIER_CMD_GET_REGISTRATIONS at start (membarrier runs) */
    uint64_t mb_checked;        /* 1: the kernel answered it; 0: not checked (before 6.3) */
    uint64_t pad3[1];           /* the five above are written every round: apart from
                                   sync_token_expect, which every sync call reads */
    uint64_t sync_cost_ns;      /* per call, measured at engine start ... */
    uint64_t plain_cost_ns;     /* ... against a plain call of the same shape */
    uint64_t sync_token;        /* what the instruction returned at start */
    uint64_t sync_token_expect; /* what it must return (CPUID: the vendor, read apart) */
    uint64_t session;           /* stop_machine calls begun */
    uint64_t final_session;     /* set before the last session's DONE */
    uint64_t num_acks;          /* the RFC's num_acks: every participant, primary included */
    uint64_t abort_round;       /* the published state when the run aborted (0: it did not) */
    uint64_t abort_map[16];     /* the RFC's ack map then */
    struct ph_crash crash;
    struct ph_violation violations[256];
    uint64_t series_count[6];
    uint64_t off_threads;      /* offset of struct ph_counters[nthreads] */
    uint64_t off_trace;        /* offset of per-thread trace rings */
    uint64_t off_series;       /* offset of uint32_t[PH_NSERIES][PH_SAMPLES] */
    uint64_t off_bp_samples;   /* offset of uint32_t[nthreads][PH_BP_SAMPLES] */
    uint64_t off_final;        /* offset of uint8_t[nsites]: the schedule's variant */
};

struct ph_engine;

/* Shared region ------------------------------------------------------- */
uint64_t ph_shared_size(const struct ph_config *cfg);
int ph_shared_check(const void *base, uint64_t len);
struct ph_counters *ph_shared_counters(void *base, int thread);
int ph_trace_read(const void *base, int thread, struct ph_event *out, int max);
uint64_t ph_series_read(const void *base, int series, uint32_t *out, uint64_t max);
uint64_t ph_bp_samples_read(const void *base, int thread, uint32_t *out, uint64_t max);
uint64_t ph_shared_stop(void *base);

/* Machine ------------------------------------------------------------- */
int ph_cpu_has_serialize(void);
int ph_membarrier_sync_core_supported(void);
int ph_sync_method_available(int sync);
void ph_sync_one(int sync);
int ph_set_mdwe(void);
uint64_t ph_now_ns(void);
uint64_t ph_sync_token(int sync);
const char *ph_build_compiler(void);
const char *ph_build_flags(void);
const char *ph_build_commit(void);
int ph_table_size(int table);                   /* entries, or -EINVAL */
const char *ph_table_name(int table, int i);    /* NULL outside the table */
const char *ph_table_description(int table, int i);
int64_t ph_table_code(int table, int i);        /* the enum's value (a bit for stress, aim) */
int ph_reason_invariant(int reason);            /* the invariant a reason belongs to, or -1 */
uint64_t ph_sync_token_expect(int sync);

/* Encodings (pure; for tests) ------------------------------------------ */
int ph_encode(int kind, int variant, uint64_t site_addr, uint64_t target_addr,
              uint32_t value, uint8_t *out);
int ph_site_len(int kind);
int ph_kind_emulable(int kind);     /* one instruction: a breakpoint can emulate it */

/* Engine -------------------------------------------------------------- */
int ph_engine_create(const struct ph_config *cfg, int shm_fd, struct ph_engine **out);
void ph_engine_destroy(struct ph_engine *e);
void *ph_engine_shared(struct ph_engine *e);
int ph_site_kind(struct ph_engine *e, int site);
uint64_t ph_site_addr(struct ph_engine *e, int site);
int ph_site_straddles(struct ph_engine *e, int site);
int ph_site_variant(struct ph_engine *e, int site);
uint32_t ph_site_value(struct ph_engine *e, int site, int variant);
uint64_t ph_site_target(struct ph_engine *e, int site, int variant);
int ph_site_exec(struct ph_engine *e, int site, uint32_t *value);

/* Threads: each participant registers itself, pinned, then runs its role. */
int ph_thread_register(struct ph_engine *e, int thread, int role);
void ph_thread_unregister(struct ph_engine *e, int thread);
int ph_wait_registered(struct ph_engine *e);
int ph_nmi_arm(struct ph_engine *e, int thread, uint64_t period_ns, uint64_t first_ns);
int ph_primary_run(struct ph_engine *e, int64_t nsites, uint64_t until_ns);
int ph_secondary_run(struct ph_engine *e);
int ph_executor_run(struct ph_engine *e);
int ph_verify_run(struct ph_engine *e);
int ph_stuck_threads(struct ph_engine *e, int *out, int max);

/* Test hooks ---------------------------------------------------------- */
int ph_test_foreign_int3(void);
int ph_test_trap_site(struct ph_engine *e, int site, uint32_t *value);

/* Benchmarks (csrc/bench/bench.c): timed loops in C; each returns 0 or -errno
 * and stores the total nanoseconds of `iters` operations in *ns. */
int ph_bench_sync(int sync, uint64_t iters, uint64_t *ns);
int ph_bench_membarrier(uint64_t iters, uint64_t *ns);
int ph_bench_mprotect(uint64_t iters, uint64_t *ns);
int ph_bench_alias_write(uint64_t iters, uint64_t *ns);
int ph_bench_poke(struct ph_engine *e, uint64_t iters, uint64_t *ns);
int ph_bench_trap(struct ph_engine *e, uint64_t iters, uint64_t *ns);
int ph_bench_pingpong(int role, uint64_t iters, uint64_t *ns);
void ph_bench_pingpong_reset(void);
int ph_bench_handoff(int role, int nfollowers, int sync, uint64_t iters, int chunks,
                     uint64_t *ns);
void ph_bench_handoff_reset(void);
void ph_bench_set_spin_pauses(uint32_t pauses);
void ph_bench_spin(uint64_t token);
void ph_bench_spin_stop(uint64_t token);

/* Litmus (csrc/litmus/): one cross-modifying-code test at a time, on a
 * region of its own (a memfd mapped twice: the executing view, RWX where
 * the kernel allows it, and a RW alias), in a worker process of its own,
 * so that a wild jump or a fault is an outcome, never pyharness's crash.
 * The tables of stores, syncs, executor sides and outcomes are
 * csrc/litmus/*.def; pyharness/litmus/ names them. */
#define PH_LIT_MAX_LEN 16
#define PH_LIT_MAX_STEPS 8
#define PH_LIT_MAX_EXEC 64
/* PH_LIT_NOUT: PH_LIT_NOUTCOMES, for the arrays below (asserted in tables.c) */
#define PH_LIT_NOUT 10
#define PH_LIT_MAGIC 0x70686c69746d7573ULL
enum ph_lit_outcome {
#define PH_LOUTCOME(e, name, desc) PH_LO_##e,
#include "outcomes.def"
#undef PH_LOUTCOME
    PH_LIT_NOUTCOMES
};
enum ph_lit_store {
#define PH_LSTORE(e, name, desc) PH_LST_##e,
#include "stores.def"
#undef PH_LSTORE
    PH_LIT_NSTORES
};
enum ph_lit_sync {
#define PH_LSYNC(e, name, desc) PH_LSY_##e,
#include "syncs.def"
#undef PH_LSYNC
    PH_LIT_NSYNCS
};
enum ph_lit_ser {
#define PH_LSER(e, name, desc) PH_LSER_##e,
#include "serializers.def"
#undef PH_LSER
    PH_LIT_NSERS
};
enum ph_lit_mode {
#define PH_LMODE(e, name, desc) PH_LMODE_##e,
#include "sides.def"
#undef PH_LMODE
    PH_LIT_NMODES
};

struct ph_lit_step {
    int32_t store;                 /* enum ph_lit_store */
    int32_t sync;                  /* enum ph_lit_sync, after the store */
    int32_t off, len;              /* the bytes [off, off+len) of the site */
    int32_t literal;               /* 1: write lit[]; 0: the target variant's bytes there */
    int32_t direct;                /* 1: through the executing view (RWX); 0: the RW alias */
    uint8_t lit[PH_LIT_MAX_LEN];
    int8_t order[PH_LIT_MAX_LEN];  /* PH_LST_BYTES: the order of the byte stores */
};

struct ph_lit_test {
    uint64_t site_off;             /* the site's offset in the region */
    int32_t site_len, nsteps;
    int32_t entry;                 /* where in the site a run begins (the bytes before: padding) */
    uint8_t variant[2][PH_LIT_MAX_LEN];
    uint32_t value[2];             /* what each variant returns (eax) */
    uint64_t stub_off[2];          /* targets the variants call or jump to (0: none) */
    uint8_t stub[2][PH_LIT_MAX_LEN];
    struct ph_lit_step steps[PH_LIT_MAX_STEPS];
    int32_t mode, ser;             /* the executor's side */
    int32_t int3_handler;          /* a SIGTRAP at the site's INT3 waits for the byte and re-executes */
    int32_t writer_cpu, nexec;
    int32_t exec_cpu[PH_LIT_MAX_EXEC];
    uint64_t duration_ns, stuck_ns, floor_ns;
};

/* Written by the worker into a region the parent maps too, so that what
 * was counted survives the worker's death. */
struct ph_lit_result {
    uint64_t magic, done, trials, elapsed_ns;
    uint64_t counts[2][PH_LIT_NOUT];  /* [0]: executions that raced no write, [1]: that did */
    uint64_t traps_handled, stale_int3, stuck_sent;
    uint64_t first_signo, first_rip, first_value;
    uint8_t first_bytes[PH_LIT_MAX_LEN];
    uint64_t floor_trials, floor_elapsed_ns, floor_torn;
    int64_t error;                 /* -errno of a setup step that failed */
};

int ph_lit_setup(uint64_t size, int rwx, uint64_t *xbase);  /* 0 or -errno */
int ph_lit_run(const struct ph_lit_test *t, struct ph_lit_result *r);

/* The uprobe target (csrc/kernel/uprobe.c): file-backed sites the kernel
 * probes, run with every register, the flags and the red zone held to a
 * pattern; a sampler of their bytes. */
#define PH_UP_NSITES 2
struct ph_up_stats {
    uint64_t runs[PH_UP_NSITES];
    uint64_t bad[PH_UP_NSITES];
    uint64_t first_site, first_what;   /* what: 0..14 a register (rax rbx rcx rdx rsi rdi rbp r8..r15), 16 rsp, 17 flags, 18 the red zone */
    uint64_t first_got, first_want;
    int64_t first_off;                 /* the red zone: the first word that changed, from %rsp (-128..-8) */
};
struct ph_up_state {
    int32_t site;
    uint8_t before[8], after[8];
    uint64_t at_ns, lasted_ns;         /* when it changed; how long the state before lasted */
};
int ph_up_setup(const char *path, const uint64_t *site_off, uint64_t *code);
int ph_up_exec(uint64_t ns, uint64_t seed, struct ph_up_stats *st);
int ph_up_sample(uint64_t ns, struct ph_up_state *out, int max, int *n);
