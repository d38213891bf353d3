"""How each run ran (runs.engine, precision, compiled, threads) and three tables: checkpoints (only a file
this database recorded is resumed), benchmarks (``repro bench``), model_counts (the estimate's cache).
The schema of results.db at commit 27fe364.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

Adds only what is missing: a pre-Alembic database may hold part of this already (``legacy``).
"""
import sqlalchemy as sa
from alembic import op

from repro.db.migrations.legacy import add_missing_columns, has_table

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_missing_columns("runs", sa.Column("engine", sa.String(16)), sa.Column("precision", sa.String(16)),
                        sa.Column("compiled", sa.Boolean), sa.Column("threads", sa.Integer))
    if not has_table("checkpoints"):
        op.create_table(
            "checkpoints",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id"), nullable=False),
            sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
            sa.Column("path", sa.Text, nullable=False),
            sa.Column("sha256", sa.String(64), nullable=False),
            sa.Column("step", sa.Integer, nullable=False),
            sa.Column("created_at", sa.DateTime, nullable=False),
        )
        op.create_index("ix_checkpoints_job_id", "checkpoints", ["job_id"])
    if not has_table("benchmarks"):
        op.create_table(
            "benchmarks",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("job_id", sa.String(64), nullable=False),
            sa.Column("config_key", sa.String(64), nullable=False),
            sa.Column("model", sa.String(128), nullable=False),
            sa.Column("config", sa.JSON, nullable=False),
            sa.Column("device", sa.String(128), nullable=False),
            sa.Column("engine", sa.String(16), nullable=False),
            sa.Column("precision", sa.String(16), nullable=False),
            sa.Column("compiled", sa.Boolean, nullable=False),
            sa.Column("batch_size", sa.Integer, nullable=False),
            sa.Column("steps", sa.Integer, nullable=False),
            sa.Column("img_per_s", sa.Float, nullable=False),
            sa.Column("ms_per_step", sa.Float, nullable=False),
            sa.Column("peak_mem_mb", sa.Float),
            sa.Column("projected_hours", sa.Float),
            sa.Column("created_at", sa.DateTime, nullable=False),
            sa.Column("git_commit", sa.String(64)),
        )
        op.create_index("ix_benchmarks_config_key", "benchmarks", ["config_key"])
        op.create_index("ix_benchmarks_job_id", "benchmarks", ["job_id"])
    if not has_table("model_counts"):
        op.create_table(
            "model_counts",
            sa.Column("key", sa.String(64), primary_key=True),
            sa.Column("config_key", sa.String(64), nullable=False),
            sa.Column("code", sa.String(64), nullable=False),
            sa.Column("model", sa.String(128), nullable=False),
            sa.Column("model_kwargs", sa.JSON, nullable=False),
            sa.Column("input_size", sa.JSON, nullable=False),
            sa.Column("counter_profile", sa.String(32), nullable=False),
            sa.Column("macs", sa.BigInteger, nullable=False),
            sa.Column("params", sa.BigInteger, nullable=False),
            sa.Column("created_at", sa.DateTime, nullable=False),
        )
        op.create_index("ix_model_counts_config_key", "model_counts", ["config_key"])


def downgrade() -> None:
    raise NotImplementedError("repro's migrations are one-way: restore a backup to go back")
