"""Adaptive seeds (``repro run --seeds MIN..MAX``): the seed_plans table, one row per configuration run with a
plan (its MIN and MAX), so that a report judges such a cell at the error rate of its last look and says why it
stopped, whoever ran it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

Adds only: an older database ran every configuration with a fixed number of seeds (no plan).
"""
import sqlalchemy as sa
from alembic import op

from repro.db.migrations.legacy import has_table

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if not has_table("seed_plans"):
        op.create_table(
            "seed_plans",
            sa.Column("config_key", sa.String(64), primary_key=True),
            sa.Column("min_seeds", sa.Integer, nullable=False),
            sa.Column("max_seeds", sa.Integer, nullable=False),
            sa.Column("updated_at", sa.DateTime, nullable=False))


def downgrade() -> None:
    raise NotImplementedError("repro's migrations are one-way: restore a backup to go back")
