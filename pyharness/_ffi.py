"""The compiled core, loaded once and checked against the ABI we expect."""
from .errors import UnsupportedError

ABI_VERSION = 20

try:
    from ._core import ffi, lib  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    raise UnsupportedError(
        f"pyharness's C core is not built ({exc}); reinstall with "
        "'pip install .' on Linux x86_64 with a C compiler") from None

if lib.PH_ABI_VERSION != ABI_VERSION:  # pragma: no cover - stale build
    raise UnsupportedError(
        f"stale C core: ABI {lib.PH_ABI_VERSION}, expected {ABI_VERSION}; reinstall pyharness")
