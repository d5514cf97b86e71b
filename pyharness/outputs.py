"""Output paths: checked before any work, written so that nothing is harmed.

    check_output_path("r.json", "--json")          # before the run: exit 2 now, not a lost report
    ok = write_output("r.json", text, "--json")    # after it: False if it went to a fallback file

What a path may be, and what happens to it:

- ``-``: standard output.
- a regular file, or no file yet: written whole to a temporary file in the
  same directory, synced, then renamed over the path (a reader never sees
  half a report, a crash never leaves one).
- a symbolic link: written through.  The link stays; its target gets the
  new content, renamed in the target's own directory.
- a character or block device (/dev/null, /dev/full, a tty): written
  through in place, never renamed over, never truncated.  A write that
  fails (/dev/full) falls back to a file, as below.
- a FIFO or a socket: refused before the run (exit 2).  A document is
  written once at the end; a FIFO without a reader would block the end of
  the run, and one with a reader gets a stream, which ``--log`` is for.
  ``--log`` takes a FIFO that has a reader when the run starts.

A write that fails after the work (the disk filled, the directory went
away, a device refused it) puts the content in a file in the temporary
directory and names it in one line on stderr; the caller exits 3.
"""
import errno
import os
import stat
import sys
import tempfile

from .errors import UsageError

STDOUT = "-"


def _kind(mode):
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return None


def check_output_path(path, option="--json", stream=False):
    """Before any work: raise UsageError (exit 2) naming the option when the
    path cannot take the output.  ``stream``: the output is written while
    the run goes on (--log), so a FIFO with a reader is accepted."""
    if path == STDOUT:
        return path
    target = os.path.realpath(path)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise UsageError(f"{option} {path}: {exc.strerror}") from None
    if st is None:
        d = os.path.dirname(target) or "."
        if not os.path.isdir(d):
            raise UsageError(f"{option} {path}: directory {d} does not exist")
        if not os.access(d, os.W_OK | os.X_OK):
            raise UsageError(f"{option} {path}: directory {d} is not writable")
        return path
    kind = _kind(st.st_mode)
    if kind == "a directory":
        raise UsageError(f"{option} {path}: is a directory")
    if kind in ("a FIFO", "a socket"):
        if stream and kind == "a FIFO":
            try:        # a reader must be there now, or the run would block on it
                os.close(os.open(target, os.O_WRONLY | os.O_NONBLOCK))
                return path
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise UsageError(f"{option} {path}: {exc.strerror}") from None
                raise UsageError(f"{option} {path}: a FIFO with no reader; start the reader "
                                 "first") from None
        raise UsageError(f"{option} {path}: is {kind}, not a file; a document is written once at "
                         f"the end (use - for standard output{', or --log for a stream' if not stream else ''})")
    if not os.access(target, os.W_OK):
        raise UsageError(f"{option} {path}: cannot write (permission denied)")
    if kind is None:        # a regular file: its directory must take the rename
        d = os.path.dirname(target) or "."
        if not os.access(d, os.W_OK | os.X_OK):
            raise UsageError(f"{option} {path}: directory {d} is not writable (the file is "
                             "replaced whole)")
    return path


def _replace(target, data):
    d = os.path.dirname(target) or "."
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(target) + ".", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.chmod(tmp, 0o644 & ~_umask())
        except OSError:
            pass
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def _through(target, data):
    fd = os.open(target, os.O_WRONLY)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    finally:
        os.close(fd)


def write_file(path, data):
    """Write bytes or text to a path by the rules above; OSError on failure."""
    if isinstance(data, str):
        data = data.encode()
    if path == STDOUT:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    target = os.path.realpath(path)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    if st is not None and _kind(st.st_mode) in ("a character device", "a block device"):
        _through(target, data)
    elif st is not None and _kind(st.st_mode) is not None:
        raise OSError(errno.EINVAL, f"is {_kind(st.st_mode)}")
    else:
        _replace(target, data)


def write_output(path, data, option="--json", what="report", suffix=".json"):
    """write_file, or, when that fails, the content in a temporary file named
    in one line on stderr.  Returns True if it went where it was asked
    (False: the caller exits 3)."""
    try:
        write_file(path, data)
        return True
    except OSError as exc:
        reason = exc.strerror or str(exc)
        try:
            fd, alt = tempfile.mkstemp(prefix="pyharness-" + what.split()[0].lower() + "-",
                                       suffix=suffix)
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
            kept = f"; it is kept in {alt}"
        except OSError:
            kept = "; and it could not be kept in a file either"
        sys.stderr.write(f"pyharness: error: could not write {option} {path} ({reason}){kept}\n")
        return False
