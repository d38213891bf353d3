"""The ``repro`` command line. It parses options and calls the library; nothing else lives here.

Bad input is refused before anything is written or any spec is loaded: option values are checked
when parsed (choices, ranges, ``--device``), the database URL and its driver before the first query.
Every refusal is one line ``error: ...`` on stderr with exit code 2.
"""
from __future__ import annotations

import atexit
import csv
import gc
import json
import os
import re
import sys
from collections import Counter
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .specs import SpecError

def _examples(*lines: str) -> str:
    """An epilog click prints as written (the \\b paragraph is not rewrapped)."""
    return "\b\n" + ("Examples:\n" if len(lines) > 1 else "Example:\n") + "\n".join(f"  {x}" for x in lines)


# -h as well as --help; completion on (--install-completion); a bare `repro` prints help and exits 0
# (click >= 8.2 exits 2 on `no_args_is_help`, so the callbacks below do it themselves).
CONTEXT = {"help_option_names": ["-h", "--help"]}
# rich_markup_mode=None: help text is printed literally (a `'.[postgres]'` in it would be eaten as
# markup) and flags are shown as flags, without typer's `<bool>` metavar.
_TYPER = dict(context_settings=CONTEXT, rich_markup_mode=None, pretty_exceptions_enable=False)
app = typer.Typer(add_completion=True, help="Reproduce paper tables: specs -> jobs -> results.db -> reports.",
                  epilog=_examples("repro run se-r/table1 && repro diff se-r/table1"), **_TYPER)
specs_app = typer.Typer(help="Validate and inspect table specs.", epilog=_examples("repro specs check"), **_TYPER)
models_app = typer.Typer(help="List and inspect registered models.", epilog=_examples("repro models list --paper cra"),
                         **_TYPER)
data_app = typer.Typer(help="Datasets: tiny fakes in the real on-disk formats.",
                       epilog=_examples("repro data fake cifar100 /tmp/tiny"), **_TYPER)
app.add_typer(specs_app, name="specs")
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")

# Output is literal text: `[budget full]` and `[thop-2004]` are not Rich markup, and numbers are not
# recoloured (highlight=False).
console = Console(markup=False, highlight=False)
if not console.is_terminal:  # piped output: do not squeeze tables into 80 columns
    console = Console(width=200, markup=False, highlight=False)

DbOpt = typer.Option(None, "--db", metavar="URL",
                     help="SQLAlchemy URL (default $REPRO_DB or sqlite:///<repo>/results.db)")
SpecsOpt = typer.Option(None, "--specs-dir", metavar="DIR", help="specs directory (default $REPRO_SPECS or <repo>/specs)")


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


class Kind(str, Enum):
    profile = "profile"
    train = "train"
    detect = "detect"


class Engine_(str, Enum):  # the trainer's Engine is the class; this is the option's choice
    fast = "fast"
    reference = "reference"


class Precision(str, Enum):
    bf16 = "bf16"
    fp32 = "fp32"


BenchResultFields = ("job", "model", "dataset", "device", "engine", "precision", "compiled", "batch_size", "steps",
                     "img_per_s", "ref_img_per_s", "ratio", "ms_per_step", "peak_mem_mb", "projected_hours",
                     "data_img_per_s", "ref_data_img_per_s", "data_ratio", "config_key")


def FormatOpt(what: str = "output"):
    return typer.Option(Format.table, "--format", help=f"{what} format")


EXECUTORS = ("local", "slurm", "submitit-local", "submitit-debug")


def _fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)  # one line, never wrapped
    raise typer.Exit(2)


def _catalog(specs_dir):
    from .catalog import load_catalog
    from .paths import resolve

    return load_catalog(resolve("specs", specs_dir))


# --- the root command: --version, bare `repro` --------------------------------------------

def _version() -> str:
    import subprocess
    from importlib import metadata

    try:
        version = metadata.version("repro")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a bare checkout
        version = "unknown"
    checkout, git = Path(__file__).resolve().parent.parent, ""
    if (checkout / ".git").exists():  # an installed copy has no commit to report
        try:
            git = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return f"repro {version}" + (f" (git {git})" if git else "")


def _help_when_bare(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


def _show_version(value: bool) -> None:
    if value:
        print(_version())
        raise typer.Exit(0)


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context,
          version: bool = typer.Option(False, "--version", "-V", is_eager=True, callback=_show_version,
                                       help="print the package version and git commit, then exit")):
    _help_when_bare(ctx)


for _sub in (specs_app, models_app, data_app):
    _sub.callback(invoke_without_command=True)(_help_when_bare)


# --- input checks, before any work -------------------------------------------------------

def _device(value: str) -> str:
    """``--device``: refused at parse time unless auto, cpu, cuda or cuda:N; a GPU that is not there
    is refused before any job is claimed (a job would otherwise be left `running`)."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise typer.BadParameter(f"{value!r}: use auto, cpu, cuda or cuda:N", param_hint="'--device'")
    if value.startswith("cuda"):
        import torch

        index = int(value.partition(":")[2] or 0)
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if index >= count:
            have = f"{count} GPU(s) visible" if count else "no GPU visible (torch.cuda.is_available() is False)"
            raise typer.BadParameter(f"{value!r}: {have}; use --device cpu or auto", param_hint="'--device'")
    return value


def _check_db(explicit: str | None, *, write: bool, must_exist: bool = True) -> str:
    """The database URL, checked without creating anything: parsed, its driver importable, and for
    SQLite the file writable (its directory too: WAL mode adds files beside it) or, for reading, present
    and readable. Returns the URL; fails with one line otherwise."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from .paths import db_url

    raw = db_url(explicit)
    try:
        url = make_url(raw)
    except ArgumentError:
        _fail(f"database URL {raw!r} is not a URL (a SQLite file is sqlite:///path/to/file.db; "
              f"PostgreSQL postgresql+psycopg://user@host/db)")
    shown = url.render_as_string(hide_password=True)
    try:
        dialect = url.get_dialect()
    except NoSuchModuleError:
        _fail(f"database URL {shown}: unknown database kind {url.drivername!r} (use sqlite:///PATH or "
              f"postgresql+psycopg://...)")
    try:
        dialect.import_dbapi()
    except ImportError as e:
        hint = ("; PostgreSQL needs pip install -e '.[postgres]' and a postgresql+psycopg:// URL"
                if dialect.name == "postgresql" else "")
        _fail(f"database URL {shown}: driver {url.get_driver_name()!r} is not installed ({e}){hint}")
    if dialect.name == "sqlite" and url.database not in (None, "", ":memory:"):
        _check_sqlite_file(Path(url.database), write=write, must_exist=must_exist)
    return raw


def _check_sqlite_file(path: Path, *, write: bool, must_exist: bool) -> None:
    import tempfile

    if not path.exists():
        if not write:
            if must_exist:
                _fail(f"no database at {path} (`repro run` creates it; or point --db/$REPRO_DB at one)")
            return
        if not path.parent.is_dir():
            _fail(f"cannot create the database {path}: directory {path.parent} does not exist")
    try:  # opening is not creating: O_RDWR on an existing file, an unnamed temporary file in the directory
        os.close(os.open(path, os.O_RDWR if write else os.O_RDONLY))
    except FileNotFoundError:
        pass
    except OSError as e:
        _fail(f"the database {path} is {'read-only' if write else 'unreadable'} ({e.strerror})")
    if write:
        try:
            tempfile.TemporaryFile(dir=path.parent).close()
        except OSError as e:
            _fail(f"cannot write the database {path}: directory {path.parent} is not writable ({e.strerror})")


# --- printing data: one helper for table | json | csv ------------------------------------

def _plain(value):
    """Numbers as numbers: integers without a fraction, floats in their shortest repr (21.655)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _text(value, for_csv: bool = False) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):  # CSV keeps a list parseable; a table shows it for reading
        return json.dumps(value) if for_csv else ", ".join(str(v) for v in value)
    return str(value)


def _emit(rows: list[dict], fmt: Format, columns: list[str], title: str | None = None) -> None:
    if fmt == Format.json:
        print(json.dumps([{k: _plain(r.get(k)) for k in columns} for r in rows], indent=1))
    elif fmt == Format.csv:
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(columns)
        out.writerows([_text(r.get(k), for_csv=True) for k in columns] for r in rows)
    else:
        t = Table(title=title)
        for col in columns:
            t.add_column(col)
        for r in rows:
            t.add_row(*(_text(r.get(k)) for k in columns))
        console.print(t)


# --- run --------------------------------------------------------------------------------

@app.command(epilog=_examples("repro run se-r/table1 se-r/table2", "repro run se-r/table3 --budget smoke --data-dir /tmp/tiny",
                            "repro run cra --dry-run --format json"))
def run(targets: list[str] = typer.Argument(None, metavar="TARGET...", help="<paper>, <paper>/<table>, or <table> with --paper"),
        paper: Optional[str] = typer.Option(None, "--paper", metavar="PAPER", help="paper of bare table names"),
        budget: str = typer.Option("full", "--budget", metavar="BUDGET", help="full | smoke"),
        epochs: Optional[int] = typer.Option(None, "--epochs", min=1, metavar="N",
                                             help="shorten schedules to N epochs (budget epochs-N)"),
        seeds: int = typer.Option(
            1, "--seeds", min=1, metavar="N",
            help="seeds per cell; a verdict needs 3 at least, 5 recommended: at a CIFAR seed std "
            "of 0.25 the 95% interval is +-0.62 points with 3 seeds, +-0.31 with 5 (tolerance 0.3-0.5), and a "
            "claimed gain needs about 0.57 (3 seeds) or 0.36 (5) to be significant; the papers claim 0.09-1.94"),
        workers: Optional[int] = typer.Option(None, "--workers", min=1, metavar="N",
                                              help="worker processes or Slurm tasks (default: one per GPU, else 1)"),
        jobs_per_gpu: int = typer.Option(1, "--jobs-per-gpu", min=1, metavar="K", help="local workers sharing one GPU"),
        executor: str = typer.Option("local", "--executor", metavar="EXECUTOR", help="local | slurm | submitit-local | submitit-debug"),
        detach: bool = typer.Option(False, "--detach", help="slurm: submit and return; follow with `repro status`"),
        lease_seconds: Optional[float] = typer.Option(None, "--lease-seconds", metavar="S",
                                                      help="take over a job whose owner sent no heartbeat for this "
                                                           "long (default 180, or $REPRO_LEASE_SECONDS)"),
        threads: Optional[int] = typer.Option(None, "--threads", metavar="N",
                                              help="torch CPU threads per worker (default: the Slurm task's CPUs)"),
        slurm_partition: Optional[str] = typer.Option(None, "--slurm-partition", metavar="NAME"),
        slurm_gpus: Optional[int] = typer.Option(None, "--slurm-gpus", metavar="N",
                                                 help="GPUs per Slurm task (default 1 if the plan trains, else 0)"),
        slurm_cpus: Optional[int] = typer.Option(None, "--slurm-cpus", metavar="N", help="CPUs per Slurm task"),
        slurm_mem: Optional[str] = typer.Option(None, "--slurm-mem", metavar="MEM", help="memory per Slurm task, e.g. 16G"),
        slurm_account: Optional[str] = typer.Option(None, "--slurm-account", metavar="NAME"),
        slurm_qos: Optional[str] = typer.Option(None, "--slurm-qos", metavar="NAME"),
        slurm_constraint: Optional[str] = typer.Option(None, "--slurm-constraint", metavar="FEATURES"),
        slurm_opt: Optional[list[str]] = typer.Option(None, "--slurm-opt", metavar="KEY=VALUE",
                                                      help="any other sbatch option as KEY=VALUE (repeatable)"),
        slurm_timeout_min: int = typer.Option(24 * 60, "--slurm-timeout-min", metavar="MIN", help="Slurm time limit per task, minutes"),
        log_dir: str = typer.Option("submitit_logs", "--log-dir", metavar="DIR", help="Slurm/submitit task logs"),
        dry_run: bool = typer.Option(False, "--dry-run", help="print the plan; run nothing"),
        fmt: Format = FormatOpt("dry-run output"),
        kind: Optional[list[Kind]] = typer.Option(None, "--kind", metavar="KIND",
                                                  help="only jobs of this kind: profile | train | detect (repeatable)"),
        max_jobs: int = typer.Option(5000, "--max-jobs", min=1, metavar="N",
                                     help="refuse to plan more jobs than this in one invocation"),
        db: Optional[str] = DbOpt, specs_dir: Optional[str] = SpecsOpt,
        data_dir: Optional[str] = typer.Option(None, "--data-dir", metavar="DIR",
                                               help="datasets root (default $REPRO_DATA or <repo>/data)"),
        download: bool = typer.Option(False, "--download", help="download datasets that torchvision can fetch"),
        device: str = typer.Option("auto", "--device", callback=_device, metavar="DEVICE",
                                   help="auto | cpu | cuda | cuda:N"),
        checkpoint_dir: Optional[str] = typer.Option(None, "--checkpoint-dir", metavar="DIR",
                                                     help="training checkpoints (default <repo>/checkpoints)"),
        loader_workers: Optional[int] = typer.Option(None, "--loader-workers", min=0, metavar="N",
                                                     help="DataLoader worker processes per job (default: 0, "
                                                          "or a share of the CPU cores for ImageNet)"),
        engine: Engine_ = typer.Option("fast", "--engine", help="fast (device-resident 32x32 data, batched "
                                       "augmentation) | reference (torchvision transforms + DataLoader)"),
        precision: Optional[Precision] = typer.Option(None, "--precision", help="bf16 | fp32 (default bf16 on "
                                                      "CUDA, fp32 on CPU); recorded with each run, never part of the job"),
        compile_: bool = typer.Option(False, "--compile", help="torch.compile the model"),
        retry_failed: bool = typer.Option(False, "--retry-failed", help="also retry diverged jobs (failed "
                                          "jobs are always retried)"),
        keep_checkpoints: bool = typer.Option(False, "--keep-checkpoints",
                                              help="keep a finished job's checkpoints")):
    """Expand specs into jobs and run the ones not done yet."""
    # what needs no spec (and no torch import) is checked first: seconds must not precede a typo
    if executor not in EXECUTORS:
        _fail(f"unknown --executor {executor!r}; use one of {', '.join(EXECUTORS)}")
    url = _check_db(db, write=not dry_run, must_exist=False)

    from .plan import PlanError, parse_budget, plan, published_rows, resolve_targets, split_missing_data

    try:
        budget = parse_budget(budget, epochs)
    except PlanError as e:
        _fail(str(e))
    try:
        catalog = _catalog(specs_dir)
        resolved = resolve_targets(catalog, targets or [], paper)
        jobs = plan(catalog, resolved, budget=budget, seeds=seeds, kinds={k.value for k in kind} if kind else None,
                    max_jobs=max_jobs)
    except (SpecError, PlanError) as e:
        _fail(str(e))
    from .db import Database, resolve  # sqlalchemy costs 0.5 CPU-s: not before the specs are known to be good

    if dry_run:  # a dry run never creates the database
        states = {}
        if _db_exists(url):
            states = Database(url, create=False).job_states(j.id for j in jobs)
        else:
            print(f"note: no database at {url} yet: every job is new", file=sys.stderr)
        _print_plan(jobs, states, resolved, fmt)
        return
    data_dir = str(resolve("data", data_dir))
    checkpoint_dir = str(resolve("checkpoints", checkpoint_dir))
    database = Database(url)
    states = database.job_states(j.id for j in jobs)
    database.sync_published(*published_rows(catalog, resolved))
    database.add_jobs(j.row() for j in jobs)
    finished = ("done",) if retry_failed else ("done", "diverged")
    todo = [j for j in jobs if states.get(j.id) not in finished]
    diverged = 0 if retry_failed else sum(1 for j in jobs if states.get(j.id) == "diverged")
    shown_budget = "static" if all(j.kind == "profile" for j in jobs) else budget  # counts have no budget
    console.print(f"{len(jobs)} job(s) planned, {len(jobs) - len(todo)} already done"
                  + (f" ({diverged} diverged; --retry-failed runs them again)" if diverged else "")
                  + f", {len(todo)} to run [budget {shown_budget}] -> {url}")
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
            console.print(f"retrying {n} failed or diverged job(s)")
    from . import executor as ex  # imports torch: only once there is something to run (keeps dry runs fast)
    from .worker import WorkerOptions

    wopts = WorkerOptions(db_url=url, data_dir=data_dir, download=download, device=device,
                          checkpoint_dir=checkpoint_dir, loader_workers=loader_workers, engine=engine.value,
                          precision=precision.value if precision else None, compile=compile_,
                          keep_checkpoints=keep_checkpoints, threads=threads,
                          **({"lease_seconds": lease_seconds} if lease_seconds is not None else {}))
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
        print(f"{'diverged' if msg.startswith('loss became') else 'failed'} {jid}: {msg}", file=sys.stderr)
    if report.failed or unrunnable:
        raise typer.Exit(1)


def _db_exists(url: str) -> bool:
    from .db import exists

    return exists(url)


PLAN_COLUMNS = ["job", "kind", "model", "seed", "budget", "state", "cells"]


def _print_plan(jobs, states, resolved, fmt: Format):
    papers = {}
    for p, t in resolved:
        papers.setdefault(p.slug, []).append(t)
    rows = [{"job": j.id, "kind": j.kind, "model": j.model, "seed": j.seed, "budget": j.budget,
             "cells": j.cells, "state": states.get(j.id, "new")} for j in jobs]
    if fmt != Format.table:
        _emit(rows, fmt, PLAN_COLUMNS)
        return
    for r in rows:  # the table shows a few cells per job, not all of them
        cells = r["cells"]
        r["cells"] = ", ".join(c.split("/", 1)[1] for c in cells[:3]) + (f" (+{len(cells) - 3})" if len(cells) > 3 else "")
        r["seed"] = "-" if r["seed"] is None else r["seed"]
    _emit(rows, fmt, ["job", "kind", "model", "seed", "state", "cells"], title="plan")
    for slug, tables in papers.items():
        mine = [j for j in jobs if any(c.startswith(slug + "/") for c in j.cells)]
        done = sum(1 for j in mine if states.get(j.id) == "done")
        console.print(f"{slug}: {len(tables)} spec(s), {len(mine)} job(s) ({_kinds(mine) or 'none'}), {done} done")
    console.print(f"total: {len(jobs)} distinct job(s): {_kinds(jobs)}")


def _kinds(jobs) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(Counter(j.kind for j in jobs).items()))


@app.command(epilog=_examples("repro bench se-r/table3 --steps 20 --vs reference",
                            "repro bench cra/table4 --precision bf16 --compile --format json"))
def bench(targets: list[str] = typer.Argument(..., help="<paper>, <paper>/<table>, or <table> with --paper"),
          paper: Optional[str] = typer.Option(None, "--paper", metavar="PAPER", help="paper of bare table names"),
          steps: int = typer.Option(20, "--steps", min=1, metavar="N", help="timed optimizer steps per job"),
          engine: Engine_ = typer.Option("fast", "--engine", help="fast | reference"),
          precision: Optional[Precision] = typer.Option(None, "--precision",
                                                        help="bf16 | fp32 (default bf16 on CUDA, fp32 on CPU)"),
          compile_: bool = typer.Option(False, "--compile", help="torch.compile the model"),
          vs: Optional[Engine_] = typer.Option(None, "--vs", help="reference: also time the reference loop, "
                                               "print the ratio"),
          device: str = typer.Option("auto", "--device", callback=_device, metavar="DEVICE",
                                     help="auto | cpu | cuda | cuda:N"),
          fmt: Format = FormatOpt(),
          db: Optional[str] = DbOpt, specs_dir: Optional[str] = SpecsOpt):
    """Time N steps of each training job's exact recipe on synthetic data of the real shape."""
    from .bench import bench_job
    from .db import Database
    from .plan import PlanError, plan, resolve_targets
    from .trainer import Engine
    from .worker import device_name, git_state, pick_device

    if vs is not None and vs.value != "reference":
        _fail(f"--vs takes only 'reference', got {vs.value!r}")
    url = _check_db(db, write=True, must_exist=False)
    try:
        catalog = _catalog(specs_dir)
        jobs = plan(catalog, resolve_targets(catalog, targets, paper), kinds={"train"})
    except (SpecError, PlanError) as e:
        _fail(str(e))
    dev = pick_device(device)
    if os.environ.get("REPRO_THREADS"):
        import torch

        torch.set_num_threads(max(1, int(os.environ["REPRO_THREADS"])))
    eng = Engine.for_device(dev, engine.value, precision.value if precision else None, compile_)
    label = device_name(dev)
    database = Database(url)
    commit = git_state()[0]
    results = []
    for job in jobs:
        r = bench_job(job, eng, dev, steps, label, vs is not None)
        results.append(r)
        row = r.row()
        database.put_benchmark({k: row[k] for k in ("job_id", "config_key", "model", "device", "engine", "precision",
                                                     "compiled", "batch_size", "steps", "img_per_s", "ms_per_step",
                                                     "peak_mem_mb", "projected_hours") if k in row}
                               | {"job_id": r.job, "config": job.spec, "git_commit": commit})
        if fmt.value == "table":
            ratio = (f"; reference {r.ref_img_per_s:,.1f} img/s, ratio {r.ratio:.2f}x; data path alone "
                     f"{r.data_img_per_s:,.0f} vs {r.ref_data_img_per_s:,.0f} img/s, ratio {r.data_ratio:.1f}x"
                     if r.ratio else f"; data path alone {r.data_img_per_s:,.0f} img/s")
            print(f"{r.job} {r.model} [{r.dataset}, batch {r.batch_size}] on {r.device}, {r.engine}/{r.precision}"
                  f"{'/compiled' if r.compiled else ''}: {r.img_per_s:,.1f} img/s, {r.ms_per_step:,.1f} ms/step, "
                  f"peak {r.peak_mem_mb:,.0f} MB, full recipe ~{r.projected_hours:,.1f} h{ratio}", flush=True)
    if fmt.value != "table":
        _emit([r.row() for r in results], fmt, list(BenchResultFields))
    elif not results:
        print("no training jobs in these targets", file=sys.stderr)


# --- diff, report, status -----------------------------------------------------------------

@app.command(epilog=_examples("repro diff se-r/table1", "repro diff se-r --format json --fail-over 1.0",
                            "repro diff se-r --against sqlite:///old.db --fail-over 0.1"))
def diff(targets: list[str] = typer.Argument(..., help="<paper>, <paper>/<table>, or <table> with --paper"),
         paper: Optional[str] = typer.Option(None, "--paper", metavar="PAPER", help="paper of bare table names"),
         fmt: Format = FormatOpt(),
         fail_over: Optional[float] = typer.Option(
             None, "--fail-over", metavar="POINTS", help="exit 1 if a full-budget cell differs from the paper (or, with --against, "
             "from the other database) by more than X, or diverged; with no comparable cell it says so and exits 0"),
         fail_on_pending: bool = typer.Option(False, "--fail-on-pending", help="exit 1 if any selected cell is pending"),
         against: Optional[str] = typer.Option(
             None, "--against", metavar="URL", help="a second results database (URL): compare ours with ours there, cell by cell"),
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
    if against is not None:
        against = _check_db(against, write=False)

    def compared(database):
        return [r for p, t in resolved for r in compare_paper(catalog, p, database, [t]) if r.status != "not-printed"]

    rows = compared(Database(_check_db(db, write=False), create=False))  # read-only: never creates one
    if against is None:
        records = [_diff_record(r) for r in rows]
        columns = ["table", "row", "column", "published", "ours", "delta", "budget", "status"]
        text = [[r.table, _row_label(r.section, r.row), r.column, r.printed + (" (?)" if r.uncertain else ""),
                 fmt_ours(r), "" if r.delta is None or r.status == "not-comparable" else f"{r.delta:+.3g}",
                 r.budget or "", r.status] for r in rows]
    else:
        records = _against_records(rows, compared(Database(against, create=False)))
        columns = ["table", "row", "column", "published", "ours", "against", "change", "status", "against status"]
        text = [[a["table"], _row_label(a["section"], a["row"]), a["column"], a["printed"], _cell_text(a["ours"]),
                 _cell_text(a["against"]), "" if a["change"] is None else f"{a['change']:+.6g}", a["status"],
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


@app.command(epilog=_examples("repro report --paper se-r    # writes <repo>/reports/se-r/README.md"))
def report(paper: Optional[list[str]] = typer.Option(None, "--paper", metavar="PAPER", help="paper(s); default all"),
           out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", help="output directory (default <repo>/reports)"),
           db: Optional[str] = DbOpt, specs_dir: Optional[str] = SpecsOpt):
    """Render Markdown pages and figures comparing ours with the published numbers."""
    url = _check_db(db, write=False)

    from .db import Database, resolve
    from .report import render
    try:
        catalog = _catalog(specs_dir)
    except SpecError as e:
        _fail(str(e))
    for p in paper or []:
        if p not in catalog.papers:
            _fail(f"unknown paper {p!r}; known: {', '.join(catalog.papers)}")
    written = render(catalog, Database(url, create=False), resolve("reports", out), paper or list(catalog.papers))
    for path in written:
        console.print(f"wrote {path}")


STATUS_COLUMNS = ["job", "state", "kind", "model", "budget", "seed", "progress", "owner"]
RUNNING_COLUMNS = ["job", "kind", "model", "progress", "host", "pid", "elapsed", "eta", "heartbeat"]


@app.command(epilog=_examples("repro status", "repro status --format json --db sqlite:///other.db"))
def status(db: Optional[str] = DbOpt, fmt: Format = FormatOpt()):
    """Jobs by state; running jobs with their epoch, host and ETA (never creates a database)."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from .db import Database, exists, safe_url
    from .status import running_rows

    url = _check_db(db, write=False)
    if not exists(url):  # _check_db made sure a SQLite file is there: then it is something else
        what = "is not a repro results database (no such table: jobs)" if url.startswith("sqlite") else \
            "holds no repro database (repro run creates it)"
        _fail(f"{safe_url(url)} {what}")
    try:
        database = Database(url, create=False)
        jobs = database.jobs_by_state()
        running = running_rows(database.running())
    except (OperationalError, ProgrammingError) as e:  # e.g. an empty file left by an older repro
        _fail(f"{safe_url(url)} is not a repro results database ({str(e.orig).splitlines()[0]})")
    rows = [{"job": j.id, **{c: getattr(j, c) for c in STATUS_COLUMNS[1:]}} for j in jobs]
    if fmt != Format.table:
        _emit(rows, fmt, STATUS_COLUMNS)
        return
    counts = Counter(j.state for j in jobs)
    console.print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no jobs")
    if running:
        _emit([{c: r[c] for c in RUNNING_COLUMNS} for r in running], fmt, RUNNING_COLUMNS, title="running")
    for r in rows:
        r["seed"] = "-" if r["seed"] is None else r["seed"]
    _emit(rows, fmt, STATUS_COLUMNS)


# --- specs, models, data -----------------------------------------------------------------

@specs_app.command("check", epilog=_examples("repro specs check", "repro specs check --specs-dir my-specs --format json"))
def specs_check(specs_dir: Optional[str] = SpecsOpt, fmt: Format = FormatOpt()):
    """Validate every spec; one line per paper, or the first error and exit code 2.

    A cell is what reports/README.md counts in its "cells" column: an entry of a table spec that
    the paper prints as a number (or a '?' shown only graphically) or cites; a '-' the paper prints
    is not a cell, and numbers read off figure specs are counted apart."""
    from .specs import table_cells

    try:
        catalog = _catalog(specs_dir)
    except SpecError as e:
        _fail(str(e))
    rows = []
    for slug, p in catalog.papers.items():
        tables = [t for t in p.tables.values() if t.kind == "table"]
        entries = [c for t in tables for c in table_cells(p, t)]
        cells = [c for c in entries if _is_cell(c)]
        rows.append({"paper": slug, "spec_files": len(p.tables), "tables": len(tables),
                     "figures": len(p.tables) - len(tables), "cells": len(cells), "dashes": len(entries) - len(cells),
                     "figure_numbers": sum(len(table_cells(p, t)) for t in p.tables.values() if t.kind != "table"),
                     "uncertain": sum(1 for c in cells if c.published.uncertain), "status": "ok"})
    if fmt != Format.table:
        _emit(rows, fmt, list(rows[0]) if rows else ["paper"])
        return
    for r in rows:
        extra = "".join([f", {r['dashes']} printed as '-' (not cells)" if r["dashes"] else "",
                         f", {r['figure_numbers']} more in figures" if r["figure_numbers"] else "",
                         f", {r['uncertain']} flagged uncertain" if r["uncertain"] else ""])
        files = f"{r['spec_files']} spec file(s)" + (f" ({r['figures']} figure(s))" if r["figures"] else "")
        console.print(f"{r['paper']}: {files}, {r['cells']} published cells{extra}: ok")
    console.print(f"{len(rows)} paper(s), {sum(r['cells'] for r in rows)} cells: ok")


def _is_cell(cell) -> bool:
    """compare.py's rule: a '-' is `not-printed` unless the cell is cited (the report skips those)."""
    return bool(cell.cited) or cell.published.value != "-"


@models_app.command("list", epilog=_examples("repro models list --paper cra", "repro models list --format csv"))
def models_list(paper: Optional[str] = typer.Option(None, "--paper", metavar="PAPER",
                                                    help="only models this paper's specs use"),
                specs_dir: Optional[str] = SpecsOpt, fmt: Format = FormatOpt()):
    """Registered models, with the papers whose specs use each (named models first, then backbones)."""
    import models
    from .specs import table_cells

    try:
        catalog = _catalog(specs_dir)
    except SpecError as e:
        _fail(str(e))
    if paper and paper not in catalog.papers:
        _fail(f"unknown paper {paper!r}; known: {', '.join(catalog.papers)}")
    used: dict[str, set[str]] = {}
    for slug, p in catalog.papers.items():
        for spec in p.tables.values():
            for cell in table_cells(p, spec):
                if "model" in cell.production:
                    used.setdefault(cell.production["model"], set()).add(slug)
    rows = []
    for name in models.available():
        info = models.MODEL_INFO.get(name, {"backbone": name, "attention": "(any)"})
        papers = sorted(used.get(name, set()))
        if paper and paper not in papers:
            continue
        rows.append({"model": name, "used by": papers, "backbone": info.get("backbone") or "",
                     "attention": info.get("attention") or ""})
    if fmt == Format.table:
        for r in rows:
            r["used by"] = ", ".join(r["used by"])
    _emit(rows, fmt, ["model", "used by", "backbone", "attention"])


@models_app.command("show", epilog=_examples("repro models show se_resnet50 --input-size 1,3,224,224 --format json"))
def models_show(name: str = typer.Argument(..., metavar="MODEL", help="a name from `repro models list`"),
                num_classes: Optional[int] = typer.Option(None, "--num-classes", min=1, metavar="N",
                                                   help="classes of the last layer (a bare backbone needs it)"),
                input_size: str = typer.Option("1,3,32,32", "--input-size", metavar="N,C,H,W", help="e.g. 1,3,224,224"),
                profile: str = typer.Option("thop-2004", "--profile", metavar="PROFILE",
                                            help="thop-2001 | thop-2004 | thop-0.1"),
                fmt: Format = FormatOpt(),
                as_json: bool = typer.Option(False, "--json", help="the same as --format json")):
    """Parameters and MACs of one model."""
    import models
    from .counting import measure

    if not models.is_known(name):
        _fail(f"unknown model {name!r}; see `repro models list`")
    try:
        size = tuple(int(x) for x in input_size.split(","))
    except ValueError:
        _fail(f"--input-size {input_size!r}: expected integers like 1,3,32,32")
    try:
        model = models.create(name, num_classes=num_classes)
        c = measure(model, size, profile)
    except ValueError as e:
        _fail(str(e))
    except TypeError as e:  # a bare backbone has no default class count
        _fail(f"{name}: {e} (pass --num-classes N)" if "num_classes" in str(e) else str(e))
    d = {"model": name, "params": c.params, "params_mxnet": c.params_mxnet, "macs": c.macs, "profile": c.profile,
         "input_size": list(c.input_size), **{k: v for k, v in models.MODEL_INFO.get(name, {}).items() if v}}
    fmt = Format.json if as_json else fmt
    if fmt == Format.json:  # one object, not a list of one
        print(json.dumps({k: _plain(v) for k, v in d.items()}, indent=1))
    elif fmt == Format.csv:
        _emit([d], fmt, list(d))
    else:
        console.print(f"{name}: {c.params:,} parameters ({c.params / 1e6:.3f}M; {c.params_mxnet:,} counting BN "
                      f"running stats), {c.macs:,} MACs ({c.macs / 1e9:.3f}G) at {list(size)} [{profile}]")


@data_app.command("fake", epilog=_examples("repro data fake cifar100 /tmp/tiny && "
                                           "repro run se-r/table3 --budget smoke --data-dir /tmp/tiny"))
def data_fake(dataset: str = typer.Argument(..., metavar="DATASET", help="cifar10 | cifar100 | svhn | ..."),
              directory: Path = typer.Argument(..., metavar="DIRECTORY")):
    """Write a tiny dataset in the real on-disk format under DIRECTORY."""
    from .data import FAKES

    if dataset not in FAKES:
        _fail(f"unknown dataset {dataset!r}; fakes exist for {', '.join(FAKES)}")
    path = FAKES[dataset](directory)
    console.print(f"wrote a tiny {dataset} to {path} (use --data-dir {directory})")


def _usage_errors() -> tuple[type, ...]:
    """typer >= 0.2x vendors click and raises its own exception classes; older typer raises click's."""
    errors: list[type] = [getattr(typer, "TyperException", None)]
    try:
        import click

        errors.append(click.ClickException)
    except ImportError:  # pragma: no cover
        pass
    return tuple(e for e in errors if e is not None)


def main() -> None:
    # Registered first, so it runs after every other exit handler: the interpreter's last garbage
    # collection then skips the objects torch and a few hundred models leave behind (1-1.5 s of
    # every `repro run` otherwise; objects are still freed, just not traversed once more).
    atexit.register(gc.freeze)
    try:
        # standalone_mode=False: usage errors reach us, to be printed as one line, not a box
        code = app(standalone_mode=False)
    except _usage_errors() as e:  # bad option value, unknown command or option: exit 2
        print(f"error: {e.format_message()}", file=sys.stderr)
        code = e.exit_code
    except typer.Abort:
        print("Aborted!", file=sys.stderr)
        code = 1
    except SpecError as e:  # pragma: no cover - commands catch their own
        print(f"error: {e}", file=sys.stderr)
        code = 2
    except BrokenPipeError:  # `repro ... | head`: the reader left; stop quietly
        code = 141
    except Exception as e:  # a database that cannot be reached is one line, wherever it is opened
        from .db import DatabaseError

        if not isinstance(e, DatabaseError):
            raise
        print(f"error: {e}", file=sys.stderr)
        code = 2
    _quiet_exit(code if isinstance(code, int) else 0)


def _quiet_exit(code: int) -> None:
    """Exit without a BrokenPipeError at the interpreter's final flush when the reader of stdout left
    (`repro ... | head`): stdout is pointed at /dev/null first, as the Python docs on SIGPIPE advise."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = code or 141
    sys.exit(code)


if __name__ == "__main__":
    main()
