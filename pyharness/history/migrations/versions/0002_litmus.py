"""Schema 2: litmus verdicts, one row per test and placement of a litmus
document (pyharness litmus --store).

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "litmus_verdicts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("result_id", sa.Integer, sa.ForeignKey("results.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("test", sa.Text, nullable=False),
        sa.Column("hash", sa.String(64)),
        sa.Column("placement", sa.String(32)),
        sa.Column("cpus", sa.Text),
        sa.Column("observation", sa.String(16)),
        sa.Column("positive", sa.BigInteger),
        sa.Column("negative", sa.BigInteger),
        sa.Column("raced", sa.BigInteger),
        sa.Column("trusted", sa.Boolean),
        sa.Column("trials_per_s", sa.Float),
        sa.Column("floor_trials_per_s", sa.Float),
    )
    op.create_index("ix_litmus_verdicts_result", "litmus_verdicts", ["result_id"])


def downgrade():
    op.drop_index("ix_litmus_verdicts_result", table_name="litmus_verdicts")
    op.drop_table("litmus_verdicts")
