"""The uprobe target's observer sees what it claims: an execution that
leaves any register, the flags or the red zone other than the unprobed
code would is counted, named and shown (no kernel state is touched here:
a site that does the wrong thing stands in for the kernel)."""

from pyharness._ffi import ffi, lib
from pyharness.kernel import uprobe


def _run(tmp_path, site1=b"\x48\x8d\x40\x01", site0=b"\x0f\x1f\x44\x00\x00"):
    saved = uprobe.SITES
    try:
        uprobe.SITES = ((saved[0][0], site0, "nop5"), (saved[1][0], site1, "lea"))
        path = uprobe.site_file(str(tmp_path))
    finally:
        uprobe.SITES = saved
    offs = ffi.new("uint64_t[]", [o for o, _, _ in saved])
    code = ffi.new("uint64_t *")
    assert lib.ph_up_setup(path.encode(), offs, code) == 0
    st = ffi.new("struct ph_up_stats *")
    assert lib.ph_up_exec(int(0.05e9), 7, st) == 0
    return st


def test_the_unprobed_sites_leave_everything_as_the_abi_says(tmp_path):
    st = _run(tmp_path, b"\x48\x8d\x40\x01")            # lea 1(%rax), %rax: what the check expects
    assert st.runs[0] > 1000 and st.runs[1] > 1000 and st.bad[0] == 0 and st.bad[1] == 0


def test_a_wrong_register_is_seen(tmp_path):
    st = _run(tmp_path, b"\x48\x8d\x40\x02")            # lea 2(%rax): one more than the unprobed code
    assert st.bad[1] == st.runs[1] and st.bad[0] == 0
    assert st.first_site == 1 and uprobe.WHAT[st.first_what] == "rax"
    assert st.first_got == (st.first_want + 1) & (2 ** 64 - 1)


def test_a_clobbered_red_zone_is_seen(tmp_path):
    # mov %rcx, -16(%rsp) : what a call below the stack pointer would do to a leaf
    st = _run(tmp_path, site0=b"\x48\x89\x4c\x24\xf0")
    assert st.bad[0] == st.runs[0] and st.bad[1] == 0 and uprobe.WHAT[st.first_what] == "the red zone"
    assert st.first_off == -16


def test_a_changed_flag_is_seen(tmp_path):
    st = _run(tmp_path, site0=b"\xf5\x90\x90\x90\x90")   # cmc: carry flipped
    assert st.bad[0] == st.runs[0] and uprobe.WHAT[st.first_what] == "the flags"
