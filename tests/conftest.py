"""Shared fixtures.  Tests run on 2-CPU machines and never rely on timing
luck: waits have deadlines and count; nothing asserts a duration."""
import os
import subprocess
import sys

import pytest

from pyharness.cpus import usable_cpus


@pytest.fixture(autouse=True)
def _no_user_store(tmp_path_factory, monkeypatch):
    """No test writes to the user's own results store: the default store
    lives in a scratch directory, and $PYHARNESS_STORE is unset."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg")))
    monkeypatch.delenv("PYHARNESS_STORE", raising=False)


REAL_BENCHES = os.path.join(os.path.dirname(__file__), "data", "bench-vm-30.json.gz")


@pytest.fixture(scope="session")
def real():
    """30 real `bench --quick` results of one build on our VM, and one with
    --inject-delay-ns 2000 after them (see its "about")."""
    import gzip
    import json
    with gzip.open(REAL_BENCHES, "rt") as f:
        return json.load(f)


@pytest.fixture
def two_cpus():
    """Two threads' CPUs: two distinct CPUs where we have them."""
    cpus = usable_cpus()
    return cpus[:2] if len(cpus) >= 2 else [cpus[0], cpus[0]]


@pytest.fixture
def run_cli(tmp_path):
    """Run `python -m pyharness ...` from a scratch directory (so a source
    checkout never shadows the installed package) and return the result."""
    def run(*args, timeout=120, preexec_fn=None, env=None, input=None):
        return subprocess.run([sys.executable, "-m", "pyharness", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=timeout,
                              preexec_fn=preexec_fn, input=input,
                              env=dict(os.environ, **env) if env else None)
    return run


def pytest_report_header(config):
    return f"pyharness tests: usable CPUs {usable_cpus()}, pid {os.getpid()}"


# ---------------------------------------------------------------------------
# A real PostgreSQL server for the results store's tests: initdb into a
# temporary directory, listening on a private Unix socket only.

def _pg_bindir():
    import glob
    import shutil
    cands = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    if shutil.which("initdb"):
        cands.append(os.path.dirname(shutil.which("initdb")))
    for d in cands:
        if all(os.access(os.path.join(d, b), os.X_OK) for b in ("initdb", "pg_ctl", "postgres")):
            return d
    return None


@pytest.fixture(scope="session")
def postgres_server():
    """(socket directory, port); skipped with the reason where the server
    binaries or the driver are absent.  As root, the server runs as the
    'postgres' user (or nobody): PostgreSQL refuses to run as root."""
    import pwd
    import shutil
    import tempfile
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install '.[test]')")
    base = tempfile.mkdtemp(prefix="ph-pg-")
    kw = {}
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pw = pwd.getpwnam("nobody")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        os.chmod(base, 0o700)
        kw = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    data, log, port = os.path.join(base, "data"), os.path.join(base, "log"), 5432

    def pg(*args, check=True):
        return subprocess.run([os.path.join(bindir, args[0]), *args[1:]], capture_output=True,
                              text=True, timeout=120, check=check, cwd=base, **kw)
    try:
        pg("initdb", "-D", data, "-A", "trust", "-U", "pyharness", "--no-sync", "-E", "UTF8")
        pg("pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "-o",
           f"-k {base} -c listen_addresses='' -p {port} -F", "start")
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {exc.stderr.strip()[-500:]}")
    yield base, port
    pg("pg_ctl", "-D", data, "-m", "immediate", "stop", check=False)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def store_url(request, tmp_path):
    """A fresh, empty store's URL: SQLite, or a new database on the test
    PostgreSQL server (tests parametrize over both with indirect=True)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return "sqlite:///" + str(tmp_path / "results.db")
    from _support import pg_database
    name = "t%d_%d" % (os.getpid(), request.node.nodeid.__hash__() & 0xffffff)
    return pg_database(request.getfixturevalue("postgres_server"), name)
