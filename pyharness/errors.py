"""Exceptions, and the one place where C return codes become them.

C returns 0 or -errno and never prints.  :func:`check` turns a negative code
into a typed exception carrying the C message in ``args[0]``.  Every
exception knows the exit code the CLI uses for it.
"""
import errno
import os

EXIT_PASS = 0
EXIT_VIOLATIONS = 1
EXIT_USAGE = 2
EXIT_UNSUPPORTED = 3
EXIT_INTERRUPTED = 130


class PyharnessError(Exception):
    """Base of every pyharness error; never raised directly."""

    exit_code = EXIT_UNSUPPORTED


class UsageError(PyharnessError):
    """Bad input: an option, a CPU list, a duration (exit 2)."""

    exit_code = EXIT_USAGE


class UnsupportedError(PyharnessError):
    """This environment cannot run the request (exit 3)."""

    exit_code = EXIT_UNSUPPORTED


class StoreError(PyharnessError):
    """The results store cannot be opened, migrated or written: a server
    that does not answer, a schema newer than this pyharness (exit 3)."""

    exit_code = EXIT_UNSUPPORTED


class SyncUnavailableError(UnsupportedError):
    """The CPU lacks the requested serializing instruction."""


class ExecMemoryRefusedError(UnsupportedError):
    """The kernel refused writable+executable memory (MDWE, noexec)."""


class EngineBusyError(PyharnessError):
    """Another engine is live in this process (handlers find one engine)."""

    exit_code = EXIT_USAGE


class DeadlineError(PyharnessError):
    """A protocol wait outlived its deadline; ``stuck`` names the threads."""

    exit_code = EXIT_VIOLATIONS

    def __init__(self, message, stuck=()):
        super().__init__(message)
        self.stuck = list(stuck)


class BenchRunError(PyharnessError):
    """A benchmark run did not complete cleanly (violations, a deadline, a
    hang): the protocol failed, which is a finding, not a measurement."""

    exit_code = EXIT_VIOLATIONS


class CoreError(PyharnessError):
    """Any other failure reported by the C core."""


def check(rc, what, **context):
    """Return rc if it is not negative; otherwise raise the matching error.

    ``what`` names the C call; ``context`` carries what the message needs
    (for example ``poke="mprotect"``, ``sync="serialize"``).
    """
    if rc >= 0:
        return rc
    err = -rc
    name = errno.errorcode.get(err, str(err))
    text = os.strerror(err)
    if err == errno.EOPNOTSUPP:
        sync = context.get("sync", "?")
        raise SyncUnavailableError(
            f"sync method '{sync}' is not available on this CPU "
            f"(CPUID does not report it); use --sync cpuid or --sync iret")
    if err in (errno.EACCES, errno.EPERM) and "poke" in context:
        poke = context["poke"]
        if poke == "alias":
            raise ExecMemoryRefusedError(
                f"executable memory refused with --poke alias ({name}: {text}; an executable "
                f"memfd is forbidden, e.g. vm.memfd_noexec=2 or a noexec policy); "
                f"use --poke mprotect, or allow executable memfds")
        raise ExecMemoryRefusedError(
            f"executable memory refused with --poke {poke} ({name}: {text}; "
            f"memory-deny-write-execute (MDWE) or a noexec policy); use --poke alias")
    if err == errno.ENOSYS and what == "ph_engine_create":
        raise UnsupportedError(
            "membarrier(PRIVATE_EXPEDITED_SYNC_CORE) is not supported by this kernel; "
            "use --secondary-sync ack")
    if err == errno.EBUSY and what == "ph_engine_create":
        raise EngineBusyError("another pyharness engine is live in this process")
    if err == errno.ETIMEDOUT:
        stuck = context.get("stuck", ())
        who = ", ".join(stuck) if stuck else "unknown threads"
        raise DeadlineError(f"{what}: wait exceeded its deadline; never acked: {who}", stuck)
    if err == errno.EINVAL:
        raise UsageError(f"{what}: invalid argument ({name})")
    raise CoreError(f"{what} failed: {name} ({text})")
