"""pytest-benchmark suite: explicit rounds (pedantic), pinned threads.

Run apart from the unit tests (see tests/bench/README.md):

    PYHARNESS_BENCH=1 pytest tests/bench --benchmark-autosave

A protocol benchmark's unit is one run of SITES sites (engine created,
threads started, sites patched, threads joined); the per-site figure from
the C series is in extra_info so autosaved results carry it.  The last test
checks `pyharness compare` end to end on real measurements."""
import statistics

import pytest

from pyharness import Config, Engine
from pyharness._ffi import ffi, lib
from pyharness.cpus import usable_cpus
from pyharness.engine import SYNCS, available_syncs

pytestmark = pytest.mark.bench
SITES = 2000


def cpus2():
    c = usable_cpus()
    return c[:2] if len(c) >= 2 else [c[0], c[0]]


def _run(cfg, nsites, out):
    with Engine(cfg) as e:
        o = e.run(sites=nsites, verify=False)
        assert o.status == "complete" and o.view.violations() == []
        out.append(statistics.median(o.view.series("site_ns")))


@pytest.mark.parametrize("sync", available_syncs())
@pytest.mark.parametrize("poke", ["mprotect", "alias", "rwx"])
def test_rfc_protocol(benchmark, poke, sync):
    per_site = []
    cfg = Config(cpus=cpus2(), sites=SITES, poke=poke, sync=sync, trace_len=0)
    benchmark.pedantic(_run, args=(cfg, SITES, per_site), rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["per_site_ns_median"] = statistics.median(per_site)


@pytest.mark.parametrize("poke", ["alias", "rwx"])
def test_upstream_membarrier(benchmark, poke):
    if not lib.ph_membarrier_sync_core_supported():
        pytest.skip("membarrier SYNC_CORE not supported by this kernel")
    per_site = []
    cfg = Config(cpus=cpus2(), sites=SITES, poke=poke, sync="iret", bp="emulate",
                 secondary_sync="membarrier", kinds=("movret", "call", "jmpnop"), trace_len=0)
    benchmark.pedantic(_run, args=(cfg, 500, per_site), rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["per_site_ns_median"] = statistics.median(per_site)


@pytest.mark.parametrize("batch", [1, 16, 256])
def test_batch(benchmark, batch):
    per_site = []
    n = max(2048, batch * 8)
    cfg = Config(cpus=cpus2(), sites=n, poke="alias", sync="cpuid", batch=batch, trace_len=0)
    benchmark.pedantic(_run, args=(cfg, n, per_site), rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["per_site_ns_median"] = statistics.median(per_site)


@pytest.mark.parametrize("sync", available_syncs())
def test_sync_one(benchmark, sync):
    """1000 sync_one() per round, timed by pytest-benchmark around one C call."""
    ns = ffi.new("uint64_t *")
    benchmark.pedantic(lambda: lib.ph_bench_sync(SYNCS[sync], 1000, ns), rounds=20,
                       iterations=1, warmup_rounds=2)


def test_state_handoff(benchmark):
    """1000 state hand-offs (the protocol's round without sync_one) between
    two pinned threads per round."""
    from pyharness.bench.pinning import _handoff
    a, b = cpus2()
    if a == b:
        pytest.skip("needs two CPUs")
    benchmark.pedantic(_handoff, args=([a, b], 1000, 1), rounds=20, iterations=1,
                       warmup_rounds=2)


def _handoff_median(result):
    return result["stability"]["handoff_ns"].get("median") or 0.0


def test_compare_flags_an_injected_slowdown_and_passes_a_rerun():
    """The regression check end to end on real measurements: a rerun of the
    same build is not flagged; a busy wait in each poke_sync round worth 20%
    of a CPUID site is.

    On a VM the host can move the vCPUs and change the cross-CPU cost 5x
    between runs (seen on ours).  The slowed run is compared only with a
    baseline measured in the same state of the machine (hand-off within
    1.3x); after three tries in another state, the test says so and skips
    rather than judge on luck."""
    from pyharness.bench import run_bench
    from pyharness.compare import compare, compare_figures
    ref = "rfc/rwx/cpuid/secondaries=1"
    a = run_bench(quick=True, progress=False)
    if ref not in a["figures"]:
        pytest.skip(f"{ref} not measured here: {a.get('skipped')}")
    delay = int(a["figures"][ref]["summary"]["median"] * 0.20 / 4)
    for _ in range(3):
        slow = run_bench(quick=True, progress=False, inject_delay_ns=delay)
        moved = _handoff_median(slow) / max(_handoff_median(a), 1.0)
        if 1 / 1.3 < moved < 1.3:
            break
    else:
        pytest.skip(f"the machine stayed in another state (hand-off {moved:.2f}x): cannot judge")
    rows, summ, code = compare_figures(a, slow)
    verdicts = {r["figure"]: r["verdict"] for r in rows}
    assert code == 1, compare(a, slow)[0]
    assert verdicts[ref] == "REGRESSED", compare(a, slow)[0]

    b = run_bench(quick=True, progress=False)
    text, code = compare(a, b)
    assert code == 0, text
