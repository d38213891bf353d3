"""`repro diff`, `repro report` and `repro status`: reading the results database."""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..specs import SpecError
from .common import (app, _catalog, _check_db, console, DbOpt, _emit, _examples, _fail, Format, FormatOpt,
                     ModelOpt, SpecsOpt, PluginsOpt, TARGET_HELP)
from ..states import CellStatus


@app.command(epilog=_examples("repro diff se-r/table1", "repro diff se-r --format json --fail-over 1.0",
                            "repro diff se-r --against sqlite:///old.db --fail-over 0.1"))
def diff(targets: list[str] = typer.Argument(..., metavar="TARGET", help=TARGET_HELP),
         paper: Optional[str] = typer.Option(None, "--paper", metavar="PAPER", help="paper of bare table names"),
         model: Optional[str] = ModelOpt,
         fmt: str = typer.Option("table", "--format", metavar="FORMAT", help="table | json | csv | latex (booktabs, "
                                 "each table in the paper's layout)"),
         fail_over: Optional[float] = typer.Option(
             None, "--fail-over", metavar="POINTS",
             help="exit 1 if a full-budget cell differs from the paper (or, with --against, "
             "from the other database) by more than X, or diverged; with no comparable cell it says so and exits 0"),
         fail_on_pending: bool = typer.Option(False, "--fail-on-pending",
                                              help="exit 1 if any selected cell is pending"),
         against: Optional[str] = typer.Option(
             None, "--against", metavar="URL",
             help="a second results database (URL): compare ours with ours there, cell by cell"),
         origin: Optional[str] = typer.Option(None, "--origin", metavar="LABEL",
                                              help="one origin's results alone (an imported bundle's --label or host; "
                                                   "'here': this database's own runs)"),
         db: Optional[str] = DbOpt, specs_dir: Optional[list[str]] = SpecsOpt,
         plugins: Optional[list[str]] = PluginsOpt):
    """Ours vs paper, cell by cell (or ours vs another database's ours with --against, which also shows
    where the published numbers it recorded differ from ours: a transcription fixed since).

    A summary line closes the output (stdout for table, stderr for json and csv).
    """
    from ..db import Database
    from ..comparison_records import compared
    from ..plan import PlanError, select
    from ..specs import cell_key

    try:
        catalog = _catalog(specs_dir, plugins)
        selection = select(catalog, targets, paper, model)
        resolved = selection.tables
    except (SpecError, PlanError) as e:
        _fail(str(e))
    if fmt not in ("table", "json", "csv", "latex"):
        _fail(f"--format must be table, json, csv or latex, got {fmt!r}")
    if fmt == "latex" and against is not None:
        _fail("--format latex shows ours beside the paper; it does not combine with --against")
    if against is not None:
        against = _check_db(against, write=False)

    database = Database(_check_db(db, write=False, specs_dir=specs_dir), create=False)  # read-only: never creates one
    database, origins = _origins(database, origin)
    rows = compared(resolved, database)
    rows = [r for r in rows if selection.keeps(cell_key(r.paper, r.table, r.section, r.row, r.column))]
    if fmt == "latex":  # the tables as the paper lays them out; the summary goes to stderr
        from ..latex import document

        titles = {(p.slug, t): p.tables[t].title for p, t in resolved}
        print(document([(titles[(p.slug, t)], [r for r in rows if r.paper == p.slug and r.table == t])
                        for p, t in resolved if any(r.paper == p.slug and r.table == t for r in rows)]), end="")
        fmt = "json"  # below: the summary line on stderr, the gates as for any format
        records, columns, text = _paper_view(rows)
        print(_diff_summary(rows, None), file=sys.stderr)
        failed = _check_fail_over(rows, None, fail_over)
        if fail_on_pending and any(r.status == CellStatus.PENDING for r in rows):
            failed = True
        if failed:
            raise typer.Exit(1)
        return
    records, columns, text = (_paper_view(rows) if against is None
                              else _against_view(rows, catalog, resolved, Database(against, create=False)))
    if origins and against is None:  # imported results: who contributed to each cell, where they disagree
        from ..origins import cell_origins

        checks = cell_origins(database, rows)
        columns.append("origins")
        for rec, line, r in zip(records, text, rows):
            c = checks.get((r.paper, r.table, r.section, r.row, r.column))
            rec["origins"] = None if c is None else {
                "n": len(c.origins), "names": c.origins, "same_job_gap": c.same_job_gap,
                "disagree": [vars(d) for d in c.disagree]}
            line.append("" if c is None else c.text)
    _print_records(records, fmt, columns, text)
    out = sys.stdout if fmt == "table" else sys.stderr
    print(_diff_summary(rows, records if against else None), file=out)
    failed = _check_fail_over(rows, records if against else None, fail_over)
    pending = sum(1 for r in rows if r.status == CellStatus.PENDING)
    if fail_on_pending and pending:
        print(f"fail-on-pending: {pending} cell(s) pending", file=sys.stderr)
        failed = True
    if failed:
        raise typer.Exit(1)


def _origins(database, origin: str | None):
    """The database (or one origin's view of it) and whether it holds imported results."""
    from ..origins import HERE, OriginView, origin_names

    names = origin_names(database)
    if origin is None:
        return database, bool(names)
    if origin != HERE and origin not in names:
        _fail(f"--origin {origin!r}: no such origin; known: {', '.join([HERE] + names)}")
    return OriginView(database, origin), False


def _paper_view(rows) -> tuple[list[dict], list[str], list[list[str]]]:
    """Ours beside the paper: the JSON records, the table's columns and its text."""
    from ..comparison_records import record
    from ..report import fmt_ours

    columns = ["table", "row", "column", "published", "ours", "delta", "budget", "status"]
    text = [[r.table, _row_label(r.section, r.row), r.column, r.printed + (" (?)" if r.uncertain else ""),
             fmt_ours(r), "" if r.delta is None or r.status == CellStatus.NOT_COMPARABLE else f"{r.delta:+.3g}",
             r.budget or "", f"{r.status} (unit?)" if r.unit_off else r.status] for r in rows]
    return [record(r) for r in rows], columns, text


def _against_view(rows, catalog, resolved, other) -> tuple[list[dict], list[str], list[list[str]]]:
    """Ours beside another database's ours, and where it transcribed the paper differently (a finding,
    said whatever the format)."""
    from ..db import exports
    from ..comparison_records import against_records, compared

    records = against_records(rows, compared(resolved, other),
                              exports.published_cells(other, {p.slug for p, _ in resolved}),
                              exports.recorded_tables(other))
    columns = ["table", "row", "column", "published", "ours", "against", "change", "status", "against status"]
    text = [[a["table"], _row_label(a["section"], a["row"]), a["column"],
             a["printed"] + (f" (was {a['against_printed']})" if a["transcription_changed"] else ""),
             _cell_text(a["ours"]), _cell_text(a["against"]), "" if a["change"] is None else f"{a['change']:+.6g}",
             a["status"], a["against_status"]] for a in records]
    for a in records:
        if a["transcription_changed"]:
            print(f"transcription: {a['paper']}/{a['table']} {_row_label(a['section'], a['row'])} / {a['column']}: "
                  f"published {a['printed']} here, {a['against_printed']} in --against", file=sys.stderr)
    return records, columns, text


def _print_records(records: list[dict], fmt: str, columns: list[str], text: list[list[str]]) -> None:
    if fmt == "json":
        print(json.dumps(records, indent=1, ensure_ascii=False))  # json writes floats at their shortest repr
        return
    if fmt == "csv":
        import csv

        from ..comparison_records import DIFF_FIELDS

        w = csv.DictWriter(sys.stdout, fieldnames=list(records[0]) if records else DIFF_FIELDS, lineterminator="\n")
        w.writeheader()
        for rec in records:
            w.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else
                        ("" if v is None else v) for k, v in rec.items()})
        return
    from rich.markup import escape

    t = Table(show_lines=False)
    for col in columns:
        t.add_column(col)
    for cells in text:
        t.add_row(*[escape(c) for c in cells])  # rich markup would eat bracketed text such as "[13]"
    console.print(t)


def _row_label(section: str | None, row: str) -> str:
    return f"{section} / {row}" if section else row


def _cell_text(x) -> str:
    return "" if x is None else str(x)


def _diff_summary(rows: list, against: list[dict] | None) -> str:
    counts = Counter(r.status for r in rows)
    text = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))) or "no cells"
    if against is None:
        return text
    both = [a for a in against if a["change"] is not None]
    moved = sum(1 for a in both if a["change"] != 0)
    only_db = sum(1 for a in against if a["ours"] is not None and a["against"] is None)
    only_other = sum(1 for a in against if a["ours"] is None and a["against"] is not None)
    status = sum(1 for a in against if a["status"] != a["against_status"])
    recorded = [("transcription_changed", "published number(s) transcribed differently there"),
                ("configuration_changed", "cell(s) pointing at another configuration there"),
                ("new_cell", "cell(s) added to the specs since")]
    extra = "".join(f", {n} {what}" for key, what in recorded if (n := sum(1 for a in against if a[key])))
    return (f"{text}; against: {len(both)} cell(s) in both, {moved} changed, {status} changed status, "
            f"{only_db} only in --db, {only_other} only in --against{extra}")


def _check_fail_over(rows: list, against: list[dict] | None, threshold: float | None) -> bool:
    """True when a comparable cell is off by more than ``threshold``; says so when nothing was comparable."""
    from ..compare import comparable, fails_over
    from ..comparison_records import number as _number

    if threshold is None:
        return False
    if against is None:
        checked, bad = comparable(rows), fails_over(rows, threshold)
        for r in bad:
            print(f"regression: {r.paper}/{r.table} {r.row} / {r.column}: ours {_number(r.ours)} vs {r.printed} "
                  f"(delta {r.delta:+.4g} > {threshold})", file=sys.stderr)
        diverged = [r for r in rows if r.status == CellStatus.DIVERGED and r.budget == "full"]  # worse than any delta
        for r in diverged:
            print(f"diverged: {r.paper}/{r.table} {r.row} / {r.column}: {r.verdict_note}", file=sys.stderr)
        bad = bad + diverged
    else:  # both sides full budget (or static), measured in both databases
        checked = [a for a in against if a["change"] is not None and a["budget"] in ("full", "static")
                   and a["against_budget"] == a["budget"]]
        bad = [a for a in checked if abs(a["change"]) > threshold]
        for a in bad:
            print(f"regression: {a['paper']}/{a['table']} {a['row']} / {a['column']}: {a['ours']} vs "
                  f"{a['against']} in --against (change {a['change']:+.4g} > {threshold})", file=sys.stderr)
    if not checked:
        pending = sum(1 for r in rows if r.status == CellStatus.PENDING)
        print(f"fail-over: no comparable cell ({pending} of {len(rows)} pending, the rest short-budget, cited or "
              f"without a number): nothing was checked", file=sys.stderr)
    return bool(bad)


@app.command(epilog=_examples("repro report --paper se-r    # writes <repo>/reports/se-r/README.md"))
def report(targets: list[str] = typer.Argument(None, metavar="TARGET", help=TARGET_HELP + "; default: --paper's"),
           paper: Optional[list[str]] = typer.Option(None, "--paper", metavar="PAPER", help="paper(s); default all"),
           model: Optional[str] = ModelOpt,
           out: Optional[Path] = typer.Option(None, "--out", metavar="DIR",
                                              help="output directory (default <repo>/reports)"),
           db: Optional[str] = DbOpt, specs_dir: Optional[list[str]] = SpecsOpt,
           plugins: Optional[list[str]] = PluginsOpt):
    """Render Markdown pages and figures comparing ours with the published numbers."""
    url = _check_db(db, write=False, specs_dir=specs_dir)

    from ..db import Database
    from ..paths import resolve
    from ..report import render
    try:
        catalog = _catalog(specs_dir, plugins)
    except SpecError as e:
        _fail(str(e))
    for p in paper or []:
        if p not in catalog.papers:
            _fail(f"unknown paper {p!r}; known: {', '.join(catalog.papers)}")
    keep = None
    if targets or model:  # a selection: only its cells are shown, on the pages of the papers it names
        from ..plan import PlanError, select

        try:
            selection = select(catalog, list(targets or paper or catalog.papers), None, model)
        except PlanError as e:
            _fail(str(e))
        paper, keep = list(dict.fromkeys(p.slug for p, _ in selection.tables)), selection.keeps
    written = render(catalog, Database(url, create=False), resolve("reports", out), paper or list(catalog.papers), keep)
    for path in written:
        console.print(f"wrote {path}")


STATUS_COLUMNS = ["job", "state", "kind", "model", "budget", "seed", "progress", "owner", "waits_for"]
RUNNING_COLUMNS = ["job", "kind", "model", "progress", "host", "pid", "elapsed", "eta", "heartbeat"]


@app.command(epilog=_examples("repro status", "repro status --format json --db sqlite:///other.db"))
def status(db: Optional[str] = DbOpt, fmt: Format = FormatOpt(), specs_dir: Optional[list[str]] = SpecsOpt,
           plugins: Optional[list[str]] = PluginsOpt):
    """Jobs by state; running jobs with their epoch, host and ETA (never creates a database).

    --specs-dir picks the default database as every command does (a folder of your own: its results.db);
    --plugins is accepted like everywhere (status reads no spec)."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from ..db import Database, exists, safe_url
    from ..states import JobState
    from ..progress import running_jobs

    url = _check_db(db, write=False, specs_dir=specs_dir)
    if not exists(url):  # _check_db made sure a SQLite file is there: then it is something else
        what = "is not a repro results database (no such table: jobs)" if url.startswith("sqlite") else \
            "holds no repro database (repro run creates it)"
        _fail(f"{safe_url(url)} {what}")
    try:
        database = Database(url, create=False)
        jobs = database.jobs_by_state()
        running = running_jobs(database.running())
    except (OperationalError, ProgrammingError) as e:  # e.g. an empty file left by an older repro
        _fail(f"{safe_url(url)} is not a repro results database ({str(e.orig).splitlines()[0]})")
    waits = database.waiting_for(j.id for j in jobs if j.state == JobState.BLOCKED)
    rows = [{"job": j.id, "state": str(j.state), "kind": j.kind, "model": j.model, "budget": j.budget, "seed": j.seed,
             "progress": _progress(j.progress_done, j.progress_total, j.progress_unit), "owner": j.owner,
             "waits_for": waits.get(j.id) or ([j.failed_upstream] if j.failed_upstream else [])} for j in jobs]
    if fmt != Format.table:
        _emit(rows, fmt, STATUS_COLUMNS)
        return
    counts = Counter(str(j.state) for j in jobs)
    console.print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no jobs")
    if running:
        _emit([_running_row(r) for r in running], fmt, RUNNING_COLUMNS, title="running")
    for r in rows:
        r["seed"] = "-" if r["seed"] is None else r["seed"]
        r["waits_for"] = ", ".join(r["waits_for"])
    _emit(rows, fmt, STATUS_COLUMNS if any(r["waits_for"] for r in rows) else STATUS_COLUMNS[:-1])


def _progress(done, total, unit) -> str | None:
    from ..states import Progress

    return str(Progress(done, total, unit)) if unit else None


def _hms(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    h, rest = divmod(int(round(seconds)), 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


def _running_row(r) -> dict[str, str]:
    """A ``progress.RunningJob`` in words."""
    return {"job": r.job, "kind": r.kind, "model": r.model, "progress": str(r.progress) if r.progress else "starting",
            "host": r.host, "pid": str(r.pid), "elapsed": _hms(r.elapsed_s), "eta": _hms(r.eta_s),
            "heartbeat": f"{int(r.heartbeat_age_s)} s ago" if r.heartbeat_age_s is not None else "-"}


ARTIFACT_COLUMNS = ["job", "model", "budget", "seed", "kind", "size", "sha256", "cells", "needed_by", "path"]


@app.command(epilog=_examples("repro artifacts", "repro artifacts --remove-unneeded --db sqlite:///old.db"))
def artifacts(remove_unneeded: bool = typer.Option(False, "--remove-unneeded",
                                                   help="delete the artifacts no job of the database starts from"),
              db: Optional[str] = DbOpt, specs_dir: Optional[list[str]] = SpecsOpt,
              plugins: Optional[list[str]] = PluginsOpt, fmt: Format = FormatOpt()):
    """Trained weights that finished jobs kept (job, cells, size, SHA-256), and which jobs or cells start
    from them (a job of the database naming it upstream; a cell of the specs whose init_from names its cell)."""
    from .. import artifacts as store
    from ..db import Database

    database = Database(_check_db(db, write=remove_unneeded, specs_dir=specs_dir), create=False)
    try:
        rows = store.inventory(database, _catalog(specs_dir, plugins))
    except SpecError as e:
        _fail(str(e))
    if remove_unneeded:
        gone = store.remove_unneeded(database, rows)
        console.print(f"removed {len(gone)} artifact(s) no job needs ({sum(r['size'] for r in gone):,} bytes); "
                      f"kept {len(rows) - len(gone)}")
        rows = [r for r in rows if r["needed_by"]]
    shown = [{"job": r["job_id"], **{k: r[k] for k in ("model", "budget", "seed", "kind", "size", "sha256", "path")},
              "cells": r["cells"], "needed_by": r["needed_by"]} for r in rows]
    if fmt == Format.table:
        for r in shown:
            r["sha256"] = r["sha256"][:16]
            r["cells"] = ", ".join(r["cells"][:2]) + (" ..." if len(r["cells"]) > 2 else "")
            r["needed_by"] = ", ".join(r["needed_by"]) or "-"
            r["seed"] = "-" if r["seed"] is None else r["seed"]
    _emit(shown, fmt, ARTIFACT_COLUMNS)
