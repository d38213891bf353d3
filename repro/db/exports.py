"""Whole tables as rows, for the Python API's DataFrames and ``repro diff --against``: every run with its
provenance, training-curve points, and the published cells a database recorded when it was run.

Each function takes a ``Database`` (opened at the schema's head revision) and reads with Core selects (no ORM
objects), in chunks of 500 keys to stay under SQLite's bound-parameter limit."""
from __future__ import annotations

from typing import Iterable

from sqlalchemy import select

from .database import Database
from ..states import JobState
from .schema import CurvePoint, Job, PublishedCell, Run, TableRow

CHUNK = 500
JOB_COLUMNS = ("config_key", "kind", "model", "budget", "seed", "state")
RUN_COLUMNS = ("status", "error", "diverged_value", "diverged_unit", "diverged_at", "diverged_lr", "device", "engine",
               "precision", "compiled", "threads", "git_commit", "git_dirty", "host", "pid", "started_at", "ended_at",
               "resumed_from_epoch", "versions")
CURVE_COLUMNS = ("epoch", "train_loss", "train_top1_err", "train_top5_err", "test_top1_err", "test_top5_err", "lr",
                 "seconds")


def _columns(model, names: Iterable[str]) -> list:
    return [getattr(model, n) for n in names]


def _chunked(db: Database, query, column, keys: Iterable[str] | None):
    """Rows of ``query`` where ``column`` is one of ``keys`` (all rows when ``keys`` is None)."""
    with db.engine.connect() as conn:
        if keys is None:
            yield from conn.execute(query)
            return
        keys = sorted(set(keys))
        for i in range(0, len(keys), CHUNK):
            yield from conn.execute(query.where(column.in_(keys[i:i + CHUNK])))


def runs(db: Database, config_keys: Iterable[str] | None = None) -> list[dict]:
    """Every attempt (run) at the jobs of these configurations (all jobs when None), with the job it
    belongs to: one dict per run, ordered by job and attempt. A job that ended failed without a run (its
    upstream failed or diverged) is one row with its state and no run (``run_id`` None): a failure is never
    hidden because nothing ran."""
    q = (select(Run.id, Job.id, *_columns(Job, JOB_COLUMNS), *_columns(Run, RUN_COLUMNS))
         .outerjoin(Run, Job.id == Run.job_id)
         .where((Run.id.is_not(None)) | (Job.state == JobState.FAILED)).order_by(Job.id, Run.id))
    names = ("run_id", "job") + JOB_COLUMNS + RUN_COLUMNS
    out = [dict(zip(names, row)) for row in _chunked(db, q, Job.config_key, config_keys)]
    return sorted(out, key=lambda r: (r["job"], r["run_id"])) if config_keys is not None else out


def curve_points(db: Database, config_keys: Iterable[str] | None = None) -> list[dict]:
    """Every per-epoch point of the jobs of these configurations (all jobs when None), with the job's
    configuration, model, budget and seed; ordered by job and epoch."""
    q = (select(CurvePoint.job_id, CurvePoint.run_id, Job.config_key, Job.kind, Job.model, Job.budget, Job.seed,
                *_columns(CurvePoint, CURVE_COLUMNS))
         .join(Job, Job.id == CurvePoint.job_id).order_by(CurvePoint.job_id, CurvePoint.epoch))
    names = ("job", "run_id", "config_key", "kind", "model", "budget", "seed") + CURVE_COLUMNS
    out = [dict(zip(names, row)) for row in _chunked(db, q, Job.config_key, config_keys)]
    return sorted(out, key=lambda r: (r["job"], r["epoch"])) if config_keys is not None else out


def published_cells(db: Database, papers: Iterable[str] | None = None) -> dict[tuple, dict]:
    """The published numbers this database recorded (``repro run`` writes the cells of what it plans), by
    (paper, table, section, row, column), section None where the table has none: the printed text and the
    configuration key the cell pointed at then."""
    q = select(PublishedCell.paper, PublishedCell.table_name, PublishedCell.section, PublishedCell.row,
               PublishedCell.column, PublishedCell.printed, PublishedCell.config_key)
    out = {}
    for paper, table, section, row, column, printed, key in _chunked(db, q, PublishedCell.paper, papers):
        out[(paper, table, section or None, row, column)] = {"printed": printed, "config_key": key}
    return out


def recorded_tables(db: Database) -> set[tuple[str, str]]:
    """The (paper, table) pairs whose published cells this database recorded: a cell missing from a recorded
    table was added to the spec since; one of a table never recorded says nothing."""
    with db.engine.connect() as conn:
        return {(p, t) for p, t in conn.execute(select(TableRow.paper, TableRow.name))}
