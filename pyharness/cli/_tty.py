"""What the long commands share at the boundary: a one-line progress display
on stderr, and the end of a command that made a document (--json, --store)."""
import sys

from ..errors import EXIT_PASS, EXIT_UNSUPPORTED


class Progress:
    """progress(text) rewrites one line of stderr while the work goes on;
    .clear() wipes it before the results print.  Silent when stderr is not a
    terminal or when asked to be quiet."""

    def __init__(self, quiet=False, width=110):
        self.show = sys.stderr.isatty() and not quiet
        self.width = width

    def __call__(self, text):
        if self.show:
            sys.stderr.write("\r" + text[:self.width].ljust(self.width))
            sys.stderr.flush()

    def clear(self):
        if self.show:
            sys.stderr.write("\r" + " " * self.width + "\r")


def deliver(doc, args, kind, code, store, tags):
    """Write the document to --json (validated) and record it in the store
    (opened before the work); an output or the store that fails after the
    work is exit 3, unless the work's own code says more."""
    from ..history.recording import record
    if args.json:
        from .. import documents
        if not documents.write(doc, args.json, "--json", kind) and code == EXIT_PASS:
            code = EXIT_UNSUPPORTED
    if not record(store, doc, tags, f"pyharness {kind}"):
        return EXIT_UNSUPPORTED
    return code
