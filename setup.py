"""Build glue: the C core through cffi (csrc/build_ffi.py), and one clear
line, not a raw distutils error among a hundred, where it cannot build."""
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

NEEDS = ("pyharness builds its C core at install: it needs a C compiler and the Python "
         "headers. Install them and try again: apt-get install gcc python3-dev "
         "(Debian, Ubuntu), dnf install gcc python3-devel (Fedora, RHEL), or a wheel built "
         "on a machine that has them.")


class BuildExt(build_ext):
    def run(self):
        from distutils.errors import CCompilerError, DistutilsExecError, DistutilsPlatformError
        try:
            super().run()
        except (CCompilerError, DistutilsExecError, DistutilsPlatformError, OSError) as exc:
            sys.stderr.write(f"\nerror: {NEEDS}\n(the compiler said: {exc})\n\n")
            raise SystemExit(1) from None

    def build_extension(self, ext):
        from distutils.errors import CCompilerError, DistutilsExecError
        try:
            super().build_extension(ext)
        except (CCompilerError, DistutilsExecError, OSError) as exc:
            sys.stderr.write(f"\nerror: {NEEDS}\n(the compiler said: {exc})\n\n")
            raise SystemExit(1) from None


setup(
    cffi_modules=["csrc/build_ffi.py:ffibuilder"],
    cmdclass={"build_ext": BuildExt},
    # The module is built against the stable ABI (cffi: Py_LIMITED_API), so
    # one wheel serves every CPython from 3.9 on: tag it so.
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)
