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

from .. import documents
from ..errors import StoreError, UsageError
from ..report import as_dict, finite
from . import models as m
from .summaries import FIELDS as SUMMARY_FIELDS, summarise

ENV_URL = "PYHARNESS_STORE"
MIGRATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
KINDS = {documents.KINDS[k]: k for k in ("bench", "run", "litmus", "kernel")}   # what the store takes


def default_path():
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                           "share")
    return os.path.join(base, "pyharness", "results.db")


def resolve_url(text=None, allow_memory=False):
    """The SQLAlchemy URL of a --store argument.  None or "":
    $PYHARNESS_STORE or the default file; a plain path: SQLite (as a path:
    '?' or '%' in it are part of the name)."""
    from sqlalchemy.engine import URL, make_url
    from sqlalchemy.exc import ArgumentError
    text = text or os.environ.get(ENV_URL) or ""
    if not text:
        return URL.create("sqlite", database=default_path())
    if "://" not in text:
        return URL.create("sqlite", database=os.path.abspath(text))
    try:
        url = make_url(text)
    except ArgumentError:
        raise UsageError(f"--store: '{text}' is not a database URL or a path") from None
    if url.drivername in ("postgresql", "postgres"):
        # psycopg 3 (the 'postgres' extra) unless the URL names a driver.
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise UsageError(f"--store: {url.get_backend_name()} is not supported "
                         "(sqlite:///path or postgresql://host/db)")
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:") \
            and not allow_memory:
        raise UsageError("--store: an in-memory SQLite store keeps nothing; name a file")
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


def _sqlite_transactions(engine):
    """pysqlite's own transaction handling commits at a RELEASE SAVEPOINT
    and begins lazily; SQLAlchemy's documented recipe hands transactions
    to us: BEGIN IMMEDIATE takes the write lock at once, so two processes
    migrating or adding never interleave, and a failed add leaves nothing."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def open_store(text=None, create=True, announce=True, allow_memory=False):
    """Open (and migrate) the store a --store argument names.  create:
    False refuses an SQLite file that does not exist yet, or one that is
    not a pyharness store (history, report: reading nothing is an error,
    not an empty answer)."""
    import sqlalchemy as sa
    url = resolve_url(text, allow_memory)
    created = False
    sqlite = url.get_backend_name() == "sqlite"
    if sqlite and url.database not in (None, "", ":memory:"):
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
        elif os.path.isdir(path):
            raise UsageError(f"--store {path}: is a directory")
        elif not os.access(path, os.R_OK | (os.W_OK if create else 0)):
            raise UsageError(f"--store: {path} is not {'writable' if create else 'readable'}")
    where = url.render_as_string(hide_password=True)
    try:
        if sqlite:
            engine = sa.create_engine(url, connect_args={"timeout": 60})
            _sqlite_transactions(engine)
        else:
            # pre_ping: a connection the server dropped during a long bench
            # is replaced instead of failing the result's write.
            engine = sa.create_engine(url, pool_pre_ping=True)
        store = Store(engine, url)
        state = store.ownership()
        if state == "empty" and not create:
            store.empty = True        # an empty database is an empty store: 0 results
        else:
            store.migrate()
    except ImportError as exc:
        raise StoreError(f"--store {where}: the database driver is not installed ({exc}); "
                         "pip install 'pyharness[postgres]'") from None
    except sa.exc.DatabaseError as exc:
        if sqlite and "not a database" in _db_message(exc):
            # a file that is not SQLite at all: bad input, not the environment
            raise UsageError(f"--store {where}: {url.database} is not an SQLite database") from None
        raise StoreError(f"--store {where}: {_db_message(exc)}") from None
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(f"--store {where}: {_db_message(exc)}") from None
    if created and announce:
        sys.stderr.write(f"pyharness: created the results store {url.database}\n")
    return store


def _db_message(exc):
    msg = str(getattr(exc, "orig", None) or exc).strip()
    return (msg.splitlines() or ["database error"])[0]


def _digest(doc):
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


def _identity(d):
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def _started(doc):
    """The result's start, naive UTC (both dialects store it alike); None
    when the document has none we can read (then: the time of recording)."""
    text = doc.get("started")
    if not isinstance(text, str) or not text:
        return None
    t = None
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"):
            try:
                t = dt.datetime.strptime(text, fmt)
                break
            except ValueError:
                pass
    if t is None:
        return None
    if t.tzinfo is not None:
        t = t.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return t


def _str(v, n=None):
    """A text field of a document as stored: None stays None; anything
    else becomes its text, without NULs or lone surrogates, cut to n."""
    if v is None:
        return None
    t = v if isinstance(v, str) else json.dumps(v) if isinstance(v, (dict, list)) else str(v)
    t = t.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return t[:n] if n else t


def _bool(v):
    return v if isinstance(v, bool) else None


def _int_or_none(v):
    return v if isinstance(v, int) and not isinstance(v, bool) and -2 ** 63 <= v < 2 ** 63 else None


def machine_identity(doc):
    mach = as_dict(doc.get("machine"))
    cpus = as_dict(doc.get("evidence")).get("cpus")
    c0 = as_dict(cpus[0]) if isinstance(cpus, list) and cpus else {}
    count = mach.get("cpu_count")
    return {"hostname": _str(mach.get("hostname")),
            "cpu_model": _str(mach.get("cpu_model") or c0.get("model_name")),
            "cpu_family": _str(c0.get("family"), 16), "cpu_model_number": _str(c0.get("model"), 16),
            "stepping": _str(c0.get("stepping"), 16), "microcode": _str(c0.get("microcode"), 32),
            "kernel": _str(mach.get("kernel")), "hypervisor": _bool(mach.get("hypervisor")),
            "cpu_count": count if isinstance(count, int) and not isinstance(count, bool) else None}


def build_identity(doc):
    b = as_dict(as_dict(doc.get("evidence")).get("build"))
    mach = as_dict(doc.get("machine"))
    abi = b.get("abi") or mach.get("abi")
    return {"version": _str(b.get("pyharness") or mach.get("pyharness")),
            "commit": _str(b.get("git_commit"), 64), "dirty": _bool(b.get("git_dirty")),
            "compiler": _str(b.get("compiler")), "cflags": _str(b.get("cflags")),
            "abi": abi if isinstance(abi, int) and not isinstance(abi, bool) else None}


def figures_of(doc):
    """[(name, kind, unit, median, floor, ratio, [(value, floor, ratio)])]
    of a bench or run document; what is not a finite number is left out."""
    out = []
    if doc.get("schema") == documents.KINDS["bench"]:
        for name, f in as_dict(doc.get("figures")).items():
            if not isinstance(f, dict):
                continue
            def nums(key):
                v = f.get(key)
                return [finite(x) for x in v] if isinstance(v, list) else []
            vals, fl, ra = nums("samples"), nums("floor_samples"), nums("ratio_to_floor_samples")
            if len(fl) != len(vals):
                fl = [None] * len(vals)
            if len(ra) != len(vals):
                ra = [None] * len(vals)
            out.append((_str(name), _str(f.get("kind"), 32), _str(f.get("unit"), 32),
                        finite(as_dict(f.get("summary")).get("median")), finite(f.get("floor_ns")),
                        finite(f.get("ratio_to_floor")),
                        [t for t in zip(vals, fl, ra) if t[0] is not None]))
    elif doc.get("schema") == documents.KINDS["kernel"]:
        # The kernel's cost per flip: one series per target and item
        for tname, t in as_dict(doc.get("targets")).items():
            for it in (as_dict(t).get("items") or []):
                if not isinstance(it, dict):
                    continue
                lat = as_dict(it.get("latency_us"))
                for q in ("p50", "p99"):
                    v = finite(lat.get(q))
                    if v is not None:
                        out.append((f"kernel/{_str(tname)}/{_str(it.get('name'))}/flip_us/{q}", "kernel",
                                    "us", v, None, None, [(v, None, None)]))
                for key, unit in (("ipis_per_flip", "IPIs"), ("tlb_shootdowns_per_flip", "TLB IPIs")):
                    v = finite(it.get(key))
                    if v is not None:
                        out.append((f"kernel/{_str(tname)}/{_str(it.get('name'))}/{key}", "kernel",
                                    unit, v, None, None, [(v, None, None)]))
    elif doc.get("schema") == documents.KINDS["litmus"]:
        # What each shape costs, as trials per second against its data floor
        for v in doc.get("verdicts") or []:
            if not isinstance(v, dict) or finite(v.get("trials_per_s")) is None:
                continue
            rate, fl = finite(v.get("trials_per_s")), finite(v.get("floor_trials_per_s"))
            ratio = finite(v.get("floor_ratio"))
            out.append((f"litmus/{_str(v.get('test'))}/{_str(v.get('placement'))}/trials_per_s",
                        "litmus", "1/s", rate, fl, ratio, [(rate, fl, ratio)]))
    else:
        scen = _str(doc.get("scenario")) or "run"
        # A deliberately broken protocol, or another protocol, is a series
        # of its own: never mixed into the correct protocol's line.
        cfg = as_dict(doc.get("config"))
        for key, normal in (("protocol", "rfc"), ("mutant", "none")):
            v = _str(cfg.get(key), 64)
            if v and v != normal:
                scen += f"+{key}={v}"
        d = as_dict(doc.get("distributions"))
        rows = [("site_ns", d.get("site_ns")), ("bp_handler_ns", d.get("bp_handler_ns"))]
        rows += [(f"ack_wait_ns/{k}", v) for k, v in as_dict(d.get("ack_wait_ns")).items()]
        for what, dist in rows:
            if not isinstance(dist, dict) or not dist.get("count"):
                continue
            for q in ("p50", "p99"):
                v = finite(dist.get(q))
                if v is not None:
                    out.append((f"run/{scen}/{what}/{q}", "run", "ns", v, None, None,
                                [(v, None, None)]))
    return out


class Store:
    def __init__(self, engine, url):
        self.engine = engine
        self.url = url
        self.empty = False        # opened for reading, holds no tables yet

    def url_for_hint(self):
        """The store's URL for a command we print: SQLite as its path, a
        server's URL with its password left out."""
        if self.url.get_backend_name() == "sqlite":
            return self.url.database
        return self.url.set(password=None).render_as_string(hide_password=False) \
            .replace("postgresql+psycopg://", "postgresql://")

    def ownership(self):
        """"empty" (no tables: ours to initialise), "ours" (our schema at a
        revision), or UsageError (exit 2) for a database that belongs to
        something else: tables that are not ours, or an Alembic history of
        another application.  Never writes."""
        import sqlalchemy as sa
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory
        names = set(sa.inspect(self.engine).get_table_names())
        if not names:
            return "empty"
        ours = {t.name for t in m.metadata.sorted_tables}
        where = self.describe()
        foreign = UsageError(f"--store {where}: this database belongs to something else (tables "
                             f"{', '.join(sorted(names)[:6])}{', ...' if len(names) > 6 else ''}"
                             "); name an empty database or a new file")
        if "alembic_version" not in names:
            if ours <= names:
                return "ours"
            raise foreign
        with self.engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
        if current is None:           # an empty version table: ours only if nothing else is there
            if names - {"alembic_version"}:
                raise foreign
            return "ours"
        scripts = ScriptDirectory.from_config(_alembic_config(None))
        if current in {s.revision for s in scripts.walk_revisions()} or ours <= names:
            return "ours"      # at a revision we know, or migrated further by a newer pyharness
        raise UsageError(f"--store {where}: this database belongs to another application (its "
                         f"Alembic revision {current} is not pyharness's, tables "
                         f"{', '.join(sorted(names - {'alembic_version'})[:6])}); name an empty "
                         "database or a new file")

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
        if self.empty:
            return None
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def migrate(self):
        """Upgrade to head; refuse a revision this pyharness does not know."""
        from alembic import command
        from alembic.script import ScriptDirectory
        from alembic.util import CommandError
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                # One box migrates at a time; the others wait, then find
                # the schema at head (SQLite: BEGIN IMMEDIATE does this).
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7243591)")
            from alembic.runtime.migration import MigrationContext
            current = MigrationContext.configure(conn).get_current_revision()
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
        when this very document is stored already, (its id, False).  A
        document the store cannot take is a UsageError naming it; a
        database failure a StoreError: one line either way."""
        import sqlalchemy as sa
        what = source or "result"
        schema = doc.get("schema") if isinstance(doc, dict) else None
        if schema not in KINDS:
            raise UsageError(f"{what}: not a pyharness bench, run, litmus or kernel result (schema {schema!r})")
        tags = {_str(k): _str(v) for k, v in (tags or {}).items()}
        try:
            digest = _digest(doc)
            blob = zlib.compress(json.dumps(doc).encode("utf-8", "surrogatepass"), 6)
            figs = figures_of(doc)
        except (TypeError, ValueError, AttributeError) as exc:
            raise UsageError(f"{what}: cannot be stored: {exc}") from None
        try:
            return self._add(doc, tags, source, schema, digest, blob, figs)
        except sa.exc.IntegrityError:
            # The same document added by another process meanwhile.
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(m.results.c.id)
                                   .where(m.results.c.digest == digest)).first()
            if row:
                return row[0], False
            raise StoreError(f"{what}: the store refused it") from None
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"{what}: {self.describe()}: {_db_message(exc)}") from None

    def add_many(self, docs, tags=None):
        """Record many documents in one transaction (a generator's, an
        import's batch): [(result id, new)].  Any failure adds none."""
        import sqlalchemy as sa
        out = []
        try:
            with self.engine.begin() as conn:
                for doc in docs:
                    digest = _digest(doc)
                    blob = zlib.compress(json.dumps(doc).encode("utf-8", "surrogatepass"), 6)
                    out.append(self._insert(conn, doc, {_str(k): _str(v) for k, v in
                                                        (tags or {}).items()},
                                            None, doc.get("schema"), digest, blob, figures_of(doc)))
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"{self.describe()}: {_db_message(exc)}") from None
        return out

    def _add(self, doc, tags, source, schema, digest, blob, figs):
        with self.engine.begin() as conn:
            return self._insert(conn, doc, tags, source, schema, digest, blob, figs)

    def _insert(self, conn, doc, tags, source, schema, digest, blob, figs):
        import sqlalchemy as sa
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        cfg = as_dict(doc.get("config"))
        row = conn.execute(sa.select(m.results.c.id).where(m.results.c.digest == digest)).first()
        if row:
            return row[0], False
        mid = self._get_or_add(conn, m.machines, machine_identity(doc))
        bid = self._get_or_add(conn, m.builds, build_identity(doc))
        cpus = doc.get("cpus") or cfg.get("cpus") or []
        inject = doc.get("inject_delay_ns") or cfg.get("inject_delay_ns") or 0
        rid = conn.execute(m.results.insert().values(
            digest=digest, kind=KINDS[schema], started=_started(doc) or now, recorded=now,
            machine_id=mid, build_id=bid, quick=_bool(doc.get("quick")),
            inject_delay_ns=int(inject) if isinstance(inject, int) and 0 <= inject < 2 ** 63
            else None,
            cpus=_str(",".join(str(c) for c in cpus) if isinstance(cpus, list) else cpus),
            verdict=_str(doc.get("verdict"), 32), source=_str(source), schema=schema,
            document=blob)).inserted_primary_key[0]
        if tags:
            conn.execute(m.tags.insert(), [{"result_id": rid, "key": k, "value": v}
                                           for k, v in sorted(tags.items())])
        seen = set()
        for name, kind, unit, med, floor, ratio, smp in figs:
            if name in seen:
                continue
            seen.add(name)
            fid = conn.execute(m.figures.insert().values(
                result_id=rid, name=name, kind=kind, unit=unit, median=med,
                floor_median=floor, ratio_median=ratio, **summarise(smp))).inserted_primary_key[0]
            rows = [{"figure_id": fid, "seq": i, "value": v, "floor": f, "ratio": r}
                    for i, (v, f, r) in enumerate(smp)]
            if rows:
                conn.execute(m.samples.insert(), rows)
        if schema == documents.KINDS["litmus"]:
            vs = [v for v in doc.get("verdicts") or [] if isinstance(v, dict) and "observation" in v]
            if vs:
                conn.execute(m.litmus_verdicts.insert(), [{
                    "result_id": rid, "test": _str(v.get("test")) or "?", "hash": _str(v.get("hash"), 64),
                    "placement": _str(v.get("placement"), 32),
                    "cpus": _str(",".join(str(c) for c in v.get("cpus") or [])),
                    "observation": _str(v.get("observation"), 16),
                    "positive": _int_or_none(v.get("positive")), "negative": _int_or_none(v.get("negative")),
                    "raced": _int_or_none(v.get("raced")), "trusted": _bool(v.get("trusted")),
                    "trials_per_s": finite(v.get("trials_per_s")),
                    "floor_trials_per_s": finite(v.get("floor_trials_per_s"))} for v in vs])
        return rid, True

    def litmus_verdicts(self):
        """Every stored litmus verdict with its machine: dicts, oldest first."""
        import sqlalchemy as sa
        if self.empty:
            return []
        lv, r, mc = m.litmus_verdicts, m.results, m.machines
        q = (sa.select(lv.c.test, lv.c.hash, lv.c.placement, lv.c.cpus, lv.c.observation,
                       lv.c.positive, lv.c.negative, lv.c.raced, lv.c.trusted, lv.c.trials_per_s,
                       lv.c.floor_trials_per_s, r.c.id.label("result_id"), r.c.started,
                       mc.c.hostname, mc.c.cpu_model, mc.c.cpu_family, mc.c.cpu_model_number,
                       mc.c.stepping, mc.c.microcode, mc.c.hypervisor)
             .select_from(lv.join(r, lv.c.result_id == r.c.id).join(mc, r.c.machine_id == mc.c.id))
             .order_by(r.c.started, lv.c.id))
        try:
            with self.engine.connect() as conn:
                return [dict(row._mapping) for row in conn.execute(q)]
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"{self.describe()}: {_db_message(exc)}") from None

    # -- reading -------------------------------------------------------------
    def results(self, machine=None, tags=None, kind=None):
        """Result rows (dicts) with machine, build and tags, oldest first."""
        import sqlalchemy as sa
        if self.empty:
            return []
        q = (sa.select(m.results.c.id, m.results.c.kind, m.results.c.started,
                       m.results.c.quick, m.results.c.inject_delay_ns, m.results.c.verdict,
                       m.results.c.source, m.results.c.cpus,
                       m.machines.c.id.label("machine_id"), m.machines.c.hostname,
                       m.machines.c.cpu_model, m.machines.c.cpu_family,
                       m.machines.c.cpu_model_number, m.machines.c.stepping,
                       m.machines.c.cpu_count, m.machines.c.microcode, m.machines.c.kernel,
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
            r["series_key"] = series_key(r)
        if machine:
            rows = [r for r in rows if machine_matches(r, machine)]
        for k, v in (tags or {}).items():
            rows = [r for r in rows if r["tags"].get(k) == v]
        return rows

    def figure_samples(self, result_ids, figure_glob=None, names=None):
        """{result id: {figure name: {"kind", "unit", "median", "floor", "ratio",
        "samples": [(value, floor, ratio)]}}}; names: exact figure names
        (no pattern), instead of globs."""
        import sqlalchemy as sa
        out = {}
        ids = list(result_ids)
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                q = sa.select(m.figures).where(m.figures.c.result_id.in_(chunk))
                if names is not None:
                    q = q.where(m.figures.c.name.in_(list(names)))
                figs = conn.execute(q)
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

    def figure_summaries(self, kind=None, figure_glob=None, result_ids=None):
        """{result id: {figure name: {"kind", "unit", "median", "n", "raw_p10",
        "raw_p90", "ratio_med", "ratio_p10", "ratio_p90", "floor_med"}}}: one
        row per result and figure, no sample read (what a history needs)."""
        import sqlalchemy as sa
        if self.empty:
            return {}
        f, r = m.figures, m.results
        cols = [f.c.result_id, f.c.name, f.c.kind, f.c.unit, f.c.median] + \
            [getattr(f.c, c) for c in SUMMARY_FIELDS]
        q = sa.select(*cols)
        if kind:
            q = q.select_from(f.join(r, f.c.result_id == r.c.id)).where(r.c.kind == kind)
        if figure_glob and all(not any(ch in g for ch in "*?[") for g in figure_glob):
            q = q.where(f.c.name.in_(list(figure_glob)))
        keep = set(result_ids) if result_ids is not None else None
        keys = ("kind", "unit", "median") + SUMMARY_FIELDS
        out, names = {}, {}
        with self.engine.connect() as conn:
            rows = conn.execute(q).fetchall()      # one fetch, not one per row
            for row in rows:
                rid, name = row[0], row[1]
                if keep is not None and rid not in keep:
                    continue
                if figure_glob:
                    ok = names.get(name)
                    if ok is None:
                        ok = names[name] = any(fnmatch.fnmatchcase(name, g) for g in figure_glob)
                    if not ok:
                        continue
                out.setdefault(rid, {})[name] = dict(zip(keys, row[2:]))
        return out

    def document(self, result_id):
        import sqlalchemy as sa
        with self.engine.connect() as conn:
            blob = conn.execute(sa.select(m.results.c.document)
                                .where(m.results.c.id == result_id)).scalar_one()
        return json.loads(zlib.decompress(blob))


SERIES_FIELDS = ("hostname", "cpu_model", "cpu_family", "cpu_model_number", "stepping",
                 "cpu_count", "hypervisor", "cpus", "quick")


def series_key(row):
    """What one history line holds fixed: the box and its CPU, the CPUs the
    bench ran on, quick or full.  Kernel, microcode and build change along
    a line (what a history is for: a kernel update shows as a change
    point, with the kernel named there); a sha256 prefix of the fields."""
    return hashlib.sha256(json.dumps([row.get(k) for k in SERIES_FIELDS]).encode()).hexdigest()[:16]


def machine_matches(row, text):
    """--machine M: a hostname, a CPU model substring, or an identity prefix."""
    t = text.lower()
    return (t == (row.get("hostname") or "").lower() or
            t in (row.get("cpu_model") or "").lower() or
            (len(t) >= 6 and ((row.get("machine_identity") or "").startswith(t) or
                              (row.get("series_key") or "").startswith(t))))
