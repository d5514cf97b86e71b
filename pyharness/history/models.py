"""The results store's tables (SQLAlchemy Core), one schema for SQLite and
PostgreSQL.  Migrations (pyharness/history/migrations) create and change
them; this module is what the code reads and writes.  Keep the two in step:
a change here is a new migration there (tests/test_history.py checks that
the migrated schema and these tables agree).

    machines  one per machine identity (host, CPU model, family/model/
              stepping, microcode, kernel, hypervisor, CPU count)
    builds    one per build identity (version, commit, dirty, compiler,
              flags, ABI)
    results   one per bench or run document, with its whole JSON kept
              (zlib), so nothing a later pyharness wants is lost
    tags      user tags of a result (--tag kernel=6.18-rc1)
    figures   one row per figure of a result: its median, floor, ratio, and
              the summary of its samples a history reads (count, p10/p90,
              the medians of its ratios and floors)
    samples   each figure's per-run samples: value, floor, ratio
    litmus_verdicts  one per litmus test and placement of a litmus
              document: the test (name, hash), its observation, Positive,
              Negative, raced executions, trials per second and its floor
"""
from sqlalchemy import (BigInteger, Boolean, Column, DateTime, Float, ForeignKey, Index,
                        Integer, LargeBinary, MetaData, String, Table, Text, UniqueConstraint)

metadata = MetaData()

machines = Table(
    "machines", metadata,
    Column("id", Integer, primary_key=True),
    Column("identity", String(64), nullable=False, unique=True),
    Column("hostname", Text),
    Column("cpu_model", Text),
    Column("cpu_family", String(16)),
    Column("cpu_model_number", String(16)),
    Column("stepping", String(16)),
    Column("microcode", String(32)),
    Column("kernel", Text),
    Column("hypervisor", Boolean),
    Column("cpu_count", Integer),
)

builds = Table(
    "builds", metadata,
    Column("id", Integer, primary_key=True),
    Column("identity", String(64), nullable=False, unique=True),
    Column("version", Text),
    Column("commit", String(64)),
    Column("dirty", Boolean),
    Column("compiler", Text),
    Column("cflags", Text),
    Column("abi", Integer),
)

results = Table(
    "results", metadata,
    Column("id", Integer, primary_key=True),
    Column("digest", String(64), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("started", DateTime, nullable=False),
    Column("recorded", DateTime, nullable=False),
    Column("machine_id", Integer, ForeignKey("machines.id"), nullable=False),
    Column("build_id", Integer, ForeignKey("builds.id"), nullable=False),
    Column("quick", Boolean),
    Column("inject_delay_ns", BigInteger),
    Column("cpus", Text),
    Column("verdict", String(32)),
    Column("source", Text),
    Column("schema", String(64), nullable=False),
    Column("document", LargeBinary, nullable=False),
)
Index("ix_results_machine_started", results.c.machine_id, results.c.started)

tags = Table(
    "tags", metadata,
    Column("id", Integer, primary_key=True),
    Column("result_id", Integer, ForeignKey("results.id", ondelete="CASCADE"), nullable=False),
    Column("key", Text, nullable=False),
    Column("value", Text, nullable=False),
    UniqueConstraint("result_id", "key", name="uq_tags_result_key"),
)
Index("ix_tags_key_value", tags.c.key, tags.c.value)

figures = Table(
    "figures", metadata,
    Column("id", Integer, primary_key=True),
    Column("result_id", Integer, ForeignKey("results.id", ondelete="CASCADE"), nullable=False),
    Column("name", Text, nullable=False),
    Column("kind", String(32)),
    Column("unit", String(32)),
    Column("median", Float),
    Column("floor_median", Float),
    Column("ratio_median", Float),
    # the per-result summary of its samples (history/summaries.py; schema 3):
    # what a history reads instead of every sample
    Column("n", Integer),
    Column("raw_med", Float),
    Column("raw_p10", Float),
    Column("raw_p90", Float),
    Column("ratio_med", Float),
    Column("ratio_p10", Float),
    Column("ratio_p90", Float),
    Column("floor_med", Float),
    UniqueConstraint("result_id", "name", name="uq_figures_result_name"),
)
Index("ix_figures_name", figures.c.name)

samples = Table(
    "samples", metadata,
    Column("id", Integer, primary_key=True),
    Column("figure_id", Integer, ForeignKey("figures.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("value", Float, nullable=False),
    Column("floor", Float),
    Column("ratio", Float),
)
Index("ix_samples_figure", samples.c.figure_id)

litmus_verdicts = Table(
    "litmus_verdicts", metadata,
    Column("id", Integer, primary_key=True),
    Column("result_id", Integer, ForeignKey("results.id", ondelete="CASCADE"), nullable=False),
    Column("test", Text, nullable=False),
    Column("hash", String(64)),
    Column("placement", String(32)),
    Column("cpus", Text),
    Column("observation", String(16)),
    Column("positive", BigInteger),
    Column("negative", BigInteger),
    Column("raced", BigInteger),
    Column("trusted", Boolean),
    Column("trials_per_s", Float),
    Column("floor_trials_per_s", Float),
)
Index("ix_litmus_verdicts_result", litmus_verdicts.c.result_id)
