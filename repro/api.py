"""The Python API, for notebooks: the results database as pandas DataFrames, and campaigns as ``repro run``
runs them.

    from repro import api
    cells = api.cells(paper="se-r")            # one row per published cell: ours vs published
    runs = api.runs(paper="se-r", table="table3")  # one row per run (attempt), with its provenance
    points = api.curves(paper="se-r", table="figure3")  # per-epoch training curves
    summary = api.run("se-r/table1")           # a campaign, with repro run's defaults and database

Every reader takes ``paper`` (a slug) and ``table`` (a table of it, or a table name that one paper has),
``db`` (a SQLAlchemy URL; default ``$REPRO_DB`` or the project's ``results.db``, as every command),
``specs_dir`` (one folder or several, as ``--specs-dir``) and ``plugins`` (as ``--plugins``). Readers never
create a database or write to one (an older schema is brought up to date, as every command does). ``cells`` holds
exactly the numbers ``repro diff --format json`` prints
(``repro.comparison_records``: one implementation for both).
"""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager

import pandas as pd

from .campaign import CampaignSummary, run_campaign, with_targets
from .catalog import load_catalog
from .comparison_records import DIFF_FIELDS, compared, record
from .expanded import expand
from .options import CampaignOptions
from .paths import own_db
from .states import JobState
from .plan import resolve_targets
from .db.exports import CURVE_COLUMNS, JOB_COLUMNS, RUN_COLUMNS
from .specs import METRICS, Catalog, Paper, cell_key

CELL_COLUMNS = DIFF_FIELDS + ["cell", "kind", "config_key", "jobs", "how"]
SERVES = ["paper", "table", "cells"]  # which published cells a job's configuration produces
RUNS_COLUMNS = ["run_id", "job", *SERVES, *JOB_COLUMNS, *RUN_COLUMNS]
CURVES_COLUMNS = ["job", "run_id", *SERVES, "config_key", "kind", "model", "budget", "seed", *CURVE_COLUMNS]
OUTCOME_COLUMNS = ["job", "kind", "model", "budget", "seed", "cells", "before", "ran", "state", "ok", "why"]
# Numbers as numbers, missing as NaN/<NA> (never None in an object column): a frame's arithmetic just works.
DTYPES = {**dict.fromkeys(["published", "ours", "ours_exact", "std", "delta", "sem", "ci_low", "ci_high",
                           "tolerance", "diverged_lr", *CURVE_COLUMNS[1:]], "float64"),
          **dict.fromkeys(["n", "epoch"], "int64"),
          # run_id: <NA> for a job that failed without a run (its upstream failed)
          **dict.fromkeys(["run_id", "seed", "diverged_at", "threads", "pid", "resumed_from_epoch"], "Int64"),
          **dict.fromkeys(["compiled", "git_dirty", "ok"], "boolean"),
          **dict.fromkeys(["started_at", "ended_at"], "datetime64[us]")}


def cells(paper: str | None = None, table: str | None = None, db: str | None = None,
          specs_dir: str | list[str] | None = None, plugins: tuple[str, ...] = ()) -> pd.DataFrame:
    """One row per published cell (the paper's printed cells; a '-' is not one), ours beside published:
    the fields of ``repro diff --format json`` (paper, table, section, row, column, metric, printed,
    published, ours, ours_exact, std, n, delta, budget, status, detail, uncertain, reason, also, sem,
    ci_low, ci_high, tolerance, values, verdict_note), then ``cell`` (its key), ``kind`` (profile | train |
    detect), ``config_key``, ``jobs`` (the job ids measured) and ``how`` (engine/precision/device)."""
    catalog = load_catalog(specs_dir, plugins)
    targets = _targets(catalog, paper, table)
    with _database(own_db(db, specs_dir)) as database:
        rows = compared(targets, database)
    records = [{**record(r), "cell": cell_key(r.paper, r.table, r.section, r.row, r.column),
                "kind": METRICS[r.metric][0], "config_key": r.config_key, "jobs": list(r.jobs), "how": r.how}
               for r in rows]
    return _frame(records, CELL_COLUMNS)


def runs(paper: str | None = None, table: str | None = None, db: str | None = None,
         specs_dir: str | list[str] | None = None, plugins: tuple[str, ...] = ()) -> pd.DataFrame:
    """One row per run (an attempt at a job), with its job and provenance: run_id, job, the ``paper``,
    ``table`` and ``cells`` its configuration serves (comma-joined where several; None for a job no spec
    names now), config_key, kind, model, budget, seed, the job's ``state`` and the run's ``status``, error,
    divergence (``diverged_value`` nan | inf at ``diverged_unit`` ``diverged_at``, ``diverged_lr``),
    device, engine, precision, compiled, threads, git_commit, git_dirty, host, pid, started_at, ended_at,
    resumed_from_epoch, versions. Without ``paper``/``table``: every run in the database."""
    from .db import exports as queries

    catalog = load_catalog(specs_dir, plugins)
    serves, keys = _serves(catalog, paper, table)
    with _database(own_db(db, specs_dir)) as database:
        rows = queries.runs(database, keys)
    return _frame([{**r, **serves.get(r["config_key"], _NONE)} for r in rows], RUNS_COLUMNS)


def curves(paper: str | None = None, table: str | None = None, db: str | None = None,
           specs_dir: str | list[str] | None = None, plugins: tuple[str, ...] = ()) -> pd.DataFrame:
    """One row per training epoch of each job: job, run_id (the attempt that wrote it), the ``paper``,
    ``table`` and ``cells`` it serves, config_key, kind, model, budget, seed, epoch, train_loss,
    train_top1_err, train_top5_err, test_top1_err, test_top5_err (%), lr, seconds. A figure spec's table
    (``table="figure3"``) selects the jobs of the cells its curves draw."""
    from .db import exports as queries

    catalog = load_catalog(specs_dir, plugins)
    serves, keys = _serves(catalog, paper, table)
    with _database(own_db(db, specs_dir)) as database:
        rows = queries.curve_points(database, keys)
    return _frame([{**r, **serves.get(r["config_key"], _NONE)} for r in rows], CURVES_COLUMNS)


def run(targets: str | list[str], *, events=None, **options) -> CampaignSummary:
    """Run a campaign exactly as ``repro run TARGET...`` does: plan, record the published cells and jobs,
    run what is not done, with the same defaults and database. ``options`` are
    ``repro.options.CampaignOptions`` fields (``budget="smoke"``, ``seeds=3``, ``db=...``, ``kinds={"train"}``,
    ``execution=ExecOptions(workers=2)``, ...); ``events`` a ``repro.events.Events`` to follow progress.
    Returns the ``CampaignSummary`` (``api.outcomes(summary)`` frames it). Bad input raises the library's
    errors: ``SpecError``, ``PlanError``, ``DatabaseError``, ``ExecError``."""
    from .db import check_url

    known = {f.name for f in dataclasses.fields(CampaignOptions)} - {"targets"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown campaign option(s) {unknown}; CampaignOptions has: {', '.join(sorted(known))}")
    if options.get("kinds") is not None:
        options["kinds"] = frozenset(options["kinds"])
    opts = with_targets(CampaignOptions(**options), targets)
    # the URL is checked (driver, writable file) before anything is written, as the CLI does
    # a paper from outside @builtin is stored beside it, never in the checkout's results.db (paths.own_db)
    opts = dataclasses.replace(opts, db=check_url(own_db(opts.db, opts.specs_dir), write=True, must_exist=False))
    return run_campaign(opts, events)


def outcomes(summary: CampaignSummary) -> pd.DataFrame:
    """One row per planned job of a campaign: job, kind, model, budget, seed, cells, its state ``before``
    the campaign ('new' if unknown), whether it ``ran``, the ``state`` it ended in, ``ok`` and ``why``
    (a failure's error, where a divergence happened, or why it was left unfinished)."""
    reg = summary.registered
    rows = []
    for j in reg.plan.jobs:
        before = reg.states.get(j.id)
        o = summary.outcomes.get(j.id)
        state = o.state if o else before
        rows.append({"job": j.id, "kind": j.kind, "model": j.model, "budget": j.budget, "seed": j.seed,
                     "cells": list(j.cells), "before": str(before) if before else "new", "ran": o is not None,
                     "state": str(state) if state else "new",
                     # a job done before the campaign is done: ok, as a job that ran and ended done is
                     "ok": o.ok if o else (True if before == JobState.DONE else None), "why": o.why if o else None})
    return _frame(rows, OUTCOME_COLUMNS)


# --- shared ------------------------------------------------------------------------------------------

_NONE = {"paper": None, "table": None, "cells": []}


def _frame(records: list[dict], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records, columns=columns)
    return frame.astype({c: t for c, t in DTYPES.items() if c in frame.columns})


def _targets(catalog: Catalog, paper: str | None, table: str | None) -> list[tuple[Paper, str]]:
    """What ``repro diff`` would select: a paper's tables, one table, or every paper."""
    if table is not None:
        return resolve_targets(catalog, [table], paper)
    return resolve_targets(catalog, [paper] if paper else list(catalog.papers))


def _serves(catalog: Catalog, paper: str | None, table: str | None) -> tuple[dict[str, dict], list[str] | None]:
    """Per configuration key, the paper(s), table(s) and cells it produces among the selected tables (figure
    specs included: a figure's curves name their cells); and the keys to read, None for every job."""
    targets = _targets(catalog, paper, table)
    found: dict[str, list] = {}
    for p, t in targets:
        spec = p.tables[t]
        cells = expand(p).table(t).cells
        if spec.kind == "figure" and spec.curves:  # the cells whose curves the figure draws
            cells = cells + [expand(p).ref(c.cell) for c in spec.curves]
        for c in cells:
            if c.config_key and c.key not in found.setdefault(c.config_key, []):
                found[c.config_key].append(c.key)
    serves = {k: {"paper": _joined(c.split("/")[0] for c in v), "table": _joined(c.split("/")[1] for c in v),
                  "cells": v} for k, v in found.items()}
    return serves, (list(serves) if paper or table else None)


def _joined(names) -> str:
    return ", ".join(dict.fromkeys(names))


@contextmanager
def _database(url: str | None):
    """The database, opened for reading only: a missing one is a ``DatabaseError``, never created."""
    from .db import Database, check_url

    database = Database(check_url(url, write=False), create=False)
    try:
        yield database
    finally:
        database.dispose()


__all__ = ["cells", "runs", "curves", "run", "outcomes"]
