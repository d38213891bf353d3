"""Jobs that build on jobs: jobs.upstream (the jobs whose weights a job starts from) and
jobs.failed_upstream, the artifacts table (trained weights kept by content), and what a run started from
and how it read its data (runs.init_from, runs.data).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

Adds only: an older database's jobs have no upstream (NULL), its runs no init_from or data record.
"""
import sqlalchemy as sa
from alembic import op

from repro.db.migrations.legacy import add_missing_columns, has_table

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_missing_columns("jobs", sa.Column("upstream", sa.JSON), sa.Column("failed_upstream", sa.String(64)))
    add_missing_columns("runs", sa.Column("data", sa.JSON), sa.Column("init_from", sa.JSON))
    if not has_table("artifacts"):
        op.create_table(
            "artifacts",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id"), nullable=False, index=True),
            sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("sha256", sa.String(64), nullable=False, index=True),
            sa.Column("path", sa.Text, nullable=False),
            sa.Column("size", sa.BigInteger, nullable=False),
            sa.Column("created_at", sa.DateTime, nullable=False),
            sa.UniqueConstraint("job_id", "kind"))


def downgrade() -> None:
    raise NotImplementedError("repro's migrations are one-way: restore a backup to go back")
