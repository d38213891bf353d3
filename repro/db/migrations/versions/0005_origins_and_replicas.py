"""Results that travel between databases (``repro import``): the origins table (one row per imported bundle:
its SHA-256, the user's label, the exporting host, repro and code version), runs.origin_id (NULL: measured by
this database's own workers) and the replicas table (another origin's metrics of a job this database holds).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

Adds only: an older database's runs were all measured where they are (origin NULL), and it has no replicas.
"""
import sqlalchemy as sa
from alembic import op

from repro.db.migrations.legacy import has_table

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if not has_table("origins"):
        op.create_table(
            "origins",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("bundle_sha256", sa.String(64), nullable=False, unique=True),
            sa.Column("label", sa.String(128)),
            sa.Column("host", sa.String(256), nullable=False),
            sa.Column("repro_version", sa.String(64)),
            sa.Column("code_version", sa.String(64)),
            sa.Column("imported_at", sa.DateTime, nullable=False))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("origin_id", sa.Integer, nullable=True))
        batch.create_foreign_key("fk_runs_origin_id_origins", "origins", ["origin_id"], ["id"])
    if not has_table("replicas"):
        op.create_table(
            "replicas",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id"), nullable=False, index=True),
            sa.Column("origin_id", sa.Integer, sa.ForeignKey("origins.id"), nullable=False),
            sa.Column("name", sa.String(32), nullable=False),
            sa.Column("value", sa.Float, nullable=False),
            sa.UniqueConstraint("job_id", "origin_id", "name"))


def downgrade() -> None:
    raise NotImplementedError("repro's migrations are one-way: restore a backup to go back")
