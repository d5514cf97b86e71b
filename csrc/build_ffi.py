"""cffi build script (API mode) for pyharness._core.

Lives outside the installed package; setup.py names it in cffi_modules.
The cdef is ph_api.h itself, minus preprocessor lines other than integer
#defines, so the declarations Python sees are the ones the C compiles with.
"""
import os
import re

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = ["shared.c", "text.c", "sync.c", "check.c", "stress.c", "trap.c", "protocol.c",
           "proto_rfc.c", "proto_posted.c", "bench.c"]


def _cdef_text():
    with open(os.path.join(HERE, "ph_api.h")) as f:
        lines = f.read().splitlines()
    keep = []
    for line in lines:
        if line.startswith("#"):
            if re.match(r"#define\s+\w+\s+\d+\s*$", line):
                keep.append(line)
            continue
        keep.append(line)
    return "\n".join(keep)


CFLAGS = ["-O2", "-mno-red-zone", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter",
          "-fno-strict-aliasing"]

ffibuilder = FFI()
ffibuilder.cdef(_cdef_text())
ffibuilder.set_source(
    "pyharness._core",
    '#include <stdint.h>\n#include "ph_internal.h"\n',
    sources=[os.path.relpath(os.path.join(HERE, s)) for s in SOURCES],
    include_dirs=[os.path.relpath(HERE)],
    # -mno-red-zone: IRET-to-self builds a frame on the stack (PROTOCOL.md).
    extra_compile_args=CFLAGS,
    # The build, as reports state it (pyharness/platform/evidence.py).
    define_macros=[("PH_BUILD_FLAGS", '"' + " ".join(CFLAGS) + '"')],
    libraries=["rt"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
