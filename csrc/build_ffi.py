"""cffi build script (API mode) for pyharness._core.

Lives outside the installed package; setup.py names it in cffi_modules.
The cdef is ph_api.h itself, minus preprocessor lines other than integer
#defines, so the declarations Python sees are the ones the C compiles with.
"""
import os
import re
import subprocess

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


# -fvisibility=hidden: the module's one export is its PyInit (cffi marks it
# visible); every call between our C files is then direct, not through
# the PLT (ph_aborted() in every spin of a wait, ph_now_ns(), the pokes).
CFLAGS = ["-O2", "-mno-red-zone", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter",
          "-fno-strict-aliasing", "-fvisibility=hidden"]



def _git_commit():
    """The commit being built, "+dirty" if tracked files differ; "" when
    this is not a git checkout (an sdist) or git is absent.  Stored with
    every result (pyharness.history) so a wheel built from a checkout
    still says which code it is."""
    root = os.path.dirname(HERE)
    if not os.path.isdir(os.path.join(root, ".git")):
        return ""
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""
    if not re.fullmatch(r"[0-9a-f]{40}", head):
        return ""
    return head + ("+dirty" if dirty else "")


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
    define_macros=[("PH_BUILD_FLAGS", '"' + " ".join(CFLAGS) + '"'),
                   ("PH_BUILD_COMMIT", '"' + _git_commit() + '"')],
    libraries=["rt"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
