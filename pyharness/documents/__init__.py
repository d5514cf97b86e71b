"""The result documents pyharness writes and reads, in one place.

    doc = documents.load("b.json", kinds=("bench",))      # read, parse, validate: one line on error
    documents.validate(doc)                               # a document made here, before it is read back
    ok = documents.write(doc, "r.json", "--json")         # validated, then written (outputs.py rules)

Each kind has a versioned schema name ("pyharness.run/1") and a published
JSON Schema (pyharness/documents/schemas/KIND.schema.json, shipped with the
package; `pyharness.documents.schema_path("run")`).  Every tool that reads a
document (compare, history's import, merge, plot, report) goes through
:func:`load`, so a malformed file fails here, with one line naming the file
and the field, and exit 2; never a traceback further on.

The validator is jsonschema (the reference implementation of JSON Schema in
Python, Draft 2020-12): a hand-written checker of types per field is what
it does well and we would not.
"""
import functools
import json
import math
import os

from ..errors import UsageError

SCHEMAS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemas")

# kind -> the schema name written into the document's "schema" field
KINDS = {
    "run": "pyharness.run/1",
    "bench": "pyharness.bench/1",
    "log": "pyharness.log/1",
    "compare": "pyharness.compare/1",
    "history": "pyharness.history/1",
    "campaign": "pyharness.campaign/1",
    "merge": "pyharness.merge/1",
    "selftest": "pyharness.selftest/1",
    "mutate": "pyharness.mutate/1",
    "litmus": "pyharness.litmus/1",
    "kernel": "pyharness.kernel/1",
}
_BY_NAME = {v: k for k, v in KINDS.items()}


class DocumentError(UsageError):
    """A document that cannot be read, is not JSON, or does not match its
    schema (exit 2)."""


def schema_path(kind):
    return os.path.join(SCHEMAS_DIR, f"{kind}.schema.json")


@functools.lru_cache(maxsize=None)
def _registry():
    from referencing import Registry, Resource
    resources = []
    for name in sorted(os.listdir(SCHEMAS_DIR)):
        if name.endswith(".schema.json"):
            with open(os.path.join(SCHEMAS_DIR, name)) as f:
                s = json.load(f)
            resources.append((s["$id"], Resource.from_contents(s)))
    return Registry().with_resources(resources)


@functools.lru_cache(maxsize=None)
def _validator(kind):
    from jsonschema import Draft202012Validator
    with open(schema_path(kind)) as f:
        schema = json.load(f)
    return Draft202012Validator(schema, registry=_registry())


def kind_of(doc):
    """The kind of a document ("run", ...) from its schema field, or None."""
    if not isinstance(doc, dict):
        return None
    return _BY_NAME.get(doc.get("schema"))


def _where(path):
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (("." if out else "") + str(p))
    return out or "(top level)"


def _first_error(kind, doc):
    from jsonschema.exceptions import best_match
    err = best_match(_validator(kind).iter_errors(doc))
    if err is None:
        return None
    msg = err.message
    if len(msg) > 160:
        msg = msg[:157] + "..."
    return f"field {_where(err.absolute_path)}: {msg}"


def validate(doc, kinds=None, name="document"):
    """Raise DocumentError (one line: the name, the field, what is wrong)
    unless doc is a valid document of one of ``kinds`` (default: any)."""
    kind = kind_of(doc)
    want = tuple(kinds) if kinds else tuple(KINDS)
    if kind is None or kind not in want:
        schema = doc.get("schema") if isinstance(doc, dict) else None
        newer = isinstance(schema, str) and any(
            schema.startswith(KINDS[k].rsplit("/", 1)[0] + "/") for k in want)
        what = " or ".join(f"a pyharness {k}" + (" result" if k in ("run", "bench") else
                                                  " document") for k in want)
        if newer:
            raise DocumentError(f"{name}: schema {schema} is newer than this pyharness reads "
                                f"({', '.join(KINDS[k] for k in want)})")
        raise DocumentError(f"{name} is not {what} (schema {schema!r})")
    bad = _first_error(kind, doc)
    if bad:
        raise DocumentError(f"{name}: not a valid {KINDS[kind]} document: {bad}")
    return kind


def _reject_constant(text):
    raise ValueError(f"{text} is not JSON")


def parse(text, name="document"):
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        raise DocumentError(f"{name} is not JSON") from None
    except RecursionError:
        raise DocumentError(f"{name}: nested too deeply to read") from None


def read_json(path):
    """A JSON value from a file, unvalidated; DocumentError (one line,
    exit 2) if it cannot be read or is not JSON."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise DocumentError(f"cannot read {path}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DocumentError(f"{path} is not JSON (not UTF-8 text)") from None
    return parse(text, path)


def load(path, kinds=None):
    """Read, parse and validate one document; returns it.  DocumentError
    (exit 2, one line naming the file and the field) otherwise."""
    doc = read_json(path)
    validate(doc, kinds, path)
    return doc


def load_lines(path, kind="log"):
    """A JSON Lines file of one kind (the run log): every record validated;
    an unfinished last line (a killed run) is left out, not an error."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().split("\n")
    except OSError as exc:
        raise DocumentError(f"cannot read {path}: {exc.strerror}") from None
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = parse(line, f"{path}:{i}")
        except DocumentError:
            if i >= len(lines) - 1:     # the last line, cut by a kill
                break
            raise
        validate(rec, (kind,), f"{path}:{i}")
        out.append(rec)
    return out


def _finite(obj):
    """NaN and infinities are not JSON: null in what we write."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def dumps(doc, indent=1):
    return json.dumps(_finite(doc), indent=indent, default=str, allow_nan=False) + "\n"


def write(doc, path, option="--json", what="report"):
    """Write a document by the output rules (pyharness/outputs.py).  Returns
    False when it went to a fallback file instead (the caller exits 3)."""
    from ..outputs import write_output
    return write_output(path, dumps(doc), option, what)
