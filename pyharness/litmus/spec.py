"""Litmus tests as data: a small TOML file per test, checked against its
published schema (pyharness/documents/schemas/litmus-test.schema.json),
then compiled to the C core's struct ph_lit_test.

The vocabulary (stores, syncs, executor sides, outcomes) is the C table
csrc/litmus/*.def, read by name; the site shapes are shapes.py.
"""
import hashlib
import json
import os
import sys

from .. import errors
from .._ffi import ffi, lib
from ..engine import table, table_descriptions
from . import shapes

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.9/3.10
    import tomli as tomllib

STORES = table(lib.PH_TABLE_LSTORE)
SYNCS = table(lib.PH_TABLE_LSYNC)
SERS = table(lib.PH_TABLE_LSER)
MODES = table(lib.PH_TABLE_LMODE)
OUTCOMES = table(lib.PH_TABLE_LOUTCOME)
OUTCOME_NAMES = {v: k for k, v in OUTCOMES.items()}
OUTCOME_DESCRIPTIONS = table_descriptions(lib.PH_TABLE_LOUTCOME)
DEFAULT_FORBIDDEN = ("torn", "landed", "fault", "trap", "stuck", "stale-after-barrier", "crashed")
SHIPPED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tests")


class LitmusTest:
    """A parsed, validated test.  .doc is the file's content (with its
    defaults filled in); .hash is litmus7's Hash=: of the definition."""

    def __init__(self, doc, path, text):
        self.doc, self.path, self.text = doc, path, text
        self.name = doc["name"]
        self.shape = shapes.SHAPES[doc["shape"]]
        self.align = doc.get("align", "natural")
        self.forbidden = tuple(doc.get("forbidden", DEFAULT_FORBIDDEN))
        self.control = doc.get("control")
        ex = doc["executor"]
        self.side = ex["side"]
        self.serialize = ex.get("serialize", "none")
        self.int3_handler = bool(ex.get("int3_handler", False))
        # the site's length does not depend on where the region lands
        self.site_len = max(len(v) for v in self.shape.layout(1 << 40, self.align)["variant"])
        self.steps = [self._step(i, s) for i, s in enumerate(doc["step"])]
        canon = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        self.hash = hashlib.sha256(canon.encode()).hexdigest()[:32]

    def _step(self, i, s):
        foff, flen = self.shape.field
        at = s.get("at", "field")
        if at == "field":
            off, n = foff, flen
        elif at == "all":
            off, n = 0, None
        else:
            off, n = at
        write = s.get("write", "new")
        st = {"store": s["store"], "off": off, "len": n, "write": write,
              "order": s.get("order"), "via": s.get("via", "alias"), "sync": s.get("sync", "none")}
        if n is None:
            n = self.site_len - off
        if off + n > self.site_len:
            raise errors.UsageError(f"{self.path}: step[{i + 1}].at: [{off}, {n}] writes past the "
                                    f"{self.site_len} bytes of a {self.shape.name} site")
        if isinstance(write, list) and len(write) != n:
            raise errors.UsageError(f"{self.path}: step[{i + 1}].write: {len(write)} bytes, "
                                    f"where at covers {n}")
        if st["store"] == "mov" and n not in (None, 1, 2, 4, 8):
            raise errors.UsageError(f"{self.path}: step[{i + 1}].at: store = \"mov\" writes 1, 2, 4 "
                                    f"or 8 bytes, not {n}")
        if st["store"] in ("xchg", "cmpxchg") and n not in (None, 4, 8):
            raise errors.UsageError(f"{self.path}: step[{i + 1}].at: store = \"{st['store']}\" "
                                    f"writes 4 or 8 bytes, not {n}")
        if st["order"] is not None and (st["store"] != "bytes" or n is None
                                        or sorted(st["order"]) != list(range(n))):
            raise errors.UsageError(f"{self.path}: step[{i + 1}].order: must list 0..{(n or 1) - 1} "
                                    "once each, with store = \"bytes\"")
        return st

    # -- what the vendors' rules say about this test -------------------
    def single_store_in_qword(self):
        """One store, inside one naturally aligned 8-byte word, of a shape
        whose variants keep their instruction boundaries (AMD APM 7.6.1's
        asynchronous case)."""
        if len(self.steps) != 1 or self.steps[0]["store"] == "bytes":
            return False
        s = self.steps[0]
        start = shapes.SITE_PAGE + shapes.field_address(self.align, self.shape.field[1]) \
            - self.shape.field[0] + s["off"]
        n = s["len"] or 16
        return self.shape.same_boundaries and start // 8 == (start + n - 1) // 8

    def vendor_rules(self):
        """{vendor: {outcome: "forbidden" | "allowed"}} for the outcomes
        that go wrong (torn, landed, fault, stale-after-barrier)."""
        sdm = self.side == "flag" and self.serialize == "cpuid"
        amd_sync = self.side == "flag" and self.serialize in ("cpuid", "mfence")
        same = self.side == "same-thread"
        direct = all(s["via"] == "direct" for s in self.steps)
        bad = ("torn", "landed", "fault", "stale-after-barrier")
        intel = "forbidden" if sdm or (same and direct) else "allowed"
        amd = "forbidden" if amd_sync or self.single_store_in_qword() or (same and direct) else "allowed"
        return {"intel": {o: intel for o in bad}, "amd": {o: amd for o in bad}}

    def describe(self):
        parts = []
        for s in self.steps:
            what = "new" if s["write"] == "new" else " ".join(f"{b:02x}" for b in s["write"])
            parts.append(f"{s['store']}[{s['off']}:{s['len'] or 'all'}]={what}"
                         + (f" via {s['via']}" if s["via"] != "alias" else "")
                         + (f", {s['sync']}" if s["sync"] != "none" else ""))
        ex = self.side + (f"+{self.serialize}" if self.serialize != "none" else "")
        return f"{self.shape.name} ({self.align}); writer: " + "; ".join(parts) + f"; executor: {ex}"

    # -- the C struct ----------------------------------------------------
    def compile(self, xbase, writer_cpu, exec_cpus, duration, stuck=1.0, floor=0.2):
        lay = self.shape.layout(xbase, self.align)
        t = ffi.new("struct ph_lit_test *")
        t.site_off = lay["site_off"]
        var = lay["variant"]
        n = max(len(v) for v in var)
        t.site_len = n
        t.entry = lay["entry"]
        for i in (0, 1):
            b = var[i].ljust(n, b"\xcc")
            for j in range(n):
                t.variant[i][j] = b[j]
            t.value[i] = lay["value"][i]
        for k, (off, code) in enumerate(lay["stubs"]):
            which = k if len(lay["stubs"]) == 2 else 1
            t.stub_off[which] = off
            for j, b in enumerate(code):
                t.stub[which][j] = b
        t.nsteps = len(self.steps)
        for i, s in enumerate(self.steps):
            c = t.steps[i]
            c.store = STORES[s["store"]]
            c.sync = SYNCS[s["sync"]]
            c.off = s["off"]
            c.len = s["len"] if s["len"] is not None else n - s["off"]
            c.direct = 1 if s["via"] == "direct" else 0
            if s["write"] != "new":
                c.literal = 1
                for j, b in enumerate(s["write"]):
                    c.lit[j] = b
            order = s["order"] or list(range(c.len))
            for j, k in enumerate(order):
                c.order[j] = k
            if c.off + c.len > n:
                raise errors.UsageError(f"{self.path}: step[{i + 1}].at: writes past the site's {n} bytes")
        t.mode = MODES[self.side]
        t.ser = SERS[self.serialize]
        t.int3_handler = 1 if self.int3_handler else 0
        t.writer_cpu = writer_cpu
        t.nexec = 0 if self.side == "same-thread" else len(exec_cpus)
        for i, c in enumerate(exec_cpus):
            t.exec_cpu[i] = c
        t.duration_ns = int(duration * 1e9)
        t.stuck_ns = int(stuck * 1e9)
        t.floor_ns = int(floor * 1e9)
        return t

    def needs_rwx(self):
        return any(s["via"] == "direct" for s in self.steps)


def _validator():
    from ..documents import _validator as schema_validator
    return schema_validator("litmus-test")


def parse(text, path="<test>"):
    """A TOML text to a LitmusTest; errors.UsageError naming the field."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise errors.UsageError(f"{path}: not TOML: {e}")
    err = _first_error(doc)
    if err:
        raise errors.UsageError(f"{path}: {err}")
    return LitmusTest(doc, path, text)


def _first_error(doc):
    import jsonschema
    v = _validator()
    errs = sorted(v.iter_errors(doc), key=lambda e: (len(list(e.absolute_path)), list(e.absolute_path)))
    if not errs:
        return None
    e = jsonschema.exceptions.best_match(errs)
    where = ".".join(str(p) if not isinstance(p, int) else f"[{p + 1}]" for p in e.absolute_path)
    where = where.replace(".[", "[")
    return f"{where or 'the file'}: {e.message}"


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise errors.UsageError(f"{path}: cannot read: {e.strerror}")
    except UnicodeDecodeError:
        raise errors.UsageError(f"{path}: not UTF-8 text")
    return parse(text, path)


def shipped():
    """The shipped tests, controls first, then by name."""
    out = [load(os.path.join(SHIPPED_DIR, f)) for f in sorted(os.listdir(SHIPPED_DIR))
           if f.endswith(".toml")]
    return sorted(out, key=lambda t: (t.control is None, t.control != "positive", t.name))
