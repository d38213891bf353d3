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
        seeds: int = typer.Option(1, "--seeds", help="seeds per cell"),
        workers: Optional[int] = typer.Option(None, "--workers",
                                              help="worker processes or Slurm tasks (default: one per GPU, else 1)"),
        jobs_per_gpu: int = typer.Option(1, "--jobs-per-gpu", help="local workers sharing one GPU"),
        executor: str = typer.Option("local", "--executor", help="local | slurm | submitit-local | submitit-debug"),
        detach: bool = typer.Option(False, "--detach", help="slurm: submit and return; follow with `repro status`"),
        lease_seconds: int = typer.Option(180, "--lease-seconds",
                                          help="take over a job whose owner sent no heartbeat for this long"),
        threads: Optional[int] = typer.Option(None, "--threads",
                                              help="torch CPU threads per worker (default: the Slurm task's CPUs)"),
        slurm_partition: Optional[str] = typer.Option(None, "--slurm-partition"),
        slurm_gpus: Optional[int] = typer.Option(None, "--slurm-gpus",
                                                 help="GPUs per Slurm task (default 1 if the plan trains, else 0)"),
        slurm_cpus: Optional[int] = typer.Option(None, "--slurm-cpus", help="CPUs per Slurm task"),
        slurm_mem: Optional[str] = typer.Option(None, "--slurm-mem", help="memory per Slurm task, e.g. 16G"),
        slurm_account: Optional[str] = typer.Option(None, "--slurm-account"),
        slurm_qos: Optional[str] = typer.Option(None, "--slurm-qos"),
        slurm_constraint: Optional[str] = typer.Option(None, "--slurm-constraint"),
        slurm_opt: Optional[list[str]] = typer.Option(None, "--slurm-opt",
                                                      help="any other sbatch option as KEY=VALUE (repeatable)"),
        slurm_timeout_min: int = typer.Option(24 * 60, "--slurm-timeout-min"),
        log_dir: str = typer.Option("submitit_logs", "--log-dir", help="Slurm/submitit task logs"),
        dry_run: bool = typer.Option(False, "--dry-run", help="print the plan; run nothing"),
        fmt: str = typer.Option("table", "--format", help="dry-run output: table | json"),
        kind: Optional[list[str]] = typer.Option(None, "--kind", help="only jobs of this kind (profile, train, detect)"),
        db: Optional[str] = DbOpt, specs_dir: Optional[str] = SpecsOpt,
        data_dir: Optional[str] = typer.Option(None, "--data-dir", help="datasets root (default $REPRO_DATA or ./data)"),
        download: bool = typer.Option(False, "--download", help="download datasets that torchvision can fetch"),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
        checkpoint_dir: str = typer.Option("checkpoints", "--checkpoint-dir"),
        loader_workers: int = typer.Option(0, "--loader-workers", help="DataLoader worker processes per job")):
    """Expand specs into jobs and run the ones not done yet."""
    from . import executor as ex
    from .db import Database, db_url
    from .plan import PlanError, parse_budget, plan, published_rows, resolve_targets, split_missing_data
    from .worker import WorkerOptions

    try:
        catalog = _catalog(specs_dir)
        budget = parse_budget(budget, epochs)
        resolved = resolve_targets(catalog, targets or [], paper)
        jobs = plan(catalog, resolved, budget=budget, seeds=seeds, kinds=set(kind) if kind else None)
    except (SpecError, PlanError) as e:
        _fail(str(e))
    if fmt not in ("table", "json"):
        _fail(f"--format must be table or json, got {fmt!r}")
    url = db_url(db)
    if dry_run:  # a dry run never creates the database
        states = Database(url, create=False).job_states(j.id for j in jobs) if _db_exists(url) else {}
        _print_plan(jobs, states, resolved, fmt)
        return
    database = Database(url)
    states = database.job_states(j.id for j in jobs)
    database.sync_published(*published_rows(catalog, resolved))
    database.add_jobs(j.row() for j in jobs)
    todo = [j for j in jobs if states.get(j.id) != "done"]
    console.print(f"{len(jobs)} job(s) planned, {len(jobs) - len(todo)} already done, {len(todo)} to run "
                  f"[budget {budget}] -> {url}")
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
    wopts = WorkerOptions(db_url=url, data_dir=data_dir, download=download, device=device,
                          checkpoint_dir=checkpoint_dir, loader_workers=loader_workers,
                          lease_seconds=lease_seconds, threads=threads)
    try:
        slurm = ex.SlurmOptions(partition=slurm_partition, gpus=slurm_gpus, cpus_per_task=slurm_cpus, mem=slurm_mem,
                                account=slurm_account, qos=slurm_qos, constraint=slurm_constraint,
                                timeout_min=slurm_timeout_min, extra=ex.parse_slurm_opts(slurm_opt))
        eopts = ex.ExecOptions(workers=workers, executor=executor, slurm=slurm, log_dir=log_dir,
                               jobs_per_gpu=jobs_per_gpu, detach=detach)
        report = ex.run(todo, wopts, eopts, console)
    except ex.ExecError as e:
        _fail(str(e))
    if detach:
        return
    console.print(f"ran {len(report.ran)} job(s), {len(report.failed)} failed")
    for jid, msg in report.failed.items():
        print(f"failed {jid}: {msg}", file=sys.stderr)
    if report.failed or unrunnable:
        raise typer.Exit(1)


def _db_exists(url: str) -> bool:
    from .db import exists

    return exists(url)


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


# --- diff, report, status -----------------------------------------------------------------

@app.command()
def diff(targets: list[str] = typer.Argument(..., help="<paper>, <paper>/<table>, or <table> with --paper"),
         paper: Optional[str] = typer.Option(None, "--paper"),
         fmt: str = typer.Option("table", "--format", help="table | json | csv"),
         fail_over: Optional[float] = typer.Option(None, "--fail-over",
                                                   help="exit 1 if a full-budget cell differs by more than X"),
         db: Optional[str] = DbOpt, specs_dir: Optional[str] = SpecsOpt):
    """Ours vs paper, cell by cell."""
    from .compare import compare_paper, fails_over
    from .db import Database
    from .plan import PlanError, resolve_targets

    try:
        catalog = _catalog(specs_dir)
        resolved = resolve_targets(catalog, targets, paper)
    except (SpecError, PlanError) as e:
        _fail(str(e))
    if fmt not in ("table", "json", "csv"):
        _fail(f"--format must be table, json or csv, got {fmt!r}")
    database = Database(db)
    rows = []
    for p, t in resolved:
        rows += [r for r in compare_paper(catalog, p, database, [t]) if r.status != "not-printed"]
    fields = ["table", "section", "row", "column", "metric", "printed", "published", "ours", "ours_exact", "std",
              "n", "delta", "budget", "status", "detail", "uncertain", "reason", "also"]
    if fmt in ("json", "csv"):
        import pandas as pd

        frame = pd.DataFrame([{k: getattr(r, k) for k in ["paper"] + fields} for r in rows], columns=["paper"] + fields)
        if fmt == "json":
            print(frame.to_json(orient="records", indent=1, double_precision=15))
        else:
            print(frame.to_csv(index=False), end="")
    else:
        from .report import fmt_ours

        t = Table(show_lines=False)
        for col in ("table", "row", "column", "published", "ours", "delta", "budget", "status"):
            t.add_column(col)
        for r in rows:
            row = f"{r.section} / {r.row}" if r.section else r.row
            t.add_row(r.table, row, r.column, r.printed + (" (?)" if r.uncertain else ""), fmt_ours(r),
                      "" if r.delta is None or r.status == "not-comparable" else f"{r.delta:+.3g}", r.budget or "",
                      r.status)
        console.print(t)
    if fail_over is not None:
        bad = fails_over(rows, fail_over)
        for r in bad:
            print(f"regression: {r.paper}/{r.table} {r.row} / {r.column}: ours {r.ours} vs {r.printed} "
                  f"(delta {r.delta:+.4g} > {fail_over})", file=sys.stderr)
        if bad:
            raise typer.Exit(1)


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
    """Jobs by state; running jobs with their epoch, host and ETA."""
    from .db import Database, db_url, exists, safe_url
    from .status import running_rows

    url = db_url(db)
    if not exists(url):
        _fail(f"no repro database at {safe_url(url)} (repro run creates it)")
    database = Database(url, create=False)
    jobs = database.jobs_by_state()
    counts = Counter(j.state for j in jobs)
    console.print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no jobs", markup=False)
    running = running_rows(database.running())
    if running:
        t = Table(title="running")
        for col in ("job", "kind", "model", "progress", "host", "pid", "elapsed", "ETA", "heartbeat"):
            t.add_column(col)
        for r in running:
            t.add_row(*(r[c] for c in ("job", "kind", "model", "progress", "host", "pid", "elapsed", "eta",
                                       "heartbeat")))
        console.print(t)
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
    except Exception as e:  # a database that cannot be reached is one line, wherever it is opened
        from .db import DatabaseError

        if not isinstance(e, DatabaseError):
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
