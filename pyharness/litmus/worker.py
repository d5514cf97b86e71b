"""The litmus worker: one test, in a process of its own (python -m
pyharness.litmus.worker).  Reads {"toml", "path", "fd", "writer", "execs",
"seconds"} on stdin; counts into the parent's memfd (struct
ph_lit_result), so that a landing that kills this process leaves what was
counted; prints one JSON line: {"ok": true} or {"ok": false, "error",
"unavailable"}."""
import json
import mmap
import os
import sys


def main():
    req = json.loads(sys.stdin.read())
    from .._ffi import ffi, lib
    from . import shapes, spec
    test = spec.parse(req["toml"], req["path"])
    size = ffi.sizeof("struct ph_lit_result")
    mm = mmap.mmap(req["fd"], size)
    res = ffi.cast("struct ph_lit_result *", ffi.from_buffer(mm))
    xb = ffi.new("uint64_t *")
    rc = lib.ph_lit_setup(shapes.REGION, 1, xb)
    if rc < 0:
        print(json.dumps({"ok": False, "error": f"the litmus region: {os.strerror(-rc)}"}))
        return 3
    if test.needs_rwx() and rc == 0:
        print(json.dumps({"ok": False, "unavailable": "writes through the executing mapping need "
                                                      "RWX memory, which this kernel refuses"}))
        return 3
    t = test.compile(xb[0], req["writer"], req["execs"], req["seconds"], stuck=req.get("stuck", 1.0),
                     floor=req.get("floor", 0.2))
    rc = lib.ph_lit_run(t, res)
    if rc < 0:
        print(json.dumps({"ok": False, "error": f"ph_lit_run: {os.strerror(-rc)}",
                          "unavailable": ("membarrier is not available" if rc == -38 else None)}))
        return 3
    print(json.dumps({"ok": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
