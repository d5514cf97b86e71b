"""The results store: every bench and run result, with the machine and the
build it came from, its tags and its per-run samples, in SQLite (one box)
or PostgreSQL (a team's boxes writing to one server), one schema for both.

    store = open_store("sqlite:///results.db")      # or a plain path
    rid, new = store.add(bench_result, tags={"kernel": "6.18-rc1"})
    for row in store.points(figure_glob="rfc/*"): ...

SQLAlchemy speaks both dialects; Alembic migrates the schema, versioned
from its first revision (pyharness/history/migrations).  Opening a store
upgrades it to this pyharness's head revision; a store whose revision this
pyharness does not know (written by a newer one) is refused, not touched.

Default URL: $PYHARNESS_STORE, else an SQLite file in the user's data
directory ($XDG_DATA_HOME/pyharness/results.db, ~/.local/share/... when
unset), announced on stderr when it is first created.
"""
import datetime as dt
import fnmatch
import hashlib
import json
import os
import sys
import zlib

from ..errors import StoreError, UsageError
from . import models as m

ENV_URL = "PYHARNESS_STORE"
MIGRATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
KINDS = {"pyharness.bench/1": "bench", "pyharness.run/1": "run"}


def default_path():
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                           "share")
    return os.path.join(base, "pyharness", "results.db")


def resolve_url(text=None):
    """The SQLAlchemy URL of a --store argument.  None or "":
    $PYHARNESS_STORE or the default file; a plain path: SQLite."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    text = text or os.environ.get(ENV_URL) or ""
    if not text:
        text = "sqlite:///" + default_path()
    elif "://" not in text:
        text = "sqlite:///" + os.path.abspath(text)
    try:
        url = make_url(text)
    except ArgumentError:
        raise UsageError(f"--store: '{text}' is not a database URL or a path") from None
    if url.drivername == "postgresql" or url.drivername == "postgres":
        # psycopg 3 (the 'postgres' extra) unless the URL names a driver.
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise UsageError(f"--store: {url.get_backend_name()} is not supported "
                         "(sqlite:///path or postgresql://host/db)")
    return url


def _alembic_config(connection):
    from alembic.config import Config
    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS)
    cfg.attributes["connection"] = connection
    return cfg


def head_revision():
    from alembic.script import ScriptDirectory
    from alembic.config import Config
    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS)
    return ScriptDirectory.from_config(cfg).get_current_head()


def open_store(text=None, create=True, announce=True):
    """Open (and migrate) the store a --store argument names.  create:
    False refuses an SQLite file that does not exist yet (history, report:
    reading nothing is an error, not an empty answer)."""
    import sqlalchemy as sa
    url = resolve_url(text)
    created = False
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = url.database
        if not os.path.exists(path):
            if not create:
                raise UsageError(f"no results store at {path} (record one with "
                                 "`pyharness bench --store`, or name it with --store URL)")
            parent = os.path.dirname(os.path.abspath(path))
            if path == default_path():          # ours to make; a path the user named is not
                try:
                    os.makedirs(parent, exist_ok=True)
                except OSError as exc:
                    raise UsageError(f"--store: cannot create {parent}: {exc.strerror}") from None
            elif not os.path.isdir(parent):
                raise UsageError(f"--store {path}: directory {parent} does not exist")
            if not os.access(parent, os.W_OK):
                raise UsageError(f"--store: {parent} is not writable")
            created = True
        elif not os.access(path, os.R_OK | (os.W_OK if create else 0)):
            raise UsageError(f"--store: {path} is not {'writable' if create else 'readable'}")
    try:
        engine = sa.create_engine(url)
        store = Store(engine, url)
        store.migrate()
    except ImportError as exc:
        raise StoreError(f"--store {url.render_as_string(hide_password=True)}: the database "
                         f"driver is not installed ({exc}); pip install 'pyharness[postgres]'"
                         ) from None
    except sa.exc.SQLAlchemyError as exc:
        msg = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise StoreError(f"--store {url.render_as_string(hide_password=True)}: {msg}") from None
    if created and announce:
        sys.stderr.write(f"pyharness: created the results store {url.database}\n")
    return store


def _digest(doc):
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


def _identity(d):
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def _started(doc):
    """The result's start, naive UTC (both dialects store it alike)."""
    text = doc.get("started")
    if text:
        for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"):
            try:
                t = dt.datetime.strptime(text, fmt)
                return t.astimezone(dt.timezone.utc).replace(tzinfo=None)
            except ValueError:
                pass
    return None


def machine_identity(doc):
    mach = doc.get("machine") or {}
    cpus = (doc.get("evidence") or {}).get("cpus") or [{}]
    c0 = cpus[0]
    return {"hostname": mach.get("hostname"), "cpu_model": mach.get("cpu_model") or c0.get("model_name"),
            "cpu_family": c0.get("family"), "cpu_model_number": c0.get("model"),
            "stepping": c0.get("stepping"), "microcode": c0.get("microcode"),
            "kernel": mach.get("kernel"), "hypervisor": mach.get("hypervisor"),
            "cpu_count": mach.get("cpu_count")}


def build_identity(doc):
    b = (doc.get("evidence") or {}).get("build") or {}
    mach = doc.get("machine") or {}
    return {"version": b.get("pyharness") or mach.get("pyharness"), "commit": b.get("git_commit"),
            "dirty": b.get("git_dirty"), "compiler": b.get("compiler"), "cflags": b.get("cflags"),
            "abi": b.get("abi") or mach.get("abi")}


def figures_of(doc):
    """[(name, kind, unit, median, floor, ratio, [(value, floor, ratio)])]
    of a bench or run document."""
    out = []
    if doc.get("schema") == "pyharness.bench/1":
        for name, f in (doc.get("figures") or {}).items():
            vals = f.get("samples") or []
            fl = f.get("floor_samples") or []
            ra = f.get("ratio_to_floor_samples") or []
            if len(fl) != len(vals):
                fl = [None] * len(vals)
            if len(ra) != len(vals):
                ra = [None] * len(vals)
            out.append((name, f.get("kind"), f.get("unit"), (f.get("summary") or {}).get("median"),
                        f.get("floor_ns"), f.get("ratio_to_floor"), list(zip(vals, fl, ra))))
    else:
        scen = doc.get("scenario") or "run"
        d = doc.get("distributions") or {}
        rows = [("site_ns", d.get("site_ns")), ("bp_handler_ns", d.get("bp_handler_ns"))]
        rows += [(f"ack_wait_ns/{k}", v) for k, v in (d.get("ack_wait_ns") or {}).items()]
        for what, dist in rows:
            if not dist or not dist.get("count"):
                continue
            for q in ("p50", "p99"):
                v = dist.get(q)
                if v is not None:
                    out.append((f"run/{scen}/{what}/{q}", "run", "ns", float(v), None, None,
                                [(float(v), None, None)]))
    return out


class Store:
    def __init__(self, engine, url):
        self.engine = engine
        self.url = url

    def close(self):
        self.engine.dispose()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def describe(self):
        return self.url.render_as_string(hide_password=True)

    # -- schema --------------------------------------------------------------
    def revision(self):
        from alembic.runtime.migration import MigrationContext
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def migrate(self):
        """Upgrade to head; refuse a revision this pyharness does not know."""
        from alembic import command
        from alembic.script import ScriptDirectory
        from alembic.util import CommandError
        current = self.revision()
        with self.engine.begin() as conn:
            cfg = _alembic_config(conn)
            known = {s.revision for s in ScriptDirectory.from_config(cfg).walk_revisions()}
            if current is not None and current not in known:
                raise StoreError(f"the store {self.describe()} has schema revision {current}, "
                                 "newer than this pyharness knows; upgrade pyharness")
            try:
                command.upgrade(cfg, "head")
            except CommandError as exc:
                raise StoreError(f"cannot migrate {self.describe()}: {exc}") from None

    # -- writing -------------------------------------------------------------
    def _get_or_add(self, conn, table, ident):
        import sqlalchemy as sa
        key = _identity(ident)
        row = conn.execute(sa.select(table.c.id).where(table.c.identity == key)).first()
        if row:
            return row[0]
        try:
            with conn.begin_nested():
                return conn.execute(table.insert().values(identity=key, **ident)
                                    ).inserted_primary_key[0]
        except sa.exc.IntegrityError:      # another box added it meanwhile
            return conn.execute(sa.select(table.c.id).where(table.c.identity == key)).scalar_one()

    def add(self, doc, tags=None, source=None):
        """Record one bench or run document.  Returns (result id, True) or,
        when this very document is stored already, (its id, False)."""
        import sqlalchemy as sa
        schema = doc.get("schema") if isinstance(doc, dict) else None
        if schema not in KINDS:
            raise UsageError(f"{source or 'result'}: not a pyharness bench or run result "
                             f"(schema {schema!r})")
        tags = dict(tags or {})
        digest = _digest(doc)
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(m.results.c.id).where(m.results.c.digest == digest)).first()
            if row:
                return row[0], False
            mid = self._get_or_add(conn, m.machines, machine_identity(doc))
            bid = self._get_or_add(conn, m.builds, build_identity(doc))
            cpus = doc.get("cpus") or (doc.get("config") or {}).get("cpus") or []
            rid = conn.execute(m.results.insert().values(
                digest=digest, kind=KINDS[schema], started=_started(doc) or now, recorded=now,
                machine_id=mid, build_id=bid, quick=doc.get("quick"),
                inject_delay_ns=doc.get("inject_delay_ns") or
                (doc.get("config") or {}).get("inject_delay_ns") or 0,
                cpus=",".join(str(c) for c in cpus)[:255], verdict=doc.get("verdict"),
                source=source, schema=schema,
                document=zlib.compress(json.dumps(doc).encode(), 6))).inserted_primary_key[0]
            if tags:
                conn.execute(m.tags.insert(), [{"result_id": rid, "key": k, "value": str(v)}
                                               for k, v in sorted(tags.items())])
            for name, kind, unit, med, floor, ratio, smp in figures_of(doc):
                fid = conn.execute(m.figures.insert().values(
                    result_id=rid, name=name, kind=kind, unit=unit, median=med,
                    floor_median=floor, ratio_median=ratio)).inserted_primary_key[0]
                rows = [{"figure_id": fid, "seq": i, "value": v, "floor": f, "ratio": r}
                        for i, (v, f, r) in enumerate(smp) if v is not None]
                if rows:
                    conn.execute(m.samples.insert(), rows)
        return rid, True

    # -- reading -------------------------------------------------------------
    def results(self, machine=None, tags=None, kind=None):
        """Result rows (dicts) with machine, build and tags, oldest first."""
        import sqlalchemy as sa
        q = (sa.select(m.results.c.id, m.results.c.kind, m.results.c.started,
                       m.results.c.quick, m.results.c.inject_delay_ns, m.results.c.verdict,
                       m.results.c.source,
                       m.machines.c.id.label("machine_id"), m.machines.c.hostname,
                       m.machines.c.cpu_model, m.machines.c.microcode, m.machines.c.kernel,
                       m.machines.c.hypervisor, m.machines.c.identity.label("machine_identity"),
                       m.builds.c.commit, m.builds.c.dirty, m.builds.c.version)
             .join(m.machines, m.machines.c.id == m.results.c.machine_id)
             .join(m.builds, m.builds.c.id == m.results.c.build_id)
             .order_by(m.results.c.started, m.results.c.id))
        if kind:
            q = q.where(m.results.c.kind == kind)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(q)]
            tag_rows = conn.execute(sa.select(m.tags.c.result_id, m.tags.c.key, m.tags.c.value))
            by_id = {}
            for rid, k, v in tag_rows:
                by_id.setdefault(rid, {})[k] = v
        for r in rows:
            r["tags"] = by_id.get(r["id"], {})
        if machine:
            rows = [r for r in rows if machine_matches(r, machine)]
        for k, v in (tags or {}).items():
            rows = [r for r in rows if r["tags"].get(k) == v]
        return rows

    def figure_samples(self, result_ids, figure_glob=None):
        """{result id: {figure name: {"kind", "unit", "median", "floor", "ratio",
        "samples": [(value, floor, ratio)]}}}."""
        import sqlalchemy as sa
        out = {}
        ids = list(result_ids)
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                figs = conn.execute(sa.select(m.figures).where(m.figures.c.result_id.in_(chunk)))
                fmap = {}
                for f in figs:
                    if figure_glob and not any(fnmatch.fnmatchcase(f.name, g)
                                               for g in figure_glob):
                        continue
                    fmap[f.id] = (f.result_id, f.name)
                    out.setdefault(f.result_id, {})[f.name] = {
                        "kind": f.kind, "unit": f.unit, "median": f.median,
                        "floor": f.floor_median, "ratio": f.ratio_median, "samples": []}
                fids = list(fmap)
                for j in range(0, len(fids), 500):
                    q = (sa.select(m.samples.c.figure_id, m.samples.c.value, m.samples.c.floor,
                                   m.samples.c.ratio)
                         .where(m.samples.c.figure_id.in_(fids[j:j + 500]))
                         .order_by(m.samples.c.figure_id, m.samples.c.seq))
                    for fid, v, fl, ra in conn.execute(q):
                        rid, name = fmap[fid]
                        out[rid][name]["samples"].append((v, fl, ra))
        return out

    def document(self, result_id):
        import sqlalchemy as sa
        with self.engine.connect() as conn:
            blob = conn.execute(sa.select(m.results.c.document)
                                .where(m.results.c.id == result_id)).scalar_one()
        return json.loads(zlib.decompress(blob))


def machine_matches(row, text):
    """--machine M: a hostname, a CPU model substring, or an identity prefix."""
    t = text.lower()
    return (t == (row.get("hostname") or "").lower() or
            t in (row.get("cpu_model") or "").lower() or
            (len(t) >= 6 and (row.get("machine_identity") or "").startswith(t)))
