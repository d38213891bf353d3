"""The schema of results.db at commit 41a8105: seven tables, runs without engine columns, progress as text.

Revision ID: 0001
Revises:
Create Date: 2026-11-21

A database made before Alembic with this shape is stamped 0001 (``legacy.identify``) and never runs this
script; it creates the tables only when the revisions are run from an empty database (the test that holds
the scripts against ``repro.db.schema``). Frozen: these definitions never change with the current schema.
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "papers",
        sa.Column("slug", sa.String(64), primary_key=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("authors", sa.Text, nullable=False),
        sa.Column("source", sa.String(256), nullable=False),
    )
    op.create_table(
        "published_cells",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("paper", sa.String(64), nullable=False),
        sa.Column("table_name", sa.String(64), nullable=False),
        sa.Column("section", sa.String(128), nullable=False),
        sa.Column("row", sa.String(256), nullable=False),
        sa.Column("column", sa.String(128), nullable=False),
        sa.Column("metric", sa.String(32), nullable=False),
        sa.Column("printed", sa.String(32), nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("uncertain", sa.Text),
        sa.Column("not_reproducible", sa.Text),
        sa.Column("cited", sa.Text),
        sa.Column("config_key", sa.String(64)),
        sa.UniqueConstraint("paper", "table_name", "section", "row", "column"),
    )
    op.create_index("ix_published_cells_paper", "published_cells", ["paper"])
    op.create_index("ix_published_cells_config_key", "published_cells", ["config_key"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("config_key", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("budget", sa.String(32), nullable=False),
        sa.Column("seed", sa.Integer),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(256)),
        sa.Column("heartbeat_at", sa.DateTime),
        sa.Column("progress", sa.String(128)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_jobs_config_key", "jobs", ["config_key"])
    op.create_index("ix_jobs_state", "jobs", ["state"])
    op.create_table(
        "spec_tables",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("paper", sa.String(64), sa.ForeignKey("papers.slug"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("caption", sa.Text),
        sa.UniqueConstraint("paper", "name"),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("ended_at", sa.DateTime),
        sa.Column("host", sa.String(256), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("git_commit", sa.String(64)),
        sa.Column("git_dirty", sa.Boolean),
        sa.Column("versions", sa.JSON, nullable=False),
        sa.Column("resumed_from_epoch", sa.Integer),
    )
    op.create_index("ix_runs_job_id", "runs", ["job_id"])
    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("detail", sa.String(128)),
        sa.UniqueConstraint("job_id", "name"),
    )
    op.create_index("ix_metrics_job_id", "metrics", ["job_id"])
    op.create_table(
        "curve_points",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("epoch", sa.Integer, nullable=False),
        *(sa.Column(name, sa.Float, nullable=False) for name in
          ("train_loss", "train_top1_err", "train_top5_err", "test_top1_err", "test_top5_err", "lr", "seconds")),
        sa.UniqueConstraint("job_id", "epoch"),
    )
    op.create_index("ix_curve_points_job_id", "curve_points", ["job_id"])


def downgrade() -> None:
    raise NotImplementedError("repro's migrations are one-way: restore a backup to go back")
