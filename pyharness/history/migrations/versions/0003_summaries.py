"""Schema 3: each figure's per-result summary, kept when the result is
written, so that a history reads one row per result and figure (its sample
count, and the medians and p10/p90 of its raw times, its ratios to the
floor and its floors) instead of every sample: history at the size a fleet
produces (issue 27).  The samples stay, for a figure's detail and for the
tests that pool them.  Existing rows are summarised from their samples.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = ("n", "raw_med", "raw_p10", "raw_p90", "ratio_med", "ratio_p10", "ratio_p90", "floor_med")


def upgrade():
    with op.batch_alter_table("figures") as b:
        b.add_column(sa.Column("n", sa.Integer))
        for c in COLUMNS[1:]:
            b.add_column(sa.Column(c, sa.Float))
    from pyharness.history.summaries import summarise
    conn = op.get_bind()
    figs = sa.table("figures", sa.column("id"), *[sa.column(c) for c in COLUMNS])
    smp = sa.table("samples", sa.column("figure_id"), sa.column("seq"), sa.column("value"),
                   sa.column("floor"), sa.column("ratio"))
    rows = conn.execute(sa.select(smp.c.figure_id, smp.c.value, smp.c.floor, smp.c.ratio)
                        .order_by(smp.c.figure_id, smp.c.seq))
    cur, acc, updates = None, [], []

    def flush():
        if cur is not None:
            updates.append({"fid": cur, **summarise(acc)})
    for fid, v, fl, ra in rows:
        if fid != cur:
            flush()
            cur, acc = fid, []
        acc.append((v, fl, ra))
    flush()
    if updates:
        conn.execute(figs.update().where(figs.c.id == sa.bindparam("fid"))
                     .values({c: sa.bindparam(c) for c in COLUMNS}), updates)


def downgrade():
    with op.batch_alter_table("figures") as b:
        for c in COLUMNS:
            b.drop_column(c)
