"""Schema 1: machines, builds, results (with their whole document), tags,
figures and their per-run samples.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "machines",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("identity", sa.String(64), nullable=False, unique=True),
        sa.Column("hostname", sa.Text),
        sa.Column("cpu_model", sa.Text),
        sa.Column("cpu_family", sa.String(16)),
        sa.Column("cpu_model_number", sa.String(16)),
        sa.Column("stepping", sa.String(16)),
        sa.Column("microcode", sa.String(32)),
        sa.Column("kernel", sa.Text),
        sa.Column("hypervisor", sa.Boolean),
        sa.Column("cpu_count", sa.Integer),
    )
    op.create_table(
        "builds",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("identity", sa.String(64), nullable=False, unique=True),
        sa.Column("version", sa.Text),
        sa.Column("commit", sa.String(64)),
        sa.Column("dirty", sa.Boolean),
        sa.Column("compiler", sa.Text),
        sa.Column("cflags", sa.Text),
        sa.Column("abi", sa.Integer),
    )
    op.create_table(
        "results",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("started", sa.DateTime, nullable=False),
        sa.Column("recorded", sa.DateTime, nullable=False),
        sa.Column("machine_id", sa.Integer, sa.ForeignKey("machines.id"), nullable=False),
        sa.Column("build_id", sa.Integer, sa.ForeignKey("builds.id"), nullable=False),
        sa.Column("quick", sa.Boolean),
        sa.Column("inject_delay_ns", sa.BigInteger),
        sa.Column("cpus", sa.Text),
        sa.Column("verdict", sa.String(32)),
        sa.Column("source", sa.Text),
        sa.Column("schema", sa.String(64), nullable=False),
        sa.Column("document", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_results_machine_started", "results", ["machine_id", "started"])
    op.create_table(
        "tags",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("result_id", sa.Integer, sa.ForeignKey("results.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.UniqueConstraint("result_id", "key", name="uq_tags_result_key"),
    )
    op.create_index("ix_tags_key_value", "tags", ["key", "value"])
    op.create_table(
        "figures",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("result_id", sa.Integer, sa.ForeignKey("results.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("kind", sa.String(32)),
        sa.Column("unit", sa.String(32)),
        sa.Column("median", sa.Float),
        sa.Column("floor_median", sa.Float),
        sa.Column("ratio_median", sa.Float),
        sa.UniqueConstraint("result_id", "name", name="uq_figures_result_name"),
    )
    op.create_index("ix_figures_name", "figures", ["name"])
    op.create_table(
        "samples",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("figure_id", sa.Integer, sa.ForeignKey("figures.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("floor", sa.Float),
        sa.Column("ratio", sa.Float),
    )
    op.create_index("ix_samples_figure", "samples", ["figure_id"])


def downgrade():
    for t in ("samples", "figures", "tags", "results", "builds", "machines"):
        op.drop_table(t)
