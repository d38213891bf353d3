"""The project's own results.db as two older versions of repro left it, kept as small SQL dumps in
tests/fixtures/ (``legacy-<revision>.sql``) and loaded back into a SQLite file by ``load``:

- ``legacy-0001.sql``: ``git show 41a8105:results.db`` (seven tables; runs without engine columns)
- ``legacy-0002.sql``: ``git show 27fe364:results.db`` (ten tables; jobs.progress still text)

Made by this file, from the repository root::

    git show 41a8105:results.db > /tmp/r1.db && python tests/fixtures_legacy.py /tmp/r1.db tests/fixtures/legacy-0001.sql
    git show 27fe364:results.db > /tmp/r2.db && python tests/fixtures_legacy.py /tmp/r2.db tests/fixtures/legacy-0002.sql

Trimmed to se-r Table 1: the paper, the table, its six published cells, the six profile jobs that
produce them with their runs and metrics, and the first three rows of every other table (model_counts;
checkpoints, benchmarks and curve_points were empty). Every CREATE statement is the original's (the dump
is SQLite's own, ``iterdump``), so the schema is exactly the old one; the rows are real, not edited.
"""
from __future__ import annotations

import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
LEGACY = {"0001": FIXTURES / "legacy-0001.sql", "0002": FIXTURES / "legacy-0002.sql"}
PAPER, TABLE = "se-r", "table1"

# what the trimmed databases hold (the tests check the upgrade kept it)
JOBS = 6
METRICS_PER_JOB = 3


def trim(src: Path, out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "r.db"
        shutil.copy(src, db)
        con = sqlite3.connect(db)
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        keep = "(SELECT config_key FROM published_cells WHERE paper = :p AND table_name = :t)"
        where = {
            "papers": "slug = :p", "spec_tables": "paper = :p AND name = :t",
            "published_cells": "paper = :p AND table_name = :t", "jobs": f"config_key IN {keep}",
            "runs": f"job_id IN (SELECT id FROM jobs WHERE config_key IN {keep})",
            "metrics": f"job_id IN (SELECT id FROM jobs WHERE config_key IN {keep})",
        }
        for table in tables - set(where):
            where[table] = f"rowid IN (SELECT rowid FROM {table} ORDER BY rowid LIMIT 3)"
        for table in tables:
            con.execute(f"DELETE FROM {table} WHERE NOT ({where[table]})", {"p": PAPER, "t": TABLE})
        con.commit()
        out.write_text("\n".join(con.iterdump()) + "\n")
        con.close()


def load(revision: str, path: Path, *, wal: bool = True) -> Path:
    """The dump of ``revision`` as the SQLite file ``path`` (in WAL mode, as repro left it, unless not ``wal``)."""
    con = sqlite3.connect(path)
    con.executescript(LEGACY[revision].read_text())
    if wal:
        con.execute("PRAGMA journal_mode=WAL")
    con.close()
    return path


def copy_rows(path: Path, engine) -> None:
    """The rows of a loaded fixture into ``engine``'s database of the same shape (e.g. PostgreSQL),
    each value as its column's type expects (SQLite stores booleans as 0/1, JSON and times as text)."""
    import datetime as dt
    import json

    from sqlalchemy import JSON, Boolean, DateTime, MetaData

    meta = MetaData()
    meta.reflect(engine)
    convert = {Boolean: bool, JSON: json.loads, DateTime: dt.datetime.fromisoformat}
    with sqlite3.connect(path) as con, engine.begin() as conn:
        for table in meta.sorted_tables:
            cur = con.execute(f'SELECT * FROM "{table.name}"')
            names = [d[0] for d in cur.description]
            how = {c.name: next((f for t, f in convert.items() if isinstance(c.type, t)), None) for c in table.columns}
            values = [{n: v if v is None or how[n] is None else how[n](v) for n, v in zip(names, r)} for r in cur]
            if values:
                conn.execute(table.insert(), values)


def schema_diff(url: str) -> list:
    """What Alembic's autogenerate would change to make the database at ``url`` the declared schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    from repro.db.schema import Base

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()


if __name__ == "__main__":
    trim(Path(sys.argv[1]), Path(sys.argv[2]))
