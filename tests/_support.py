"""Helpers the test modules import (conftest.py holds the fixtures; a
module named conftest is ambiguous once tests/bench/ is collected too)."""


def one_line(proc):
    """The one line on stderr a bad input must print; fails the test if there
    is more, or a traceback."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def pg_database(postgres_server, name):
    """A fresh database on the test PostgreSQL server (conftest.py's
    postgres_server): its store URL."""
    import sqlalchemy as sa
    sock, port = postgres_server
    admin = sa.create_engine(f"postgresql+psycopg://pyharness@/postgres?host={sock}&port={port}",
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"postgresql://pyharness@/{name}?host={sock}&port={port}"
