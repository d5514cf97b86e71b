"""Site shapes for the litmus tests: the instruction a test rewrites, its
two variants' bytes, the field a single store would write, and where in
the region it sits for each alignment.

The region (csrc/litmus/litmus.c): REGION bytes, all INT3 but what a test
puts there.  The site page begins at SITE_PAGE; the targets a call or jump
goes to sit in the INT3 zone below it, placed so that every mix of the two
displacements' bytes lands in that zone (their high bytes are equal): a
torn target traps there and is counted as `landed`, never run as code.
"""
import struct

REGION = 0x40000
SITE_PAGE = 0x30000
PAGE = 4096
LINE = 64
V0, V1 = 0x11111111, 0x22222222      # every mix of their bytes is neither
INT3 = 0xCC

# Where the field a single store writes begins, per alignment, for a
# field of n bytes (relative to the site page).
def field_address(align, n):
    if align == "natural":
        return 0x40                                  # aligned to 8, inside one line
    if align == "cross-8":
        return 0x48 - n // 2                         # inside a line, across an 8-byte boundary
    if align == "straddle-line":
        return 0x80 - n // 2                         # across a cache line
    if align == "straddle-page":
        return PAGE - n // 2                         # across a page
    raise ValueError(align)


ALIGNS = ("natural", "cross-8", "straddle-line", "straddle-page")


def _mov_ret(v):
    return b"\xb8" + struct.pack("<I", v) + b"\xc3"


class Shape:
    """name, description, field (offset, length) within the site, whether
    the variants keep the instruction boundaries, and how to lay them out."""

    def __init__(self, name, desc, field, same_boundaries, build, entry=0):
        self.name, self.desc, self.field = name, desc, field
        self.same_boundaries, self._build, self.entry = same_boundaries, build, entry

    def layout(self, xbase, align):
        """{site_off, variant: [bytes, bytes], value, stubs: [(off, bytes)], entry}."""
        foff, flen = self.field
        site_off = SITE_PAGE + field_address(align, flen) - foff
        return dict(self._build(xbase, site_off), site_off=site_off, entry=self.entry)


def _targets(xbase, site_off, end):
    """Two target stubs in the INT3 zone whose rel32s from `end` (the
    address after the instruction) differ in their low two bytes only."""
    nxt = xbase + site_off + end
    t0 = nxt - 0x20000 + 0x100
    t1 = t0 + 0x1234
    d = [(t - nxt) & 0xFFFFFFFF for t in (t0, t1)]
    assert d[0] >> 16 == d[1] >> 16
    return [t0 - xbase, t1 - xbase], [struct.pack("<I", x) for x in d]


def _call_rel32(xbase, site_off):
    offs, rel = _targets(xbase, site_off, 5)
    return {"variant": [b"\xe8" + r + b"\xc3" for r in rel], "value": [V0, V1],
            "stubs": [(o, _mov_ret(v)) for o, v in zip(offs, (V0, V1))]}


def _jmp_rel32(xbase, site_off):
    offs, rel = _targets(xbase, site_off, 5)
    return {"variant": [b"\xe9" + r for r in rel], "value": [V0, V1],
            "stubs": [(o, _mov_ret(v)) for o, v in zip(offs, (V0, V1))]}


def _jmp_slot(xbase, site_off):
    # a 5-byte jmp in an 8-byte slot (V8's jump table): the slot's other
    # three bytes are INT3 in both variants
    v = _jmp_rel32(xbase, site_off)
    v["variant"] = [b + b"\xcc\xcc\xcc" for b in v["variant"]]
    return v


def _mov_imm32(xbase, site_off):
    return {"variant": [_mov_ret(V0), _mov_ret(V1)], "value": [V0, V1], "stubs": []}


def _mov_to_jmp(xbase, site_off):
    # a function's head rewritten into a jump to a detour (Frida,
    # HotSpot's replace_mt_safe): the instruction boundaries move
    offs, rel = _targets(xbase, site_off, 5)
    return {"variant": [_mov_ret(V0), b"\xe9" + rel[1] + b"\xc3"], "value": [V0, V1],
            "stubs": [(offs[1], _mov_ret(V1))]}


def _hotpatch(xbase, site_off):
    # Windows hot-patching: 5 bytes of padding already hold `jmp detour`;
    # the entry's `mov edi, edi` (8B FF) flips to `jmp $-5` (EB F9)
    offs, rel = _targets(xbase, site_off, 5)
    pad = b"\xe9" + rel[1]
    body = _mov_ret(V0)
    return {"variant": [pad + b"\x8b\xff" + body, pad + b"\xeb\xf9" + body], "value": [V0, V1],
            "stubs": [(offs[1], _mov_ret(V1))]}


def _jmp_indirect(xbase, site_off):
    # jmp [rip+2] through an 8-byte data word right after it (CoreCLR's
    # precode: the target lives in data); the word is 8-aligned
    offs, _ = _targets(xbase, site_off, 6)
    insn = b"\xff\x25\x02\x00\x00\x00\xcc\xcc"
    return {"variant": [insn + struct.pack("<Q", xbase + o) for o in offs], "value": [V0, V1],
            "stubs": [(o, _mov_ret(v)) for o, v in zip(offs, (V0, V1))]}


SHAPES = {s.name: s for s in (
    Shape("call-rel32", "call rel32; ret (a call site's displacement)", (1, 4), True, _call_rel32),
    Shape("jmp-rel32", "jmp rel32 (a jump's displacement)", (1, 4), True, _jmp_rel32),
    Shape("jmp-slot", "jmp rel32 in an 8-byte slot (the slot's eight bytes)", (0, 8), True, _jmp_slot),
    Shape("mov-imm32", "mov eax, imm32; ret (an immediate)", (1, 4), True, _mov_imm32),
    Shape("mov-to-jmp", "mov eax, imm32; ret rewritten to jmp rel32 (boundaries move)", (0, 5), False,
          _mov_to_jmp),
    Shape("hotpatch", "jmp in the padding, then mov edi,edi -> jmp $-5 at the entry", (5, 2), False,
          _hotpatch, entry=5),
    Shape("jmp-indirect", "jmp [rip+2] through an 8-byte data word", (8, 8), True, _jmp_indirect),
)}
