"""Site encodings, the layout of real text, and one trap round trip through
the real SIGTRAP handler."""
import struct

import pytest

from pyharness import Config, Engine
from pyharness._ffi import ffi, lib


def encode(kind, variant, site=0x1000, target=0x2000, value=0x11223344):
    out = ffi.new("uint8_t[16]")
    n = lib.ph_encode(kind, variant, site, target, value, out)
    assert n > 0
    return bytes(out[0:n])


def test_movret_encoding():
    assert encode(lib.PH_KIND_MOVRET, 0, value=0x11223344) == b"\xb8" + struct.pack("<I", 0x11223344)


def test_call_encoding_is_rel32_from_the_next_instruction():
    b = encode(lib.PH_KIND_CALL, 1, site=0x1000, target=0x3000)
    assert b[0] == 0xE8
    assert struct.unpack("<i", b[1:])[0] == 0x3000 - 0x1005


def test_jmpnop_encodings():
    assert encode(lib.PH_KIND_JMPNOP, 0) == bytes.fromhex("0f1f440000")
    b = encode(lib.PH_KIND_JMPNOP, 1, site=0x1000, target=0x100B)
    assert b == b"\xe9" + struct.pack("<i", 6)


def test_block_variants_are_equal_length_and_differ_everywhere_that_matters():
    a = encode(lib.PH_KIND_BLOCK, 0, value=0xDEADBEEF)
    b = encode(lib.PH_KIND_BLOCK, 1, value=0xDEADBEEF)
    assert len(a) == len(b) == lib.ph_site_len(lib.PH_KIND_BLOCK) == 14
    assert a[0] != b[0] and a[1:] != b[1:]


def test_call_out_of_range_is_refused():
    out = ffi.new("uint8_t[16]")
    assert lib.ph_encode(lib.PH_KIND_CALL, 0, 0, 1 << 40, 0, out) < 0


@pytest.mark.parametrize("poke", ["mprotect", "alias", "rwx"])
def test_fresh_sites_run_variant_zero_and_some_straddle_a_line(two_cpus, poke):
    with Engine(Config(cpus=two_cpus, sites=16, poke=poke)) as e:
        kinds = set()
        for s in range(16):
            variant, value = e.exec_site(s)
            assert variant == 0 and value == e.site_values(s)[0]
            assert e.site_values(s)[0] != e.site_values(s)[1]
            kinds.add(e.site_kind(s))
        assert kinds == {"movret", "call", "jmpnop", "block"}
        straddling = [s for s in range(16) if e.site_straddles(s)]
        assert straddling and len(straddling) < 16
        for s in straddling:
            a = e.site_addr(s)
            assert a // 64 != (a + 4) // 64


@pytest.mark.parametrize("bp,kinds", [("native", ("movret", "call", "jmpnop", "block")),
                                      ("emulate", ("movret", "call", "jmpnop"))])
def test_trap_round_trip_through_the_real_handler(two_cpus, bp, kinds):
    with Engine(Config(cpus=two_cpus, sites=8, kinds=kinds, bp=bp)) as e:
        assert lib.ph_thread_register(e._e, 0, lib.PH_ROLE_PRIMARY) == 0
        try:
            v = ffi.new("uint32_t *")
            for s in range(8):
                # The new variant ran -- except a block on the primary, which
                # runs its old variant out of line (another CPU may be between
                # its instructions: finishing it there would tear that run).
                ool = bp == "native" and e.site_kind(s) == "block"
                want = 0 if ool else 1
                assert lib.ph_test_trap_site(e._e, s, v) == want
                assert v[0] == e.site_values(s)[want]
                assert e.exec_site(s) == (1, e.site_values(s)[1])  # and the text is complete
        finally:
            lib.ph_thread_unregister(e._e, 0)
        c = e.view.counters(0)
        assert c["bp_hits"] == 8
        assert c["bp_native" if bp == "native" else "bp_emulated"] == 8
        assert e.view.violations() == []


def test_branch_targets_lie_on_both_sides_so_emulation_sees_both_signs(two_cpus):
    """Call and jmp sites branch backward and forward (negative and positive
    rel32), and the emulated breakpoint runs each to the right target."""
    kinds = ("call", "jmpnop")
    with Engine(Config(cpus=two_cpus, sites=64, kinds=kinds, bp="emulate", force_nmi=3)) as e:
        signs = {k: set() for k in kinds}
        for s in range(64):
            for v in (0, 1):
                t = e.site_target(s, v)
                if t:
                    signs[e.site_kind(s)].add(t > e.site_addr(s))
        assert signs == {"call": {False, True}, "jmpnop": {False, True}}
        o = e.run(sites=64)
        assert o.status == "complete" and o.view.violations() == []
        assert o.view.totals()["bp_hits"]["emulated"] > 0
        for s in range(64):   # every site now runs its other variant, to the right target
            assert e.exec_site(s) == (1, e.site_values(s)[1])
