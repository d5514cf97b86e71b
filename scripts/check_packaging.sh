#!/usr/bin/env bash
# Packaging as a user meets it: `python -m build` makes the sdist and the
# wheel; each installs into a clean virtual environment and runs.  Then the
# oldest and the newest Python the machine has (pyenv's, where present)
# install it and run a short stress run and the document tests.
#   scripts/check_packaging.sh [PYTHON]      (default: python3)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
PY="${1:-python3}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
q() { "$@" >"$WORK/out.log" 2>&1 || { tail -30 "$WORK/out.log"; exit 1; }; }

"$PY" -m venv "$WORK/build" && q "$WORK/build/bin/pip" install -q build
q "$WORK/build/bin/python" -m build -o "$WORK/dist" .
sdist=$(ls "$WORK"/dist/*.tar.gz)
wheel=$(ls "$WORK"/dist/*.whl)
case "$wheel" in *-cp39-abi3-*) ;; *) echo "packaging: the wheel is not tagged abi3: $wheel"; exit 1;; esac
tar tzf "$sdist" > "$WORK/sdist.txt"
for f in csrc/build_ffi.py csrc/include/ph_api.h csrc/include/ph_internal.h csrc/proto/rfc.c LICENSE pyharness/documents/schemas/run.schema.json; do
    grep -q "/$f\$" "$WORK/sdist.txt" || { echo "packaging: the sdist lacks $f"; exit 1; }
done
if grep -q "pyharness/_core.c\$" "$WORK/sdist.txt"; then echo "packaging: the sdist ships a generated file"; exit 1; fi

check() {   # $1: a python, $2: what to install, $3: a name
    local v="$WORK/venv-$3"
    "$1" -m venv "$v"
    q "$v/bin/pip" install -q "$2"
    (cd "$WORK" && q "$v/bin/pyharness" --version && q "$v/bin/pyharness" run --duration 1 --quiet)
    "$v/bin/python" -c "import importlib.metadata as m; print(m.metadata('pyharness')['License-Expression'])" \
        > "$WORK/show.txt"
    grep -q "GPL-2.0-only" "$WORK/show.txt" ||
        { echo "packaging: no license in the metadata ($3)"; exit 1; }
    echo "packaging: $3: installed and ran ($("$v/bin/python" -V))"
}
# Without a C compiler: one line that says what to install, not a raw distutils error.
q "$WORK/build/bin/pip" install -q -U 'setuptools>=77' cffi wheel
if CC=/bin/false "$WORK/build/bin/pip" install --no-build-isolation --no-deps "$sdist" \
        >"$WORK/nocc.log" 2>&1; then
    echo "packaging: it installed with CC=/bin/false"; exit 1
fi
grep -q "it needs a C compiler and the Python headers" "$WORK/nocc.log" ||
    { tail -20 "$WORK/nocc.log"; echo "packaging: no clear line without a compiler"; exit 1; }
echo "packaging: without a compiler: one line naming what to install"
check "$PY" "$wheel" wheel
check "$PY" "$sdist" sdist

# Oldest and newest supported Pythons the machine has: the sdist builds and
# runs there, and the document tests pass.
for want in 3.9 3.13; do
    p=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/$want.*/bin/python 2>/dev/null | sort -V | tail -1 || true)
    [ -n "$p" ] || p=$(command -v "python$want" || true)
    if [ -z "$p" ]; then echo "packaging: no Python $want on this machine: skipped"; continue; fi
    check "$p" "$sdist" "py$want"
    q "$WORK/venv-py$want/bin/pip" install -q pytest
    cp -r "$REPO/tests" "$WORK/tests-$want"
    (cd "$WORK" && q "$WORK/venv-py$want/bin/python" -m pytest -q -p no:cacheprovider \
        "$WORK/tests-$want/test_documents.py")
    echo "packaging: py$want: the document tests pass"
done
