"""The RFC state machine with real threads: every poke and sync method,
breakpoints on both sides, emulation, deadlines, oversubscription."""
import errno
import threading

import pytest

from pyharness import Config, Engine, UsageError
from pyharness._ffi import ffi, lib
from pyharness.engine import available_syncs

SITES = 200


def assert_clean_run(o, nsites, nthreads=2, rounds=None):
    assert o.status == "complete", o
    assert o.view.violations() == []
    counters = o.view.all_counters()
    assert counters[0]["sites_patched"] == nsites
    for c in counters[1:]:
        assert c["acks"] == [rounds or nsites] * 4  # each state acked exactly once per round
        assert c["sync_bad"] == 0                  # every serialization left its token
        assert c["sync_round"] > 0
        assert c["acks_done_in_sync_loop"] == 0
    for c in counters:
        assert c["verified"] == o.view.sh.nsites   # every site re-run after DONE
        assert c["exec_torn"] == 0
    # the observer read the scheduled flips back at SYNC_DONE: every one of
    # a round of up to 32 sites, 32 of a larger one (rotating)
    sh = o.view.sh
    per_round = nsites // sh.oracle_rounds
    assert sh.flips_scheduled == nsites
    assert sh.flips_observed == sh.flips_checked == sh.oracle_rounds * min(per_round, 32)


@pytest.mark.parametrize("sync", available_syncs())
@pytest.mark.parametrize("poke", ["mprotect", "alias", "rwx"])
def test_patch_under_each_poke_and_sync(two_cpus, poke, sync):
    with Engine(Config(cpus=two_cpus, sites=SITES, poke=poke, sync=sync)) as e:
        o = e.run(sites=SITES)
        assert_clean_run(o, SITES)
        for s in range(SITES):
            assert e.site_variant(s) == 1
            assert e.exec_site(s) == (1, e.site_values(s)[1])


def test_serialize_is_refused_where_cpuid_lacks_it(two_cpus):
    if "serialize" in available_syncs():
        pytest.skip("this CPU has SERIALIZE")
    from pyharness import SyncUnavailableError
    with pytest.raises(SyncUnavailableError, match="--sync cpuid"):
        Engine(Config(cpus=two_cpus, sites=8, sync="serialize"))


def test_native_breakpoints_on_secondary_and_primary(two_cpus):
    # force_nmi=3: the primary NMIs itself after each INT3; secondaries NMI
    # themselves on seeing SYNC_0.  Each NMI runs the site being patched.
    with Engine(Config(cpus=two_cpus, sites=SITES, force_nmi=3)) as e:
        o = e.run(sites=SITES)
        assert_clean_run(o, SITES)
        t = o.view.totals()["bp_hits"]
        # at least one trap per side per site; a block the primary runs out of
        # line keeps its INT3, so the observer's NMI probes may trap again
        assert t["primary"] == t["primary_nmi"] >= SITES
        assert t["secondary"] == t["secondary_nmi"] >= SITES
        assert t["native"] == t["primary"] + t["secondary"] and t["emulated"] == 0
        sec = o.view.counters(1)
        assert sec["acks_bp"] > 0                  # acked re-entrantly from the handler
        assert sec["bp_depth_max"] == 1


@pytest.mark.parametrize("kind", ["movret", "call", "jmpnop"])
def test_emulated_breakpoint_for_each_single_instruction_kind(two_cpus, kind):
    with Engine(Config(cpus=two_cpus, sites=SITES, kinds=(kind,), bp="emulate", force_nmi=3)) as e:
        o = e.run(sites=SITES)
        assert_clean_run(o, SITES)
        t = o.view.totals()["bp_hits"]
        # at least one trap per side per site; the observer's NMI probes may add more
        assert t["emulated"] >= 2 * SITES and t["native"] == 0
        assert sum(c["exec"][1] for c in o.view.all_counters()) > 0


def test_batch_finds_the_site_by_binary_search(two_cpus):
    with Engine(Config(cpus=two_cpus, sites=256, batch=64, force_nmi=3)) as e:
        o = e.run(sites=256)
        assert_clean_run(o, 256, rounds=4)
        assert o.view.totals()["bp_hits"]["native"] > 0
        assert o.view.counters(0)["rounds"] == 4 * 4   # 4 batches x 4 states


def test_oversubscribed_four_threads_on_one_cpu(two_cpus):
    cpu = two_cpus[0]
    with Engine(Config(cpus=[cpu] * 4, sites=100, poke="alias", sync="iret")) as e:
        o = e.run(sites=100)
        assert_clean_run(o, 100, nthreads=4)


def test_waits_yield_early_only_where_threads_share_a_cpu(two_cpus):
    """A waiter spinning on a CPU it shares keeps the thread it waits for
    off it: there waits yield after a few PAUSEs (spin_pauses), elsewhere
    after the default (0 -> 1024, set in C).  Out of range is refused."""
    assert Config(cpus=[two_cpus[0]] * 3).to_c().spin_pauses == 16
    assert Config(cpus=[0, 1] if two_cpus[0] != two_cpus[1] else [0]).to_c().spin_pauses == 0
    c = Config(cpus=[two_cpus[0]], sites=8).to_c()
    c.spin_pauses = (1 << 24) + 1
    e = ffi.new("struct ph_engine **")
    assert lib.ph_engine_create(c, -1, e) == -errno.EINVAL


def test_a_stuck_secondary_makes_the_wait_fail_and_names_it(two_cpus):
    """Thread 1 registers but never runs its sync loop: the primary's wait
    for acks must end at its deadline with an error naming thread 1."""
    with Engine(Config(cpus=two_cpus, sites=4, deadline=0.3)) as e:
        registered, release = threading.Event(), threading.Event()
        result = {}

        def stuck():
            assert lib.ph_thread_register(e._e, 1, lib.PH_ROLE_SECONDARY) == 0
            registered.set()
            release.wait(30)
            lib.ph_thread_unregister(e._e, 1)

        def primary():
            assert lib.ph_thread_register(e._e, 0, lib.PH_ROLE_PRIMARY) == 0
            result["wait"] = lib.ph_wait_registered(e._e)
            result["run"] = lib.ph_primary_run(e._e, 2, 0)
            result["stuck"] = e.stuck_threads()
            lib.ph_thread_unregister(e._e, 0)

        t1 = threading.Thread(target=stuck)
        t1.start()
        assert registered.wait(30)
        t0 = threading.Thread(target=primary)
        t0.start()
        t0.join(60)
        release.set()
        t1.join(60)
        assert not t0.is_alive() and not t1.is_alive()
        assert result["wait"] == 0
        assert result["run"] == -110                  # -ETIMEDOUT, not a hang
        assert any(s.startswith("thread 1 ") for s in result["stuck"])
        deadline = [v for v in e.view.violations() if v["invariant"] == lib.PH_INV_DEADLINE]
        assert deadline and deadline[0]["thread"] == 1


def test_duration_run_patches_repeatedly_and_ends(two_cpus):
    with Engine(Config(cpus=two_cpus, sites=50, poke="alias", sync="iret")) as e:
        o = e.run(duration=0.3, nmi_rate=2000)
        assert o.status == "complete" and o.view.violations() == []
        assert o.view.counters(0)["sites_patched"] >= 1
        assert o.view.totals()["nmis"] >= 1


@pytest.mark.parametrize("field,value,message", [
    ("poke", "bogus", "unknown poke"),
    ("kinds", ("nope",), "unknown site kind"),
    ("batch", 0, "--batch"),
    ("primary", 5, "primary thread"),
    ("deadline", 0, "deadline"),
    ("trace_len", 3, "power of two"),
])
def test_config_is_validated_before_c(two_cpus, field, value, message):
    cfg = Config(cpus=two_cpus, sites=8)
    setattr(cfg, field, value)
    with pytest.raises(UsageError, match=message):
        cfg.validate()


def test_block_sites_need_the_native_path(two_cpus):
    with pytest.raises(UsageError, match="--bp native"):
        Config(cpus=two_cpus, sites=8, bp="emulate").validate()


def test_one_engine_per_process(two_cpus):
    from pyharness import EngineBusyError
    with Engine(Config(cpus=two_cpus, sites=8)):
        with pytest.raises(EngineBusyError):
            Engine(Config(cpus=two_cpus, sites=8))


def test_run_arguments_are_checked(two_cpus):
    with Engine(Config(cpus=two_cpus, sites=8)) as e:
        with pytest.raises(UsageError):
            e.run()
        with pytest.raises(UsageError):
            e.run(duration=-1)


def test_ctrl_c_is_held_until_the_block_ends():
    """ctrl_c_deferred: a SIGINT inside the block lets it finish, then
    raises KeyboardInterrupt; Python's handler is back afterwards."""
    import os
    import signal
    from pyharness.engine import ctrl_c_deferred
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with ctrl_c_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):       # the handler runs between bytecodes
                pass
            reached.append("end of block")
    assert reached == ["end of block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_during_a_run_stops_it_and_frees_the_engine(two_cpus):
    """SIGINT once sites are being patched: the run ends 'interrupted' with
    every participant out of C, so the engine is destroyed, not leaked."""
    import os
    import signal
    sent = []

    def on_tick(view, elapsed):
        if not sent and view.counters(0)["sites_patched"] > 0:
            sent.append(elapsed)
            os.kill(os.getpid(), signal.SIGINT)
    e = Engine(Config(cpus=two_cpus, sites=64, poke="alias", sync="iret"))
    o = e.run(duration=60, on_tick=on_tick, tick=0.01)
    assert sent and o.status == "interrupted" and o.stuck == []
    assert o.view.violations() == []
    e.close()
    assert e._e is None and not e._in_c      # destroyed: nobody was left in C


# Every run option that changes the primary's work, against every protocol in
# the table (issue 26): poke_sync() is one skeleton (csrc/core/driver.c), and
# this is what keeps it so.  Each option's effect is seen in the evidence.
from pyharness.protocols import get as protocol_of  # noqa: E402
from pyharness.engine import PROTOCOLS  # noqa: E402

OPT_SITES = 24


def _quiet_run(cpus, protocol, **kw):
    """A --sites run without NMIs or aims: every protocol in the table,
    the RFC as posted included, completes it."""
    cfg = Config(cpus=cpus, sites=OPT_SITES, protocol=protocol, **kw)
    with Engine(cfg) as e:
        o = e.run(sites=OPT_SITES)
        assert o.status == "complete" and o.view.violations() == [], (protocol, kw, o)
        sh = o.view.sh
        return {"elapsed_ns": sh.t_end - sh.t_start, "counters": o.view.all_counters(),
                "rounds": sh.oracle_rounds}


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_inject_delay_is_honoured_by_every_protocol(two_cpus, protocol):
    """--inject-delay-ns busy-waits after each step's writes: every state
    of every round takes at least that long, whatever the protocol (the
    ticket protocol's copy of the skeleton once skipped it)."""
    delay = 2_000_000
    r = _quiet_run(two_cpus, protocol, inject_delay_ns=delay)
    states = 4 * r["rounds"]
    assert r["elapsed_ns"] >= states * delay, (protocol, r["elapsed_ns"], states)


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_batch_and_secondary_sync_are_honoured_by_every_protocol(two_cpus, protocol):
    """--batch sets the rounds; --secondary-sync membarrier makes the
    primary serialize the secondaries by the kernel's membarrier after
    each state (where the protocol runs with it), and acks do not."""
    r = _quiet_run(two_cpus, protocol, batch=4)
    assert r["rounds"] == OPT_SITES // 4
    assert r["counters"][1]["acks"][0] == OPT_SITES // 4
    if "membarrier" in protocol_of(protocol).secondary_syncs:
        m = _quiet_run(two_cpus, protocol, secondary_sync="membarrier")
        assert m["counters"][0]["mb_calls"] >= 3 * m["rounds"]     # SYNC_0..2 of each round
        r2 = _quiet_run(two_cpus, protocol)
        assert r2["counters"][0]["mb_calls"] == 0
