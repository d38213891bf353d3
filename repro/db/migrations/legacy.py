"""Databases made before Alembic. Until revision 0003 the schema was kept up to date by an upgrader that
added whatever table or nullable column was missing, so an old database may be any shape between two
releases (the project's results.db at be01574 is 0002 plus the 0003 columns, with ``jobs.progress`` still
there). ``identify`` names the newest revision whose whole shape is present, and the revisions up to 0003
add only what is missing (``add_missing_columns``, ``has_table``), so every such shape reaches head.
"""
from __future__ import annotations

# What each revision added that a database must fully hold to count as that revision.
_0002_COLUMNS = {"runs": {"engine", "precision", "compiled", "threads"}}
_0002_TABLES = {"checkpoints", "benchmarks", "model_counts"}
_0003_COLUMNS = {"jobs": {"progress_done", "progress_total", "progress_unit"},
                 "runs": {"diverged_value", "diverged_unit", "diverged_at", "diverged_lr"}}


def identify(insp) -> str:
    """The revision of a pre-Alembic repro database (one with a jobs table), from its tables and columns:
    0001 (41a8105: seven tables), 0002 (27fe364: runs' engine columns, checkpoints, benchmarks,
    model_counts), 0003 (typed progress and divergence, no ``jobs.progress``)."""
    tables = set(insp.get_table_names())
    columns = {t: {c["name"] for c in insp.get_columns(t)} for t in ("jobs", "runs") if t in tables}

    def holds(wanted: dict[str, set[str]]) -> bool:
        return all(cols <= columns.get(table, set()) for table, cols in wanted.items())

    if not (holds(_0002_COLUMNS) and _0002_TABLES <= tables):
        return "0001"
    if not holds(_0003_COLUMNS) or "progress" in columns["jobs"]:
        return "0002"
    return "0003"


def has_table(name: str) -> bool:
    from alembic import op
    from sqlalchemy import inspect

    return inspect(op.get_bind()).has_table(name)


def add_missing_columns(table: str, *columns) -> None:
    """``ALTER TABLE ADD COLUMN`` for each of ``columns`` (``sa.Column``) the table lacks."""
    from alembic import op
    from sqlalchemy import inspect

    have = {c["name"] for c in inspect(op.get_bind()).get_columns(table)}
    for column in columns:
        if column.name not in have:
            op.add_column(table, column)
