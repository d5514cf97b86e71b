/*
 * engine.c -- the engine's lifecycle: its configuration checked, its shared
 * region, text, observer and signal handlers made and undone; site accessors
 * and test hooks.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <linux/membarrier.h>
#include <unistd.h>
#include "ph_internal.h"

struct ph_engine *ph_engine_live;

const struct ph_proto *const ph_protocols[PH_NPROTOCOLS] = {
#define PH_PROTOCOL(e, name, ops, desc) [PH_PROTO_##e] = &ops,
#include "protocols.def"
#undef PH_PROTOCOL
};
__thread struct ph_self ph_self __attribute__((tls_model("initial-exec"))) = {NULL, NULL, -1, 0};

void ph_shared_layout(struct ph_shared *sh, const struct ph_config *cfg, uint64_t size);

/* ------------------------------------------------------------------ */
/* Engine                                                             */

static int config_check(const struct ph_config *cfg)
{
    if (cfg->nthreads < 1 || cfg->nthreads > PH_MAX_THREADS)
        return -EINVAL;
    if (cfg->primary < 0 || cfg->primary >= cfg->nthreads)
        return -EINVAL;
    if (cfg->nsites < 1 || cfg->nsites > (1 << 22))
        return -EINVAL;
    if (cfg->kinds_mask <= 0 || cfg->kinds_mask >= (1 << PH_NKINDS))
        return -EINVAL;
    if (cfg->poke < 0 || cfg->poke >= PH_NPOKES || cfg->bp < 0 || cfg->bp > PH_BP_EMULATE)
        return -EINVAL;
    if (cfg->secsync < 0 || cfg->secsync > PH_SECSYNC_MEMBARRIER)
        return -EINVAL;
    if (cfg->sync < 0 || cfg->sync >= PH_NSYNCS)
        return -EINVAL;
    if (cfg->batch < 1 || cfg->batch > PH_MAX_BATCH || cfg->batch > cfg->nsites)
        return -EINVAL;
    if (cfg->mutant < 0 || cfg->mutant >= PH_NMUTANTS)
        return -EINVAL;
    if (cfg->protocol < 0 || cfg->protocol >= PH_NPROTOCOLS || cfg->nmi_level < 0 ||
        cfg->nmi_level > 3 || cfg->sessions < 0 || (cfg->stress & ~ph_stress_mask()))
        return -EINVAL;
    /* What the protocol can run with (the posted code: acks only, stop_machine). */
    if (!(ph_protocols[cfg->protocol]->secsyncs & (1u << cfg->secsync)))
        return -EINVAL;
    if ((cfg->stress & PH_STRESS_PAIRED) && (cfg->nsites < 2 || cfg->nsites % 2 ||
                                            (cfg->batch > 1 && cfg->batch % 2)))
        return -EINVAL;     /* pairs need an even number of sites, and whole pairs per round */
    if (cfg->trace_len < 0 || (cfg->trace_len & (cfg->trace_len - 1)) ||
        cfg->trace_len == 1 || cfg->trace_len > (1 << 20))
        return -EINVAL;
    if (cfg->deadline_ns == 0 || cfg->spin_pauses > (1u << 24))
        return -EINVAL;
    for (int k = 0; k < PH_NKINDS; k++)
        if (cfg->bp == PH_BP_EMULATE && (cfg->kinds_mask & (1 << k)) && !ph_kind_emulable(k))
            return -EINVAL;     /* not one instruction (a block): native only */
    if (!ph_sync_method_available(cfg->sync))
        return -EOPNOTSUPP;
    if (cfg->secsync == PH_SECSYNC_MEMBARRIER && !ph_membarrier_sync_core_supported())
        return -ENOSYS;
    return 0;
}

int ph_engine_create(const struct ph_config *cfg, int shm_fd, struct ph_engine **out)
{
    int rc = config_check(cfg);
    if (rc < 0)
        return rc;
    ph_clock_calibrate();
    struct ph_engine *none = NULL, *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    /* One live engine per process: the handlers find it through one pointer. */
    if (!__atomic_compare_exchange_n(&ph_engine_live, &none, (struct ph_engine *)1, 0,
                                     __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
        free(e);
        return -EBUSY;
    }
    e->cfg = *cfg;
    e->proto = ph_protocols[cfg->protocol];
    ph_steps_init(e);
    e->cpuid_token = ph_sync_token_expect(PH_SYNC_CPUID);
    if (!e->cfg.spin_pauses)
        e->cfg.spin_pauses = PH_SPIN_PAUSES_DEFAULT;
    e->memfd = -1;
    e->nmi_signal = cfg->nmi_signal ? cfg->nmi_signal : SIGRTMIN + 3;
    uint64_t size = ph_shared_size(cfg);
    if (shm_fd >= 0) {
        struct stat st;
        if (fstat(shm_fd, &st) < 0) { rc = -errno; goto fail; }
        if ((uint64_t)st.st_size < size && ftruncate(shm_fd, (off_t)size) < 0) { rc = -errno; goto fail; }
        e->sh = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, shm_fd, 0);
    } else {
        e->sh = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    }
    if (e->sh == MAP_FAILED) { e->sh = NULL; rc = -errno; goto fail; }
    e->sh_len = size;
    ph_shared_layout(e->sh, cfg, size);
    e->thr = (struct ph_counters *)((char *)e->sh + e->sh->off_threads);
    e->trace = (struct ph_event *)((char *)e->sh + e->sh->off_trace);
    for (int i = 0; i < cfg->nthreads; i++)
        e->thr[i].role = i == cfg->primary ? PH_ROLE_PRIMARY : -1;
    e->sh->num_acks = (uint64_t)cfg->nthreads;   /* every participant, primary included */

    e->sites = calloc((size_t)cfg->nsites, sizeof(*e->sites));
    e->patches = calloc(2 * PH_MAX_BATCH, sizeof(*e->patches));
    e->cur_ids = calloc(PH_MAX_BATCH, sizeof(int32_t));
    e->site_map = calloc(((size_t)cfg->nsites + 63) / 64, sizeof(uint64_t));
    if (!e->sites || !e->patches || !e->cur_ids || !e->site_map) { rc = -ENOMEM; goto fail; }
    if ((rc = ph_oracle_init(e)) < 0)
        goto fail;
    if ((rc = ph_text_create(e)) < 0)
        goto fail;
    if (cfg->secsync == PH_SECSYNC_MEMBARRIER && (rc = ph_membarrier_register(e)) < 0)
        goto fail;
    if ((rc = ph_signals_install(e)) < 0) {
        ph_signals_restore(e);
        goto fail;
    }
    /* Pairs with the acquire loads of ph_engine_live in the handlers. */
    ph_store_release(&ph_engine_live, e);
    struct ph_ev x;         /* its subscriber: the serializing instruction is in this build */
    x.c = NULL;
    ph_emit(e, PH_E_ENGINE_READY, &x);
    *out = e;
    return 0;
fail:
    ph_text_destroy(e);
    ph_oracle_free(e);
    if (e->sh)
        munmap(e->sh, e->sh_len);
    free(e->sites);
    free(e->patches);
    free(e->cur_ids);
    free(e->site_map);
    free(e);
    ph_store_release(&ph_engine_live, NULL);   /* pairs: the handlers' acquire */
    return rc;
}

void ph_engine_destroy(struct ph_engine *e)
{
    if (!e)
        return;
    for (int i = 0; i < e->cfg.nthreads; i++)
        if (e->timer_made[i]) {
            timer_delete(e->timers[i]);
            e->timer_made[i] = 0;
        }
    ph_signals_restore(e);
    ph_store_release(&ph_engine_live, NULL);   /* pairs: the handlers' acquire */
    ph_text_destroy(e);
    ph_oracle_free(e);
    munmap(e->sh, e->sh_len);
    free(e->sites);
    free(e->patches);
    free(e->cur_ids);
    free(e->site_map);
    free(e);
}

void *ph_engine_shared(struct ph_engine *e) { return e->sh; }
int ph_site_kind(struct ph_engine *e, int s) { return s >= 0 && s < e->cfg.nsites ? e->sites[s].kind : -EINVAL; }
uint64_t ph_site_addr(struct ph_engine *e, int s) { return s >= 0 && s < e->cfg.nsites ? e->sites[s].addr : 0; }
int ph_site_straddles(struct ph_engine *e, int s)
{
    if (s < 0 || s >= e->cfg.nsites)
        return -EINVAL;
    uint64_t a = e->sites[s].addr;
    return (a / PH_CACHELINE) != ((a + (uint64_t)e->sites[s].len - 1) / PH_CACHELINE);
}
int ph_site_variant(struct ph_engine *e, int s) { return s >= 0 && s < e->cfg.nsites ? e->sites[s].variant : -EINVAL; }
uint32_t ph_site_value(struct ph_engine *e, int s, int v)
{
    return s >= 0 && s < e->cfg.nsites && (v == 0 || v == 1) ? e->sites[s].value[v] : 0;
}

int ph_site_exec(struct ph_engine *e, int site, uint32_t *value)
{
    if (site < 0 || site >= e->cfg.nsites)
        return -EINVAL;
    int v = ph_site_run(e, site, ph_current_ctx(), value);
    return v < 0 ? -EPROTO : v;
}

/*
 * Test hook: one breakpoint round trip through the real SIGTRAP handler.
 * The caller is the registered primary; nothing else runs.  INT3 is written
 * over the site, the descriptor published, and the site called: the
 * handler finishes the site (native) or emulates the new instruction.
 */
int ph_test_trap_site(struct ph_engine *e, int site, uint32_t *value)
{
    if (site < 0 || site >= e->cfg.nsites)
        return -EINVAL;
    if (!ph_self.c || ph_self.idx != e->cfg.primary)
        return -EPERM;
    e->seq++;
    struct ph_bp_desc *d = &e->desc[e->seq & 1];
    struct ph_patch *p = e->patches + (e->seq & 1) * PH_MAX_BATCH;
    struct ph_site *s = &e->sites[site];
    static const uint8_t int3 = PH_INT3;
    /* A test of the handler alone, outside any run: the observer, active
     * only between RUN_START and RUN_END, judges nothing here. */
    ph_fill_patch(e, p, site);
    int rc = ph_text_open(e, p->addr, p->addr + (uint64_t)p->len);
    if (rc < 0)
        return rc;
    d->vec = p;
    d->nr = 1;
    d->native = e->cfg.bp == PH_BP_NATIVE;
    ph_store_relaxed(&d->retired, 0);
    ph_store_release(&d->refs, 1);      /* pairs: desc_try_get() */
    ph_store_release(&e->bp_desc, d);   /* pairs: desc_try_get() */
    ph_text_poke(e, p->addr, &int3, 1);
    int got = ph_site_run(e, site, PH_CTX_THREAD, value);
    /* Emulation leaves the text alone: finish it here. */
    ph_text_poke(e, p->addr + 1, p->text + 1, (size_t)p->len - 1);
    ph_text_poke(e, p->addr, p->text, 1);
    ph_store_release(&e->bp_desc, NULL);            /* pairs: desc_try_get() */
    __atomic_fetch_sub(&d->refs, 1, __ATOMIC_ACQ_REL);
    ph_store_release(&d->retired, 1);               /* pairs: the handler */
    rc = ph_text_close(e, p->addr, p->addr + (uint64_t)p->len);
    s->variant = p->new_variant;
    if (rc < 0)
        return rc;
    return got < 0 ? -EPROTO : got;
}

