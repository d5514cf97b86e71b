#!/usr/bin/env python3
"""Regenerate tests/mutants/*.diff from the source-level bugs listed here.

    scripts/make_mutants.py [ROOT]       # ROOT: the checkout (default: this one)

Each mutant is (name, the real bug it models, scenarios, extra flags,
expected invariants, a file hint, the code as it is, the code with the bug,
[equivalent: why no x86 execution can tell it apart]).  The snippet is
looked up in csrc/**/*.[ch] and *.def (it must occur exactly once; where two protocols share
a line, csrc/proto/rfc.c is meant), so a refactor that moves code only needs this
script run again -- tests/test_observer.py fails when a patch stops
applying.  A snippet that no longer matches is an error (exit 1): the bug
must be rewritten against the new code, not dropped.
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
M = []
def mut(name, models, scenario, flags, expect, file, old, new, equivalent=None, more=()):
    M.append(dict(name=name, models=models, scenario=scenario, flags=flags, expect=expect,
                  file=file, old=old, new=new, equivalent=equivalent, more=more))

mut("sync-cpuid-compiled-out", "a build in which the serializing instruction was compiled out "
    "(its asm behind a config macro that this build never defines): nothing serializes, every "
    "counter still says it did", "rfc-native", "--sync cpuid", "sync-in-build,serialized",
    "csrc/sync/sync.c",
    '''    unsigned a = 0, b, c = 0, d;
    __asm__ __volatile__("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d) : : "memory");
    return b;''',
    '''    unsigned a = 0, b = 0, c = 0, d;
#ifdef PH_CONFIG_SYNC_CPUID
    __asm__ __volatile__("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d) : : "memory");
#endif
    (void)a; (void)c; (void)d;
    return b;''')
mut("sync-iret-frame-popped", "IRET-to-self 'optimized' into popping its own frame (add $40,%rsp): "
    "the same stack, no serialization", "rfc-native", "--sync iret --poke alias",
    "sync-in-build,serialized", "csrc/sync/sync.c",
    '''        "iretq\\n"
        "1:\\n\\t"''',
    '''        "add $40, %%rsp\\n"
        "1:\\n\\t"''')
mut("secondary-sync-only-in-handler", "a secondary serializes only in breakpoint context, on the "
    "theory that thread context never ran the old bytes", "rfc-native", "", "serialized",
    "csrc/proto/rfc.c",
    '''        return;                     /* a state already acked is not acked again */
    ph_sync_core(e);''',
    '''        return;                     /* a state already acked is not acked again */
    if (ctx != PH_CTX_THREAD)
        ph_sync_core(e);''')
mut("ack-before-sync", "a secondary acks the state before it serializes (two lines swapped): the "
    "primary may move on while this CPU can still run stale bytes", "rfc-native", "", "serialized",
    "csrc/proto/rfc.c",
    '''    ph_sync_core(e);
    if (ctx != PH_CTX_THREAD)
        ph_trace(e, PH_EV_SYNC, ctx, -1, r, 0);
    ph_ack_word(e, c, r, ctx, 1);''',
    '''    ph_ack_word(e, c, r, ctx, 1);
    ph_sync_core(e);
    if (ctx != PH_CTX_THREAD)
        ph_trace(e, PH_EV_SYNC, ctx, -1, r, 0);''')
mut("publish-before-poke", "the primary publishes a state before it writes that state's bytes "
    "(the poke moved below the publish)", "rfc-native", "", "state-bytes", "csrc/core/driver.c",
    '''    ph_poke_step(e, vec, n, step);
    if (e->cfg.inject_delay_ns)
        ph_busy_wait(e->cfg.inject_delay_ns);''',
    '''    if (e->cfg.inject_delay_ns)
        ph_busy_wait(e->cfg.inject_delay_ns);''',
    more=[('''    uint64_t t_pub = p->publish ? p->publish(e, r, step) : ph_publish(e, r, step);''',
           '''    uint64_t t_pub = p->publish ? p->publish(e, r, step) : ph_publish(e, r, step);
    ph_poke_step(e, vec, n, step);''')])
mut("never-flips", "each round's new bytes are the site's current variant (a lost '!'): the "
    "protocol runs, nothing changes", "rfc-native", "", "state-bytes,int3-guard,schedule",
    "csrc/core/driver.c",
    '''    p->new_variant = !s->variant;''',
    '''    p->new_variant = s->variant;''')
mut("text-left-writable", "the patch window's close restores read+write+exec (copied from open): "
    "text stays writable after its window", "rfc-native", "--poke mprotect", "text-protection",
    "csrc/kinds/text.c",
    '''    if (mprotect((void *)a, b - a, PROT_READ | PROT_EXEC) < 0)
        return -errno;
    return 0;
}''',
    '''    if (mprotect((void *)a, b - a, PROT_READ | PROT_WRITE | PROT_EXEC) < 0)
        return -errno;
    return 0;
}''')
mut("bp-rewind-without-help", "a secondary's breakpoint path rewinds and re-executes without "
    "helping the round along", "rfc-native", "", "trap-bound", "csrc/trap/trap.c",
    '''            e->proto->sync_site(e, ctx, d->seq);''',
    '''            (void)ctx;''')
mut("membarrier-skipped-after-sync2", "upstream style: no membarrier after SYNC_2 ('the first byte "
    "is one store, nobody can see half of it')", "upstream-emulated", "", "membarrier",
    "csrc/core/driver.c",
    '''        if (st < PH_SYNC_DONE && ph_membarrier_core(e) < 0)''',
    '''        if (st < PH_SYNC_2 && ph_membarrier_core(e) < 0)''')
mut("tail-write-includes-byte0", "the tail write starts at byte 0 (an off-by-one in the poke's "
    "offset): byte 0 is rewritten before the tail is synced", "rfc-native", "", "int3-guard",
    "csrc/core/driver.c",
    '''    ph_text_poke(e, p->addr + 1, p->text + 1, (size_t)p->len - 1);
}''',
    '''    ph_text_poke(e, p->addr, p->text, (size_t)p->len);
}''')
mut("primary-bp-byte0-first", "the primary's breakpoint path writes byte 0 before the tail when it "
    "finishes a site locally", "rfc-native", "", "int3-guard", "csrc/trap/trap.c",
    '''    ph_text_poke(e, p->addr + 1, p->text + 1, (size_t)p->len - 1);
    ph_text_poke(e, p->addr, p->text, 1);
    ph_sync_core_method(e, sync);''',
    '''    ph_text_poke(e, p->addr, p->text, 1);
    ph_text_poke(e, p->addr + 1, p->text + 1, (size_t)p->len - 1);
    ph_sync_core_method(e, sync);''')
mut("emulate-rel32-zero-extended", "emulation zero-extends rel32 (a cast through uint32_t): every "
    "backward call or jump goes 4 GiB forward", "upstream-emulated", "", "no-fault",
    "csrc/trap/trap.c",
    '''        g[REG_RIP] = (greg_t)(p->addr + 5 + (int64_t)rel);
        return 0;
    }''',
    '''        g[REG_RIP] = (greg_t)(p->addr + 5 + (uint64_t)(uint32_t)rel);
        return 0;
    }''')
mut("emulate-call-return-short", "emulated CALL pushes the address of its last byte, not of the "
    "next instruction", "upstream-emulated", "", "no-fault,known-variant", "csrc/trap/trap.c",
    '''        *(uint64_t *)sp = p->addr + 5;''',
    '''        *(uint64_t *)sp = p->addr + 4;''')
mut("wait-acks-skips-last", "the primary's wait for acks stops one thread short (nthreads - 1)",
    "rfc-native", "", "acked-before-publish,serialized", "csrc/core/driver.c",
    '''    c->where = PH_WHERE_WAIT_ACKS;
    for (int i = 0; i < e->cfg.nthreads; i++) {''',
    '''    c->where = PH_WHERE_WAIT_ACKS;
    for (int i = 0; i < e->cfg.nthreads - 1; i++) {''')
mut("desc-get-ignores-retract", "a handler takes a reference on a descriptor whose count already "
    "dropped to zero (the retract check removed)", "upstream-emulated", "--batch 64 --threads 8",
    "int3-resolved,trap-bound", "csrc/trap/trap.c",
    '''        if (r == 0)
            return NULL;      /* being retracted: take no new reference */''',
    '''        (void)0;          /* being retracted: take no new reference */''')
mut("no-sync-done-round", "the SYNC_DONE round is dropped ('it writes nothing'): handlers may still "
    "run when the descriptor moves on", "rfc-native", "", "deadline,ack-once", "csrc/core/driver.c",
    '''    if ((rc = poke_sync(e, vec, n, PH_SYNC_DONE, STEP_NONE)))
        goto out;''',
    '''    (void)0;''')
mut("poke-drops-last-byte", "the poke primitive's copy loop stops one byte short", "rfc-native", "",
    "state-bytes,bytes-intended", "csrc/kinds/text.c",
    '''    for (size_t i = 0; i < len; i++)
        dst[i] = src[i];''',
    '''    for (size_t i = 0; i + 1 < len; i++)
        dst[i] = src[i];''')
mut("nmi-not-held-off-in-bp", "the breakpoint handler's signal mask no longer holds the NMI off",
    "rfc-native,upstream-emulated", "", "nmi-held-off", "csrc/trap/trap.c",
    '''        sigaddset(&sa.sa_mask, e->nmi_signal);     /* no NMI during a breakpoint */''',
    '''        (void)0;                                   /* no NMI during a breakpoint */''')
mut("sync-loop-acks-done", "the sync loop's exit test is off by one (> instead of >=): SYNC_DONE is "
    "acked inside the sync loop", "rfc-native", "", "ack-once", "csrc/core/driver.c",
    '''        if (st >= PH_SYNC_DONE)
            break;
        PH_STEP(e, ack_state''',
    '''        if (st > PH_SYNC_DONE)
            break;
        PH_STEP(e, ack_state''')
mut("int3-at-wrong-offset", "the INT3 is written one byte into the site (address arithmetic "
    "slip)", "rfc-native", "", "int3-guard", "csrc/core/driver.c",
    '''                ph_text_poke(e, p->addr, &int3, 1);
            } else if (step == STEP_TAIL) {''',
    '''                ph_text_poke(e, p->addr + 1, &int3, 1);
            } else if (step == STEP_TAIL) {''')
mut("primary-no-self-sync", "the primary does not serialize itself after publishing ('it wrote "
    "the bytes, it knows them')", "rfc-native", "", "serialized", "csrc/core/driver.c",
    '''    if (p->self_sync)
        p->self_sync(e);
    else
        ph_sync_core(e);''',
    '''    (void)p->self_sync;''')
mut("batch-unsorted", "the batch is no longer sorted by address, so the handler's binary search "
    "misses sites", "batch", "", "trap-bound,deadline", "csrc/core/driver.c",
    '''    sort_sites(e, ids, n);      /* the descriptor's vec is address-ordered */''',
    '''    (void)sort_sites;           /* the descriptor's vec is address-ordered */''')
mut("wait-change-relaxed", "the read of the published state (every wait's, ph_state_read) loads "
    "the round relaxed instead of acquire", "rfc-native", "", "",
    "csrc/include/ph_internal.h",
    '''    uint64_t r = ph_load_acquire(&e->sh->round);
    struct ph_counters *c = ph_self.c;
    if (c && r != c->ev_seen[ctx & 3]) {''',
    '''    uint64_t r = ph_load_relaxed(&e->sh->round);
    struct ph_counters *c = ph_self.c;
    if (c && r != c->ev_seen[ctx & 3]) {''',
    equivalent="x86-64 is TSO: an acquire load is a plain MOV, and the loop's load cannot move "
               "across its opaque calls; the compiled objects are byte-identical")
mut("spin-without-pause", "the spin loops' PAUSE replaced by a compiler barrier", "rfc-native", "", "",
    "csrc/core/driver.c",
    '''    if (n <= e->cfg.spin_pauses)
        ph_cpu_relax();''',
    '''    if (n <= e->cfg.spin_pauses)
        __asm__ __volatile__("" : : : "memory");   /* was PAUSE */''',
    equivalent="PAUSE is a hint (power, the SMT sibling, leaving the spin without a memory-order "
               "machine clear): it changes timing, never a value any instruction produces")

mut("bp-rewind-two-bytes", "the native breakpoint path rewinds RIP by two bytes instead of one "
    "(the INT3's length mistaken for a two-byte INT n): execution resumes on the fill byte before "
    "the site", "rfc-native", "", "int3-resolved", "csrc/trap/trap.c",
    '''        uc->uc_mcontext.gregs[REG_RIP] = (greg_t)ip;   /* re-execute the new site */''',
    '''        uc->uc_mcontext.gregs[REG_RIP] = (greg_t)(ip - 1);   /* re-execute the new site */''')

# Issue 16's classes: stress that silently does less, a sync path nobody
# counted, a membarrier of the wrong kind.
mut("aim-primary-misses-window", "the primary's aimed thread-context run lands after byte 0 "
    "instead of right after the INT3 (a step number off by two): every thread-context "
    "breakpoint of the primary disappears and nothing else changes", "rfc-native", "",
    "stress-coverage", "csrc/stress/stress.c",
    '''    else if (aim == 4 && step == 1) {''',
    '''    else if (aim == 4 && step == 3) {''')
mut("nmi-timer-period-x16", "the NMI timer's period taken in the wrong unit (16x too long): "
    "the run claims --nmi-rate and delivers a sixteenth of it", "rfc-native", "",
    "stress-coverage", "csrc/trap/trap.c",
    '''    if (period_ns) {
        if (!first_ns)''',
    '''    if (period_ns) {
        period_ns *= 16;
        if (!first_ns)''')
mut("neighbour-latch-never-reopens", "the NMI latch a neighbour sets is never cleared on "
    "delivery: after its first NMI each thread gets no neighbour NMI again", "rfc-selftest", "",
    "stress-coverage", "csrc/stress/stress.c",
    '''    (void)e;
    ph_store_release(&x->c->nmi_latch, 0);''',
    '''    (void)e;
    (void)x;''')
mut("bp-local-finish-no-sync", "the primary's breakpoint path finishes a site locally and "
    "returns without its sync_one() (the return from the handler 'serializes anyway')",
    "rfc-native", "", "serialized", "csrc/trap/trap.c",
    '''    ph_text_poke(e, p->addr, p->text, 1);
    ph_sync_core_method(e, sync);''',
    '''    ph_text_poke(e, p->addr, p->text, 1);
    (void)sync;''')
mut("membarrier-wrong-kind", "upstream style with the membarrier that orders memory but does not "
    "serialize cores (PRIVATE_EXPEDITED registered and issued for PRIVATE_EXPEDITED_SYNC_CORE): "
    "every call returns 0", "upstream-emulated", "", "membarrier", "csrc/sync/sync.c",
    '''    return ph_sys_membarrier(e, MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE);''',
    '''    return ph_sys_membarrier(e, MEMBARRIER_CMD_PRIVATE_EXPEDITED);''',
    more=[('''    return ph_sys_membarrier(e, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE) < 0 ? -errno : 0;''',
           '''    return ph_sys_membarrier(e, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) < 0 ? -errno : 0;''')])

mut("session-rendezvous-off-by-one", "the stop_machine rendezvous numbers sessions from one too "
    "many after the first: the primary waits at a later session's entry for a session nobody "
    "enters, until the run's stop, which the rendezvous answers by returning as if all were in",
    "rfc-selftest", "", "progress", "csrc/core/driver.c",
    '''        while (ph_load_acquire(leaving ? &e->thr[i].session_out : &e->thr[i].session_in) < k) {''',
    '''        while (ph_load_acquire(leaving ? &e->thr[i].session_out : &e->thr[i].session_in) < k + (k > 1)) {''')

mut("desc-retired-before-refs", "the descriptor is marked retired before the primary waits for its "
    "references (two lines swapped): a handler still holding it resolves its breakpoint from a "
    "descriptor the primary already gave up", "upstream-emulated", "", "int3-resolved",
    "csrc/core/driver.c",
    '''    if (__atomic_fetch_sub(&d->refs, 1, __ATOMIC_ACQ_REL) != 1)
        rc = e->steps.await_refs(e, d, ids[0], rc);
    /* Pairs with the acquire load of retired in the breakpoint handler. */
    ph_store_release(&d->retired, 1);''',
    '''    /* Pairs with the acquire load of retired in the breakpoint handler. */
    ph_store_release(&d->retired, 1);
    if (__atomic_fetch_sub(&d->refs, 1, __ATOMIC_ACQ_REL) != 1)
        rc = e->steps.await_refs(e, d, ids[0], rc);''')
mut("nmi-mode-session-in-thread", "NMI mode's secondary runs its session in thread context and tells "
    "its finish loop it is in NMI context (the NMI hand-off skipped): every check that trusts the "
    "protocol's context flag is satisfied", "rfc-selftest", "", "nmi-held-off",
    "csrc/core/driver.c",
    '''        if (e->cfg.nmi_mode) {
            rc = in_nmi(e, 2);     /* marks the entry inside the NMI (ph_nmi_work) */''',
    '''        if (e->cfg.nmi_mode) {
            ph_store_release(&c->session_in, ph_load_acquire(&e->sh->session) + 1);
            c->nmi_active = 1;
            rc = e->proto->finish(e, PH_CTX_NMI);
            c->nmi_active = 0;''')


mut("step-event-before-writes", "a refactor moves the primary's step event to the top of its "
    "step: the aim it drives now fires before the step's writes, right after the previous "
    "publication, in no window between a poke and its publication", "rfc-native", "",
    "stress-coverage", "csrc/core/primitives.c",
    """        int64_t where = c->where;
        c->where = PH_WHERE_POKE;
        for (int i = 0; i < n; i++) {""",
    """        int64_t where = c->where;
        c->where = PH_WHERE_POKE;
        struct ph_ev x0;
        x0.c = c;
        x0.arg = step;
        ph_emit(e, PH_E_STEP_DONE, &x0);
        for (int i = 0; i < n; i++) {""",
    more=(("""        c->where = where;
        struct ph_ev x;
        x.c = c;
        x.arg = step;
        ph_emit(e, PH_E_STEP_DONE, &x);
    }""", """        c->where = where;
    }"""),))

mut("secondary-aim-after-sync", "the secondary aim's table line subscribes it to the sync event "
    "(after the serializing instruction) instead of the one before it: its NMIs land after the "
    "sync, outside the window between reading a state and serializing it", "rfc-native", "",
    "stress-coverage", "csrc/include/subscribers.def",
    """PH_ON(SYNC_BEGIN, ph_st_aim_secondary, e->cfg.aim & PH_AIM_SECONDARY)""",
    """PH_ON(SYNC, ph_st_aim_secondary, e->cfg.aim & PH_AIM_SECONDARY)""")

# Halving mutants (issue 26): each stress condition delivered at half its
# rate by a harness bug, nothing else changed.  The harness is held to three
# quarters of what the box could deliver, so each must fail stress-coverage.
mut("nmi-timer-period-x2", "the NMI timer's period doubled (a rate taken per two threads): the "
    "run claims --nmi-rate and delivers half of it", "rfc-native", "", "stress-coverage",
    "csrc/trap/trap.c",
    '''    if (period_ns) {
        if (!first_ns)''',
    '''    if (period_ns) {
        period_ns *= 2;
        if (!first_ns)''')
mut("aim-primary-half", "the primary's aimed NMI fires on every other aimed round (a rotation "
    "over eight rounds instead of four)", "rfc-native", "", "stress-coverage",
    "csrc/stress/stress.c",
    '''    if (aim == step)
        aim_nmi(e, x->c, step - 1, e->orc.seq);''',
    '''    if (aim == step && (e->orc.seq & 4))
        aim_nmi(e, x->c, step - 1, e->orc.seq);''')
mut("aim-secondary-half", "a secondary's aimed NMI fires on every other aimed round",
    "rfc-native", "", "stress-coverage", "csrc/stress/stress.c",
    '''    if ((int)(PH_ROUND_SEQ(x->r) & 3) == PH_ROUND_STATE(x->r))''',
    '''    if ((int)(PH_ROUND_SEQ(x->r) & 3) == PH_ROUND_STATE(x->r) && (PH_ROUND_SEQ(x->r) & 4))''')
mut("primary-exec-half", "the primary's aimed thread-context run after its INT3 happens on every "
    "other aimed round", "rfc-native", "", "stress-coverage", "csrc/stress/stress.c",
    '''    else if (aim == 4 && step == 1) {''',
    '''    else if (aim == 4 && step == 1 && (e->orc.seq & 4)) {''')
mut("executor-patched-quarter", "executors run a site under patch a quarter of the time instead "
    "of half (a mask one bit too wide)", "upstream-emulated", "", "stress-coverage",
    "csrc/core/driver.c",
    '''        int site = (n > 0 && (rnd & 1)) ? e->cur_ids[(rnd >> 1) % (uint64_t)n]''',
    '''        int site = (n > 0 && (rnd & 3) == 1) ? e->cur_ids[(rnd >> 1) % (uint64_t)n]''')
mut("neighbour-nmi-half", "a secondary NMIs its neighbour on every other round's state changes "
    "only", "rfc-selftest", "", "stress-coverage", "csrc/stress/stress.c",
    '''    if (tid <= 0)
        return;
    /* What had arrived, read before the latch''',
    '''    if (tid <= 0 || (PH_ROUND_SEQ(x->r) & 1))
        return;
    /* What had arrived, read before the latch''')

out = os.path.join(ROOT, "tests", "mutants")
shutil.rmtree(out, ignore_errors=True)
os.makedirs(out)
missing = []
for i, m in enumerate(M, 1):
    hits = [f for f in sorted(glob.glob(os.path.join(ROOT, "csrc", "**", "*.[ch]"), recursive=True)
                         + glob.glob(os.path.join(ROOT, "csrc", "**", "*.def"), recursive=True))
            if open(f).read().count(m["old"]) == 1]
    if len(hits) > 1:   # the same line in both protocols: the default one is meant
        hits = [h for h in hits if h.endswith(os.path.join("proto", "rfc.c"))]
    if len(hits) != 1:
        missing.append(m["name"])
        print(f"{m['name']}: its snippet matches {len(hits)} files", file=sys.stderr)
        continue
    m["file"] = os.path.relpath(hits[0], ROOT)
    src = open(os.path.join(ROOT, m["file"])).read()
    assert src.count(m["old"]) == 1, (m["name"], src.count(m["old"]))
    tmp = tempfile.mkdtemp()
    a = os.path.join(tmp, "a"); b = os.path.join(tmp, "b")
    os.makedirs(os.path.join(a, os.path.dirname(m["file"]))); os.makedirs(os.path.join(b, os.path.dirname(m["file"])))
    open(os.path.join(a, m["file"]), "w").write(src)
    mutated = src.replace(m["old"], m["new"])
    for o, n in m["more"]:
        assert mutated.count(o) == 1, (m["name"], o)
        mutated = mutated.replace(o, n)
    open(os.path.join(b, m["file"]), "w").write(mutated)
    d = subprocess.run(["diff", "-u", "a/" + m["file"], "b/" + m["file"]], cwd=tmp,
                       capture_output=True, text=True).stdout
    shutil.rmtree(tmp)
    head = [f"# mutant: {m['name']}", f"# models: {m['models']}", f"# scenario: {m['scenario']}"]
    if m["flags"]:
        head.append(f"# flags: {m['flags']}")
    if m["expect"]:
        head.append(f"# expect: {m['expect']}")
    if m["equivalent"]:
        head.append(f"# equivalent: {m['equivalent']}")
    lines = d.splitlines()
    lines = [l.split("\t")[0] if l.startswith(("--- ", "+++ ")) else l for l in lines]
    with open(os.path.join(out, f"{i:02d}-{m['name']}.diff"), "w") as f:
        f.write("\n".join(head + lines) + "\n")
print(len(M) - len(missing), "mutants written to", out)
sys.exit(1 if missing else 0)
