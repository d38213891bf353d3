"""The ``repro`` command line. It parses options and calls the library; nothing else lives here."""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .specs import SpecError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Reproduce paper tables: specs -> jobs -> results.db -> reports.")
specs_app = typer.Typer(no_args_is_help=True, help="Validate and inspect table specs.")
models_app = typer.Typer(no_args_is_help=True, help="List and inspect registered models.")
data_app = typer.Typer(no_args_is_help=True, help="Datasets: tiny fakes in the real on-disk formats.")
app.add_typer(specs_app, name="specs")
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")

console = Console()
if not console.is_terminal:  # piped output: do not squeeze tables into 80 columns
    console = Console(width=200)

DbOpt = typer.Option(None, "--db", help="SQLAlchemy URL (default $REPRO_DB or sqlite:///results.db)")
SpecsOpt = typer.Option(None, "--specs-dir", help="specs directory (default $REPRO_SPECS or the repo's specs/)")


def _fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)  # one line, never wrapped
    raise typer.Exit(2)


def _catalog(specs_dir):
    from .catalog import load_catalog

    return load_catalog(specs_dir)


# --- run --------------------------------------------------------------------------------

@app.command()
def run(targets: list[str] = typer.Argument(None, help="<paper>, <paper>/<table>, or <table> with --paper"),
        paper: Optional[str] = typer.Option(None, "--paper", help="paper of bare table names"),
        budget: str = typer.Option("full", "--budget", help="full | smoke"),
        epochs: Optional[int] = typer.Option(None, "--epochs", help="shorten schedules to N epochs (budget epochs-N)"),
        seeds: int = typer.Option(
            1, "--seeds", help="seeds per cell; a verdict needs 3 at least, 5 recommended: at a CIFAR seed std "
            "of 0.25 the 95% interval is +-0.62 points with 3 seeds, +-0.31 with 5 (tolerance 0.3-0.5), and a "
            "claimed gain needs about 0.57 (3 seeds) or 0.36 (5) to be significant; the papers claim 0.09-1.94"),
        workers: int = typer.Option(1, "--workers", help="worker processes (or Slurm tasks)"),
        executor: str = typer.Option("local", "--executor", help="local | slurm | submitit-local | submitit-debug"),
        slurm_partition: Optional[str] = typer.Option(None, "--slurm-partition"),
        slurm_gpus: int = typer.Option(1, "--slurm-gpus", help="GPUs per Slurm task"),
        slurm_timeout_min: int = typer.Option(24 * 60, "--slurm-timeout-min"),
        dry_run: bool = typer.Option(False, "--dry-run", help="print the plan; run nothing"),
        fmt: str = typer.Option("table", "--format", help="dry-run output: table | json"),
        kind: Optional[list[str]] = typer.Option(None, "--kind", help="only jobs of this kind (profile, train, detect)"),
        max_jobs: int = typer.Option(5000, "--max-jobs", help="refuse to plan more jobs than this in one invocation"),
        db: Optional[str] = DbOpt, specs_dir: Optional[str] = SpecsOpt,
        data_dir: Optional[str] = typer.Option(None, "--data-dir", help="datasets root (default $REPRO_DATA or ./data)"),
        download: bool = typer.Option(False, "--download", help="download datasets that torchvision can fetch"),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
        checkpoint_dir: str = typer.Option("checkpoints", "--checkpoint-dir"),
        loader_workers: Optional[int] = typer.Option(None, "--loader-workers",
                                                     help="DataLoader worker processes per job (default: 0, "
                                                          "or a share of the CPU cores for ImageNet)"),
        engine: str = typer.Option("fast", "--engine", help="fast (device-resident 32x32 data, batched "
                                   "augmentation) | reference (torchvision transforms + DataLoader)"),
        precision: Optional[str] = typer.Option(None, "--precision", help="bf16 | fp32 (default bf16 on CUDA, "
                                                "fp32 on CPU); recorded with each run, never part of the job"),
        compile_: bool = typer.Option(False, "--compile", help="torch.compile the model"),
        retry_failed: bool = typer.Option(False, "--retry-failed", help="also retry diverged jobs (failed "
                                          "jobs are always retried)"),
        keep_checkpoints: bool = typer.Option(False, "--keep-checkpoints",
                                              help="keep a finished job's checkpoints")):
    """Expand specs into jobs and run the ones not done yet."""
    from .plan import PlanError, parse_budget, plan, published_rows, resolve_targets, split_missing_data

    if engine not in ("fast", "reference"):
        _fail(f"--engine must be fast or reference, got {engine!r}")
    if precision not in (None, "bf16", "fp32"):
        _fail(f"--precision must be bf16 or fp32, got {precision!r}")
    try:
        catalog = _catalog(specs_dir)
        budget = parse_budget(budget, epochs)
        resolved = resolve_targets(catalog, targets or [], paper)
        jobs = plan(catalog, resolved, budget=budget, seeds=seeds, kinds=set(kind) if kind else None,
                    max_jobs=max_jobs)
    except (SpecError, PlanError) as e:
        _fail(str(e))
    if fmt not in ("table", "json"):
        _fail(f"--format must be table or json, got {fmt!r}")
    from .db import Database, db_url  # sqlalchemy costs 0.5 CPU-s: not before the specs are known to be good

    url = db_url(db)
    if dry_run:  # a dry run never creates the database
        states = Database(url, create=False).job_states(j.id for j in jobs) if _db_exists(url) else {}
        _print_plan(jobs, states, resolved, fmt)
        return
    database = Database(url)
    states = database.job_states(j.id for j in jobs)
    database.sync_published(*published_rows(catalog, resolved))
    database.add_jobs(j.row() for j in jobs)
    finished = ("done",) if retry_failed else ("done", "diverged")
    todo = [j for j in jobs if states.get(j.id) not in finished]
    diverged = 0 if retry_failed else sum(1 for j in jobs if states.get(j.id) == "diverged")
    console.print(f"{len(jobs)} job(s) planned, {len(jobs) - len(todo)} already done"
                  + (f" ({diverged} diverged; --retry-failed runs them again)" if diverged else "")
                  + f", {len(todo)} to run [budget {budget}] -> {url}", markup=False)
    unrunnable = {}
    if not download:
        todo, unrunnable = split_missing_data(todo, data_dir)
        for error, n in unrunnable.values():
            print(f"not run: {n} job(s) need {error} (--kind profile runs only the static cells)", file=sys.stderr)
    todo = [j.id for j in todo]
    if not todo:
        if unrunnable:
            raise typer.Exit(1)
        return
    if retry_failed:
        n = database.reset_failed(todo, diverged=True)
        if n:
            console.print(f"retrying {n} failed or diverged job(s)", markup=False)
    from . import executor as ex  # imports torch: only once there is something to run (keeps dry runs fast)
    from .worker import WorkerOptions

    wopts = WorkerOptions(db_url=url, data_dir=data_dir, download=download, device=device,
                          checkpoint_dir=checkpoint_dir, loader_workers=loader_workers, engine=engine,
                          precision=precision, compile=compile_, keep_checkpoints=keep_checkpoints)
    slurm = {"timeout_min": slurm_timeout_min, "gpus_per_node": slurm_gpus}
    if slurm_partition:
        slurm["partition"] = slurm_partition
    eopts = ex.ExecOptions(workers=workers, executor=executor, slurm=slurm)
    report = ex.run(todo, wopts, eopts, console)
    console.print(f"ran {len(report.ran)} job(s), {len(report.failed)} failed", markup=False)
    for jid, msg in report.failed.items():
        print(f"{'diverged' if msg.startswith('loss became') else 'failed'} {jid}: {msg}", file=sys.stderr)
    if report.failed or unrunnable:
        raise typer.Exit(1)


def _db_exists(url: str) -> bool:
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        return path in ("", ":memory:") or Path(path).exists()
    return True


def _print_plan(jobs, states, resolved, fmt):
    papers = {}
    for p, t in resolved:
        papers.setdefault(p.slug, []).append(t)
    rows = [{"job": j.id, "kind": j.kind, "model": j.model, "seed": j.seed, "budget": j.budget,
             "cells": j.cells, "state": states.get(j.id, "new")} for j in jobs]
    if fmt == "json":
        print(json.dumps(rows, indent=1))
        return
    t = Table(title="plan", show_lines=False)
    for col in ("job", "kind", "model", "seed", "state", "cells"):
        t.add_column(col)
    for r in rows:
        cells = r["cells"]
        shown = ", ".join(c.split("/", 1)[1] for c in cells[:3]) + (f" (+{len(cells) - 3})" if len(cells) > 3 else "")
        t.add_row(r["job"], r["kind"], r["model"], "-" if r["seed"] is None else str(r["seed"]), r["state"], shown)
    console.print(t)
    for slug, tables in papers.items():
        mine = [j for j in jobs if any(c.startswith(slug + "/") for c in j.cells)]
        done = sum(1 for j in mine if states.get(j.id) == "done")
        console.print(f"{slug}: {len(tables)} spec(s), {len(mine)} job(s) ({_kinds(mine) or 'none'}), {done} done")
    console.print(f"total: {len(jobs)} distinct job(s): {_kinds(jobs)}")


def _kinds(jobs) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(Counter(j.kind for j in jobs).items()))


@app.command()
def bench(targets: list[str] = typer.Argument(..., help="<paper>, <paper>/<table>, or <table> with --paper"),
          paper: Optional[str] = typer.Option(None, "--paper", help="paper of bare table names"),
          steps: int = typer.Option(20, "--steps", min=1, help="timed optimizer steps per job"),
          engine: str = typer.Option("fast", "--engine", help="fast | reference"),
          precision: Optional[str] = typer.Option(None, "--precision", help="bf16 | fp32 (default bf16 on CUDA, fp32 on CPU)"),
          compile_: bool = typer.Option(False, "--compile", help="torch.compile the model"),
          vs: Optional[str] = typer.Option(None, "--vs", help="reference: also time the reference loop, print the ratio"),
          device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
          fmt: str = typer.Option("table", "--format", help="table | json"),
          db: Optional[str] = DbOpt, specs_dir: Optional[str] = SpecsOpt):
    """Time N steps of each training job's exact recipe on synthetic data of the real shape.

    Example: repro bench se-r/table3 --steps 20 --vs reference
    """
    from .bench import bench_job
    from .db import Database
    from .plan import PlanError, plan, resolve_targets
    from .trainer import Engine
    from .worker import device_name, git_state, pick_device

    if engine not in ("fast", "reference"):
        _fail(f"--engine must be fast or reference, got {engine!r}")
    if precision not in (None, "bf16", "fp32"):
        _fail(f"--precision must be bf16 or fp32, got {precision!r}")
    if vs not in (None, "reference"):
        _fail(f"--vs takes only 'reference', got {vs!r}")
    if fmt not in ("table", "json"):
        _fail(f"--format must be table or json, got {fmt!r}")
    try:
        catalog = _catalog(specs_dir)
        jobs = plan(catalog, resolve_targets(catalog, targets, paper), kinds={"train"})
    except (SpecError, PlanError) as e:
        _fail(str(e))
    dev = pick_device(device)
    eng = Engine.for_device(dev, engine, precision, compile_)
    label = device_name(dev)
    database = Database(db)
    commit = git_state()[0]
    results = []
    for job in jobs:
        r = bench_job(job, eng, dev, steps, label, vs == "reference")
        results.append(r)
        row = r.row()
        database.put_benchmark({k: row[k] for k in ("job_id", "config_key", "model", "device", "engine", "precision",
                                                     "compiled", "batch_size", "steps", "img_per_s", "ms_per_step",
                                                     "peak_mem_mb", "projected_hours") if k in row}
                               | {"job_id": r.job, "config": job.spec, "git_commit": commit})
        if fmt == "table":
            ratio = (f"; reference {r.ref_img_per_s:,.1f} img/s, ratio {r.ratio:.2f}x; data path alone "
                     f"{r.data_img_per_s:,.0f} vs {r.ref_data_img_per_s:,.0f} img/s, ratio {r.data_ratio:.1f}x"
                     if r.ratio else f"; data path alone {r.data_img_per_s:,.0f} img/s")
            print(f"{r.job} {r.model} [{r.dataset}, batch {r.batch_size}] on {r.device}, {r.engine}/{r.precision}"
                  f"{'/compiled' if r.compiled else ''}: {r.img_per_s:,.1f} img/s, {r.ms_per_step:,.1f} ms/step, "
                  f"peak {r.peak_mem_mb:,.0f} MB, full recipe ~{r.projected_hours:,.1f} h{ratio}", flush=True)
    if fmt == "json":
        print(json.dumps([r.row() for r in results], indent=1))
    elif not results:
        print("no training jobs in these targets", file=sys.stderr)


# --- diff, report, status -----------------------------------------------------------------

@app.command()
def diff(targets: list[str] = typer.Argument(..., help="<paper>, <paper>/<table>, or <table> with --paper"),
         paper: Optional[str] = typer.Option(None, "--paper"),
         fmt: str = typer.Option("table", "--format", help="table | json | csv"),
         fail_over: Optional[float] = typer.Option(
             None, "--fail-over", help="exit 1 if a full-budget cell differs from the paper (or, with --against, "
             "from the other database) by more than X, or diverged; with no comparable cell it says so and exits 0"),
         fail_on_pending: bool = typer.Option(False, "--fail-on-pending", help="exit 1 if any selected cell is pending"),
         against: Optional[str] = typer.Option(
             None, "--against", help="a second results database (URL): compare ours with ours there, cell by cell"),
         db: Optional[str] = DbOpt, specs_dir: Optional[str] = SpecsOpt):
    """Ours vs paper, cell by cell (or ours vs another database's ours with --against).

    A summary line closes the output (stdout for table, stderr for json and csv).
    """
    from .compare import compare_paper
    from .db import Database, db_url
    from .plan import PlanError, resolve_targets
    from .report import fmt_ours

    try:
        catalog = _catalog(specs_dir)
        resolved = resolve_targets(catalog, targets, paper)
    except (SpecError, PlanError) as e:
        _fail(str(e))
    if fmt not in ("table", "json", "csv"):
        _fail(f"--format must be table, json or csv, got {fmt!r}")
    if against is not None and not _db_exists(db_url(against)):
        _fail(f"--against: no database at {against}")

    def compared(database):
        return [r for p, t in resolved for r in compare_paper(catalog, p, database, [t]) if r.status != "not-printed"]

    rows = compared(Database(db))
    if against is None:
        records = [_diff_record(r) for r in rows]
        columns = ["table", "row", "column", "published", "ours", "delta", "budget", "status"]
        text = [[r.table, _row_label(r.section, r.row), r.column, r.printed + (" (?)" if r.uncertain else ""),
                 fmt_ours(r), "" if r.delta is None or r.status == "not-comparable" else f"{r.delta:+.3g}",
                 r.budget or "", r.status] for r in rows]
    else:
        records = _against_records(rows, compared(Database(db_url(against), create=False)))
        columns = ["table", "row", "column", "published", "ours", "against", "change", "status", "against status"]
        text = [[a["table"], _row_label(a["section"], a["row"]), a["column"], a["printed"], _plain(a["ours"]),
                 _plain(a["against"]), "" if a["change"] is None else f"{a['change']:+.6g}", a["status"],
                 a["against_status"]] for a in records]
    _print_records(records, fmt, columns, text)
    out = sys.stdout if fmt == "table" else sys.stderr
    print(_diff_summary(rows, records if against else None), file=out)
    failed = _check_fail_over(rows, records if against else None, fail_over)
    pending = sum(1 for r in rows if r.status == "pending")
    if fail_on_pending and pending:
        print(f"fail-on-pending: {pending} cell(s) pending", file=sys.stderr)
        failed = True
    if failed:
        raise typer.Exit(1)


DIFF_FIELDS = ["paper", "table", "section", "row", "column", "metric", "printed", "published", "ours", "ours_exact",
               "std", "n", "delta", "budget", "status", "detail", "uncertain", "reason", "also", "sem", "ci_low",
               "ci_high", "tolerance", "values", "verdict_note"]


def _number(x, count: bool = False):
    """A number as a reader writes it: counts as integers, other floats at 12 significant digits (a mean of
    seeds prints 28.1, not 28.099999999999998; 21.655 stays 21.655); lists and dicts element by element."""
    if isinstance(x, dict):
        return {k: _number(v, count) for k, v in x.items()}
    if isinstance(x, list):
        return [_number(v, count) for v in x]
    if not isinstance(x, float):
        return x
    if count and x.is_integer():
        return int(x)
    return float(f"{x:.12g}")


def _diff_record(r) -> dict:
    from .specs import METRICS

    rec = {k: _number(getattr(r, k)) for k in DIFF_FIELDS}
    rec["ours_exact"] = _number(r.ours_exact, count=METRICS[r.metric][2])
    return rec


def _against_records(ours: list, theirs: list) -> list[dict]:
    """Cell by cell, ours (--db) beside the other database's ours; ``change`` is ours minus theirs in the
    printed unit, unrounded (so a count that moved by one parameter shows)."""
    from .specs import SCALE, Printed

    other = {(r.paper, r.table, r.section, r.row, r.column): r for r in theirs}
    out = []
    for r in ours:
        o = other.get((r.paper, r.table, r.section, r.row, r.column))
        scale = SCALE[Printed.parse(r.printed).suffix] if r.published is not None else 1
        mine = r.ours_exact / scale if r.ours_exact is not None else None
        them = o.ours_exact / scale if o is not None and o.ours_exact is not None else None
        change = round(mine - them, 9) if mine is not None and them is not None else None
        out.append({"paper": r.paper, "table": r.table, "section": r.section, "row": r.row, "column": r.column,
                    "metric": r.metric, "printed": r.printed, "published": r.published, "ours": _number(r.ours),
                    "against": _number(o.ours) if o else None, "change": _number(change), "budget": r.budget,
                    "against_budget": o.budget if o else None, "n": r.n, "against_n": o.n if o else 0,
                    "status": r.status, "against_status": o.status if o else "pending"})
    return out


def _print_records(records: list[dict], fmt: str, columns: list[str], text: list[list[str]]) -> None:
    if fmt == "json":
        print(json.dumps(records, indent=1, ensure_ascii=False))  # json writes floats at their shortest repr
        return
    if fmt == "csv":
        import csv

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


def _plain(x) -> str:
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
    return (f"{text}; against: {len(both)} cell(s) in both, {moved} changed, {status} changed status, "
            f"{only_db} only in --db, {only_other} only in --against")


def _check_fail_over(rows: list, against: list[dict] | None, threshold: float | None) -> bool:
    """True when a comparable cell is off by more than ``threshold``; says so when nothing was comparable."""
    from .compare import comparable, fails_over

    if threshold is None:
        return False
    if against is None:
        checked, bad = comparable(rows), fails_over(rows, threshold)
        for r in bad:
            print(f"regression: {r.paper}/{r.table} {r.row} / {r.column}: ours {_number(r.ours)} vs {r.printed} "
                  f"(delta {r.delta:+.4g} > {threshold})", file=sys.stderr)
        diverged = [r for r in rows if r.status == "diverged" and r.budget == "full"]  # worse than any delta
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
        pending = sum(1 for r in rows if r.status == "pending")
        print(f"fail-over: no comparable cell ({pending} of {len(rows)} pending, the rest short-budget, cited or "
              f"without a number): nothing was checked", file=sys.stderr)
    return bool(bad)


@app.command()
def report(paper: Optional[list[str]] = typer.Option(None, "--paper", help="paper(s); default all"),
           out: Path = typer.Option(Path("reports"), "--out", help="output directory"),
           db: Optional[str] = DbOpt, specs_dir: Optional[str] = SpecsOpt):
    """Render Markdown pages and figures comparing ours with the published numbers."""
    from .db import Database
    from .report import render

    try:
        catalog = _catalog(specs_dir)
    except SpecError as e:
        _fail(str(e))
    for p in paper or []:
        if p not in catalog.papers:
            _fail(f"unknown paper {p!r}; known: {', '.join(catalog.papers)}")
    written = render(catalog, Database(db), out, paper or list(catalog.papers))
    for path in written:
        console.print(f"wrote {path}")


@app.command()
def status(db: Optional[str] = DbOpt):
    """Jobs by state."""
    from .db import Database

    jobs = Database(db).jobs_by_state()
    counts = {}
    for j in jobs:
        counts[j.state] = counts.get(j.state, 0) + 1
    console.print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no jobs")
    t = Table()
    for col in ("job", "state", "kind", "model", "budget", "seed", "progress", "owner"):
        t.add_column(col)
    for j in jobs:
        t.add_row(j.id, j.state, j.kind, j.model, j.budget, "-" if j.seed is None else str(j.seed),
                  j.progress or "", j.owner or "")
    console.print(t)


# --- specs, models, data -----------------------------------------------------------------

@specs_app.command("check")
def specs_check(specs_dir: Optional[str] = SpecsOpt):
    """Validate every spec; one line per paper, or the first error and exit code 2."""
    from .specs import table_cells

    try:
        catalog = _catalog(specs_dir)
    except SpecError as e:
        _fail(str(e))
    total = 0
    for slug, p in catalog.papers.items():
        cells = [c for t in p.tables.values() for c in table_cells(p, t)]
        total += len(cells)
        flagged = sum(1 for c in cells if c.published.uncertain)
        console.print(f"{slug}: {len(p.tables)} spec file(s), {len(cells)} published cells"
                      f"{f', {flagged} flagged uncertain' if flagged else ''}: ok")
    console.print(f"{len(catalog.papers)} paper(s), {total} cells: ok")


@models_app.command("list")
def models_list(paper: Optional[str] = typer.Option(None, "--paper", help="only models this paper's specs use"),
                specs_dir: Optional[str] = SpecsOpt):
    """Registered models, with the papers whose specs use each (named models first, then backbones)."""
    import models
    from .specs import table_cells

    try:
        catalog = _catalog(specs_dir)
    except SpecError as e:
        _fail(str(e))
    used: dict[str, set[str]] = {}
    for slug, p in catalog.papers.items():
        for spec in p.tables.values():
            for cell in table_cells(p, spec):
                if "model" in cell.production:
                    used.setdefault(cell.production["model"], set()).add(slug)
    t = Table()
    for col in ("model", "used by", "backbone", "attention"):
        t.add_column(col)
    for name in models.available():
        info = models.MODEL_INFO.get(name, {"backbone": name, "attention": "(any)"})
        papers = used.get(name, set())
        if paper and paper not in papers:
            continue
        t.add_row(name, ", ".join(sorted(papers)), info.get("backbone") or "", info.get("attention") or "")
    console.print(t)


@models_app.command("show")
def models_show(name: str, num_classes: Optional[int] = typer.Option(None, "--num-classes"),
                input_size: str = typer.Option("1,3,32,32", "--input-size", help="e.g. 1,3,224,224"),
                profile: str = typer.Option("thop-2004", "--profile", help="thop-2001 | thop-2004 | thop-0.1"),
                as_json: bool = typer.Option(False, "--json")):
    """Parameters and MACs of one model."""
    import models
    from .counting import measure

    if not models.is_known(name):
        _fail(f"unknown model {name!r}; see `repro models list`")
    try:
        size = tuple(int(x) for x in input_size.split(","))
        model = models.create(name, num_classes=num_classes)
        c = measure(model, size, profile)
    except ValueError as e:
        _fail(str(e))
    d = {"model": name, "params": c.params, "params_mxnet": c.params_mxnet, "macs": c.macs, "profile": c.profile,
         "input_size": list(c.input_size), **{k: v for k, v in models.MODEL_INFO.get(name, {}).items() if v}}
    if as_json:
        print(json.dumps(d, indent=1))
    else:
        console.print(f"{name}: {c.params:,} parameters ({c.params / 1e6:.3f}M; {c.params_mxnet:,} counting BN "
                      f"running stats), {c.macs:,} MACs ({c.macs / 1e9:.3f}G) at {list(size)} [{profile}]")


@data_app.command("fake")
def data_fake(dataset: str, directory: Path):
    """Write a tiny dataset in the real on-disk format under DIRECTORY."""
    from .data import FAKES

    if dataset not in FAKES:
        _fail(f"unknown dataset {dataset!r}; fakes exist for {', '.join(FAKES)}")
    path = FAKES[dataset](directory)
    console.print(f"wrote a tiny {dataset} to {path} (use --data-dir {directory})")


def main() -> None:
    try:
        app()
    except SpecError as e:  # pragma: no cover - commands catch their own
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
