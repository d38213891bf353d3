"""Typed states: a job's progress as numbers (jobs.progress_done, progress_total, progress_unit) instead of
the text jobs.progress, and where a run diverged as columns (runs.diverged_value, diverged_unit,
diverged_at, diverged_lr) instead of only the words of its error.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04

The old sentences are read once, here, into the new columns ("epoch 7", "iteration 120/9000"; "loss
became nan at epoch 3", "... at iteration 120 (lr 0.01)"); text that says something else leaves them
NULL. jobs.progress is then dropped (batch mode: SQLite rebuilds the table). Adds only what is missing: a
pre-Alembic database may hold the new columns already (``legacy``).
"""
import re

import sqlalchemy as sa
from alembic import op

from repro.db.migrations.legacy import add_missing_columns

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PROGRESS = re.compile(r"(epoch|iteration) (\d+)(?:(?:/| of )(\d+))?")
DIVERGED = re.compile(r"loss became [-+]?(nan|inf) at (epoch|iteration) (\d+)(?: \(lr ([-+.\deE]+)\))?", re.I)


def upgrade() -> None:
    add_missing_columns("jobs", sa.Column("progress_done", sa.Integer), sa.Column("progress_total", sa.Integer),
                        sa.Column("progress_unit", sa.String(16)))
    add_missing_columns("runs", sa.Column("diverged_value", sa.String(8)), sa.Column("diverged_unit", sa.String(16)),
                        sa.Column("diverged_at", sa.Integer), sa.Column("diverged_lr", sa.Float))
    conn = op.get_bind()
    jobs = sa.table("jobs", sa.column("id"), sa.column("progress"), sa.column("progress_done"),
                    sa.column("progress_total"), sa.column("progress_unit"))
    runs = sa.table("runs", sa.column("id"), sa.column("status"), sa.column("error"), sa.column("diverged_value"),
                    sa.column("diverged_unit"), sa.column("diverged_at"), sa.column("diverged_lr"))
    if "progress" in {c["name"] for c in sa.inspect(conn).get_columns("jobs")}:
        rows = conn.execute(sa.select(jobs.c.id, jobs.c.progress)
                            .where(jobs.c.progress.is_not(None), jobs.c.progress_unit.is_(None))).all()
        for job_id, text in rows:
            if m := PROGRESS.match(text):
                conn.execute(jobs.update().where(jobs.c.id == job_id).values(
                    progress_unit=m[1], progress_done=int(m[2]), progress_total=int(m[3]) if m[3] else None))
        with op.batch_alter_table("jobs") as batch:
            batch.drop_column("progress")
    rows = conn.execute(sa.select(runs.c.id, runs.c.error)
                        .where(runs.c.status == "diverged", runs.c.diverged_value.is_(None))).all()
    for run_id, error in rows:
        if m := DIVERGED.search(error or ""):
            conn.execute(runs.update().where(runs.c.id == run_id).values(
                diverged_value=m[1].lower(), diverged_unit=m[2], diverged_at=int(m[3]),
                diverged_lr=float(m[4]) if m[4] else None))


def downgrade() -> None:
    raise NotImplementedError("repro's migrations are one-way: restore a backup to go back")
