"""Recording a result in the store from a command that made one (bench and
run's --store and --tag): the store opened before the work, the result
kept in a file when the store fails."""
import json
import os
import sys

from ..errors import UsageError
from .series import parse_tags
from .store import open_store


def open_for_writing(store=None, tag=None):
    """The store named by --store (None: not asked for) and the --tag list,
    opened and migrated before any work starts, so a bad URL or a server
    that does not answer is exit 2/3 now and not a lost result later."""
    tags = parse_tags(tag)
    if store is None:
        if tags:
            raise UsageError("--tag needs --store (tags are kept with the stored result)")
        return None, {}
    return open_store(store), tags


def record(store, doc, tags, source):
    """Add one result.  On failure (the server went away, the disk filled)
    the document goes to a file in the temporary directory instead, named
    in one line on stderr with the command that imports it later: nothing
    is lost.  Returns False then (the caller exits 3)."""
    if store is None:
        return True
    try:
        rid, new = store.add(doc, tags=tags, source=source)
    except Exception as exc:  # noqa: BLE001 - the result must survive any failure here
        import tempfile
        fd, path = tempfile.mkstemp(prefix="pyharness-unstored-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f)
            import shlex
            kept = (f"; kept in {path}: pyharness store import --store "
                    f"{shlex.quote(store.url_for_hint())} {path}" + "".join(
                        f" --tag {shlex.quote(f'{k}={v}')}" for k, v in sorted(tags.items())))
        except OSError:
            kept = "; and it could not be kept in a file either"
        sys.stderr.write(f"pyharness: error: the result was not stored in {store.describe()}: "
                         f"{(str(exc).splitlines() or ['?'])[0]}{kept}\n")
        return False
    sys.stderr.write(f"pyharness: result {rid} {'stored' if new else 'already stored'} in "
                     f"{store.describe()}\n")
    return True
