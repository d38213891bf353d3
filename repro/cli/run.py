"""`repro run` (plan, then run on local workers or Slurm) and `repro bench`."""
from __future__ import annotations

import os
import sys
from collections import Counter
from types import SimpleNamespace
from typing import Optional

import typer

from ..specs import SpecError
from ..options import EXECUTORS, CampaignOptions
from .common import (app, BenchResultFields, _catalog, _check_db, console, DbOpt, _device, _emit, Engine_,
                     _examples, _fail, Format, FormatOpt, Kind, Precision, SpecsOpt, PluginsOpt, TARGET_HELP)


# The options of `repro run`, one per line of its signature (help text here, defaults from the library).
_D = CampaignOptions()
O = SimpleNamespace(  # noqa: E741  (read as O.paper, O.model, ... in the signature below)
    paper=typer.Option(None, "--paper", metavar="PAPER", help="paper of bare table names"),
    model=typer.Option(None, "--model", metavar="NAME",
                       help="only the cells this model produces (with their upstream jobs)"),
    budget=typer.Option(_D.budget, "--budget", metavar="BUDGET", help="full | smoke"),
    epochs=typer.Option(None, "--epochs", min=1, metavar="N", help="shorten schedules to N epochs (budget epochs-N)"),
    seeds=typer.Option(
        str(_D.seeds), "--seeds", metavar="N|MIN..MAX",
        help="seeds per cell, or MIN..MAX (e.g. 3..10): adaptive, each cell gets MIN seeds, then one more at a "
        "time while its verdict (and its claims) are open (rule: repro.compare.stopping_rule); a verdict needs 3 "
        "at least, 5 recommended: at a CIFAR seed std "
        "of 0.25 the 95% interval is +-0.62 points with 3 seeds, +-0.31 with 5 (tolerance 0.3-0.5), and a "
        "claimed gain needs about 0.57 (3 seeds) or 0.36 (5) to be significant; the papers claim 0.09-1.94"),
    workers=typer.Option(None, "--workers", min=1, metavar="N",
                         help="worker processes or Slurm tasks (default: one per GPU, else 1)"),
    jobs_per_gpu=typer.Option(1, "--jobs-per-gpu", min=1, metavar="K", help="local workers sharing one GPU"),
    executor=typer.Option("local", "--executor", metavar="EXECUTOR",
                          help="local | slurm | submitit-local | submitit-debug"),
    detach=typer.Option(False, "--detach", help="slurm: submit and return; follow with `repro status`"),
    lease_seconds=typer.Option(None, "--lease-seconds", metavar="S", help="take over a job whose owner sent no "
                               "heartbeat for this long (default 180, or $REPRO_LEASE_SECONDS)"),
    threads=typer.Option(None, "--threads", metavar="N",
                         help="torch CPU threads per worker (default: the Slurm task's CPUs)"),
    slurm_partition=typer.Option(None, "--slurm-partition", metavar="NAME"),
    slurm_gpus=typer.Option(None, "--slurm-gpus", metavar="N",
                            help="GPUs per Slurm task (default 1 if the plan trains, else 0)"),
    slurm_cpus=typer.Option(None, "--slurm-cpus", metavar="N", help="CPUs per Slurm task"),
    slurm_mem=typer.Option(None, "--slurm-mem", metavar="MEM", help="memory per Slurm task, e.g. 16G"),
    slurm_account=typer.Option(None, "--slurm-account", metavar="NAME"),
    slurm_qos=typer.Option(None, "--slurm-qos", metavar="NAME"),
    slurm_constraint=typer.Option(None, "--slurm-constraint", metavar="FEATURES"),
    slurm_opt=typer.Option(None, "--slurm-opt", metavar="KEY=VALUE",
                           help="any other sbatch option as KEY=VALUE (repeatable)"),
    slurm_timeout_min=typer.Option(24 * 60, "--slurm-timeout-min", metavar="MIN",
                                   help="Slurm time limit per task, minutes"),
    log_dir=typer.Option("submitit_logs", "--log-dir", metavar="DIR", help="Slurm/submitit task logs"),
    dry_run=typer.Option(False, "--dry-run", help="print the plan; run nothing"),
    kind=typer.Option(None, "--kind", metavar="KIND",
                      help="only jobs of this kind: profile | train | detect (repeatable)"),
    max_jobs=typer.Option(_D.max_jobs, "--max-jobs", min=1, metavar="N",
                          help="refuse to plan more jobs than this in one invocation"),
    data_dir=typer.Option(None, "--data-dir", metavar="DIR", help="datasets root (default $REPRO_DATA or <repo>/data)"),
    download=typer.Option(False, "--download", help="download datasets that torchvision can fetch"),
    device=typer.Option(_D.device, "--device", callback=_device, metavar="DEVICE", help="auto | cpu | cuda | cuda:N"),
    checkpoint_dir=typer.Option(None, "--checkpoint-dir", metavar="DIR",
                                help="training checkpoints (default <repo>/checkpoints)"),
    artifact_dir=typer.Option(None, "--artifact-dir", metavar="DIR", help="final weights of finished jobs, kept by "
                              "content for jobs that start from them (default: beside the checkpoints)"),
    decode=typer.Option("cpu", "--decode", metavar="WHERE", help="cpu | cuda: where the fast ImageNet path decodes "
                        "JPEGs (cuda: nvJPEG in batches); recorded with each run"),
    loader_workers=typer.Option(None, "--loader-workers", min=0, metavar="N", help="DataLoader worker processes per "
                                "job (default: 0, or a share of the CPU cores for ImageNet)"),
    engine=typer.Option(_D.engine, "--engine", help="fast (device-resident 32x32 data, batched augmentation) | "
                        "reference (torchvision transforms + DataLoader)"),
    precision=typer.Option(None, "--precision", help="bf16 | fp32 (default bf16 on CUDA, fp32 on CPU); recorded "
                           "with each run, never part of the job"),
    compile=typer.Option(False, "--compile", help="torch.compile the model"),
    retry_failed=typer.Option(False, "--retry-failed",
                              help="also retry diverged jobs (failed jobs are always retried)"),
    keep_checkpoints=typer.Option(False, "--keep-checkpoints", help="keep a finished job's checkpoints"),
)


@app.command(epilog=_examples("repro run se-r/table1 se-r/table2",
                              "repro run se-r/table3 --budget smoke --data-dir /tmp/tiny",
                              "repro run 'se-r/table3/SE-R-ResNet-110' --budget smoke --dry-run",
                              "repro run cra --dry-run --format json"))
def run(targets: list[str] = typer.Argument(None, metavar="TARGET", help=TARGET_HELP),
        paper: Optional[str] = O.paper, model: Optional[str] = O.model, budget: str = O.budget,
        epochs: Optional[int] = O.epochs, seeds: str = O.seeds,
        workers: Optional[int] = O.workers, jobs_per_gpu: int = O.jobs_per_gpu, executor: str = O.executor,
        detach: bool = O.detach, lease_seconds: Optional[float] = O.lease_seconds, threads: Optional[int] = O.threads,
        slurm_partition: Optional[str] = O.slurm_partition, slurm_gpus: Optional[int] = O.slurm_gpus,
        slurm_cpus: Optional[int] = O.slurm_cpus, slurm_mem: Optional[str] = O.slurm_mem,
        slurm_account: Optional[str] = O.slurm_account, slurm_qos: Optional[str] = O.slurm_qos,
        slurm_constraint: Optional[str] = O.slurm_constraint, slurm_opt: Optional[list[str]] = O.slurm_opt,
        slurm_timeout_min: int = O.slurm_timeout_min, log_dir: str = O.log_dir, dry_run: bool = O.dry_run,
        fmt: Format = FormatOpt("dry-run output"), kind: Optional[list[Kind]] = O.kind, max_jobs: int = O.max_jobs,
        db: Optional[str] = DbOpt, specs_dir: Optional[list[str]] = SpecsOpt, plugins: Optional[list[str]] = PluginsOpt,
        data_dir: Optional[str] = O.data_dir,
        download: bool = O.download, device: str = O.device, checkpoint_dir: Optional[str] = O.checkpoint_dir,
        artifact_dir: Optional[str] = O.artifact_dir, decode: str = O.decode,
        loader_workers: Optional[int] = O.loader_workers, engine: Engine_ = O.engine,
        precision: Optional[Precision] = O.precision, compile_: bool = O.compile, retry_failed: bool = O.retry_failed,
        keep_checkpoints: bool = O.keep_checkpoints):
    """Expand specs into jobs and run the ones not done yet."""
    # what needs no spec (and no torch import) is checked first: seconds must not precede a typo
    if executor not in EXECUTORS:
        _fail(f"unknown --executor {executor!r}; use one of {', '.join(EXECUTORS)}")
    if decode not in ("cpu", "cuda"):
        _fail(f"--decode {decode!r}: use cpu or cuda")
    fixed, seeds_max = _seeds(seeds)
    url = _check_db(db, write=not dry_run, must_exist=False, specs_dir=specs_dir)
    slurm = dict(partition=slurm_partition, gpus=slurm_gpus, cpus_per_task=slurm_cpus, mem=slurm_mem,
                 account=slurm_account, qos=slurm_qos, constraint=slurm_constraint, timeout_min=slurm_timeout_min,
                 extra=slurm_opt)
    execution = dict(workers=workers, executor=executor, log_dir=log_dir, jobs_per_gpu=jobs_per_gpu, detach=detach)
    opts = _campaign_options(
        targets=tuple(targets or ()), paper=paper, model=model, budget=budget, epochs=epochs, seeds=fixed,
        seeds_max=seeds_max, max_jobs=max_jobs,
        kinds=frozenset(k.value for k in kind) if kind else None, specs_dir=tuple(specs_dir) if specs_dir else None,
        plugins=tuple(plugins or ()), db=url, data_dir=data_dir,
        checkpoint_dir=checkpoint_dir, artifact_dir=artifact_dir, decode=decode, download=download,
        retry_diverged=retry_failed, device=device,
        engine=engine.value, precision=precision.value if precision else None, compile=compile_,
        loader_workers=loader_workers, keep_checkpoints=keep_checkpoints, threads=threads, lease_seconds=lease_seconds,
        slurm=slurm, execution=execution)
    planned = _plan(opts)
    if dry_run:  # a dry run never creates the database
        _dry_run(planned, url, fmt)
        if fmt == Format.table:
            _print_seed_plan(planned, url, seeds)
        return
    _run_planned(planned, opts)


def _seeds(text: str) -> tuple[int, int | None]:
    """--seeds N or MIN..MAX as (N or MIN, MAX or None); a bad value is one line, exit 2."""
    from ..adaptive import SeedRange, parse_seeds

    try:
        parsed = parse_seeds(text)
    except ValueError as e:
        _fail(f"--seeds {e}")
    return (parsed.min, parsed.max) if isinstance(parsed, SeedRange) else (parsed, None)


def _print_seed_plan(planned, url: str, seeds: str) -> None:
    """GPU-hours of the pending training cells under fixed seeds and under the adaptive rule (expected)."""
    from ..adaptive import SeedRange, expected_seeds, parse_seeds

    parsed = parse_seeds(seeds)
    if not isinstance(parsed, SeedRange) or not any(j.kind != "profile" for j in planned.jobs):
        return
    hours = _one_seed_hours(planned, url)
    e = expected_seeds(parsed)
    per = f"{hours:,.1f} GPU-hours per seed of every pending cell" if hours is not None else "GPU-hours unknown"
    console.print(f"adaptive seeds {parsed}: {parsed.min} seed(s) per cell planned now, more while a verdict is open; "
                  f"expected {e:.2f} seeds per cell (simulated, benchmarks/adaptive_seeds.py's grid) vs fixed "
                  f"{parsed.min}, 5 or {parsed.max}" + (f": ~{e * hours:,.1f} GPU-hours vs {parsed.min * hours:,.1f}, "
                                                       f"{5 * hours:,.1f} or {parsed.max * hours:,.1f}; {per}"
                                                       if hours is not None else f"; {per}"))


def _one_seed_hours(planned, url: str) -> float | None:
    """The report's estimate (one seed of each pending full-budget training configuration), summed over the
    planned papers; None without a database to read measurements and counts from."""
    from ..db import Database, exists
    from ..estimate import estimate

    if not exists(url):
        return None
    db = Database(url, create=False)
    try:
        return sum(estimate(p, db).hours for p in {p.slug: p for p, _ in planned.targets}.values())
    finally:
        db.dispose()


def _campaign_options(*, slurm: dict, execution: dict, **fields) -> "CampaignOptions":
    """The CLI's values as library options; what the user left unset keeps the library's default."""
    from ..options import ExecError, ExecOptions, SlurmOptions, parse_slurm_opts
    from .render import option_error

    try:
        extra = parse_slurm_opts(slurm.pop("extra"))
    except ExecError as e:
        _fail(option_error(e.option, e.message))
    exec_opts = ExecOptions(**execution, slurm=SlurmOptions(**slurm, extra=extra))
    return CampaignOptions(**{k: v for k, v in fields.items() if v is not None}, execution=exec_opts)


def _plan(opts: "CampaignOptions"):
    from .. import campaign
    from ..plan import PlanError
    from .render import option_error

    try:
        return campaign.plan(opts)
    except PlanError as e:
        _fail(option_error(e.option, e.message))
    except SpecError as e:
        _fail(str(e))


def _dry_run(planned, url: str, fmt: Format) -> None:
    from ..campaign import known_states

    states = known_states(planned, url)
    if states is None:
        print(f"note: no database at {url} yet: every job is new", file=sys.stderr)
    _print_plan(planned.jobs, states or {}, planned.targets, fmt)


def _run_planned(planned, opts: "CampaignOptions") -> None:
    """register -> run, printing what the library reports."""
    from .. import campaign
    from ..options import ExecError

    registered = campaign.register(planned, opts)
    _print_registered(registered, opts)
    if not registered.todo:  # nothing left: no executor and no progress display (nor their imports)
        summary = campaign.run(registered, opts)
    else:
        from .render import RichEvents, option_error

        try:
            with RichEvents(console) as events:
                summary = campaign.run(registered, opts, events)
        except ExecError as e:
            _fail(option_error(e.option, e.message))
    if summary.retried:
        console.print(f"retried {summary.retried} job(s) that " + ("failed or diverged" if opts.retry_diverged
                                                                  else "failed") + " before")
    if summary.detached:
        _print_detached(opts)
        return
    if summary.outcomes:
        from .render import counts_line

        if summary.counts is not None:
            console.print(counts_line(summary.counts))
    if summary.adaptive is not None:
        _print_adaptive(summary.adaptive)
    if summary.failed:
        from .render import outcome_line

        for outcome in summary.failed:
            print(outcome_line(outcome), file=sys.stderr)
    if not summary.ok:
        raise typer.Exit(1)


def _print_adaptive(info) -> None:
    """Per judged cell: seeds done and why it stopped (decided, futile, MAX reached) or that it is open."""
    if info.note:
        console.print(f"adaptive seeds {info.seeds}: {info.note}")
        return
    looks = info.looks or {}
    tally = Counter(c.reason for c in looks.values())
    console.print(f"adaptive seeds {info.seeds}: queued {info.queued} more seed job(s) in {info.rounds} round(s); "
                  + (", ".join(f"{n} {r}" for r, n in sorted(tally.items())) or "no cell with 2 seeds done yet"))
    for key, c in sorted(looks.items()):
        console.print(f"  {key}: {c.n} seed(s), {c.reason}", highlight=False)


def _print_registered(registered, opts) -> None:
    plan = registered.plan
    shown_budget = "static" if plan.static_only else plan.budget  # counts have no budget
    kept = registered.diverged_kept
    console.print(f"{len(plan.jobs)} job(s) planned, {registered.done + kept} already done"
                  + (f" ({kept} diverged; --retry-failed runs them again)" if kept else "")
                  + f", {len(registered.todo)} to run [budget {shown_budget}] -> {registered.db_url}")
    for dataset, (error, n) in registered.held_back.items():
        print(f"not run: {n} job(s) need {error}. Fix: pass --download to fetch it, point --data-dir/$REPRO_DATA "
              f"at a copy, or run `repro data fake {dataset} {registered.data_dir}` for a tiny fake to exercise the "
              f"pipeline (--kind profile runs only the static cells)", file=sys.stderr)


def _print_detached(opts) -> None:
    from ..db import safe_url

    if opts.execution.executor == "slurm":
        console.print(f"detached: follow with `repro status --db {safe_url(opts.db)}`; cancel with scancel")
    else:
        console.print("detached")


PLAN_COLUMNS = ["job", "kind", "model", "seed", "budget", "state", "upstream", "cells"]


def _print_plan(jobs, states, resolved, fmt: Format):
    from ..campaign import plan_states

    papers = {}
    for p, t in resolved:
        papers.setdefault(p.slug, []).append(t)
    shown = plan_states(jobs, states)
    rows = [{"job": j.id, "kind": j.kind, "model": j.model, "seed": j.seed, "budget": j.budget,
             "cells": j.cells, "state": str(shown[j.id]), "upstream": j.upstream} for j in jobs]
    if fmt != Format.table:
        _emit(rows, fmt, PLAN_COLUMNS)
        return
    for r in rows:  # the table shows a few cells per job, not all of them
        cells = r["cells"]
        r["cells"] = ", ".join(c.split("/", 1)[1] for c in cells[:3]) \
            + (f" (+{len(cells) - 3})" if len(cells) > 3 else "")
        r["seed"] = "-" if r["seed"] is None else r["seed"]
        r["after"] = ", ".join(r["upstream"])
    columns = ["job", "kind", "model", "seed", "state"] + (["after"] if any(j.upstream for j in jobs) else [])
    _emit(rows, fmt, columns + ["cells"], title="plan")
    for slug, tables in papers.items():
        mine = [j for j in jobs if any(c.startswith(slug + "/") for c in j.cells)]
        done = sum(1 for j in mine if states.get(j.id) == "done")
        console.print(f"{slug}: {len(tables)} spec(s), {len(mine)} job(s) ({_kinds(mine) or 'none'}), {done} done")
    console.print(f"total: {len(jobs)} distinct job(s): {_kinds(jobs)}")


def _kinds(jobs) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(Counter(j.kind for j in jobs).items()))


@app.command(epilog=_examples("repro bench se-r/table3 --steps 20 --vs reference",
                              "repro bench cra/table4 --precision bf16 --compile --format json",
                              "repro bench cra/table2 --data    # the ImageNet input alone, fast vs reference"))
def bench(targets: list[str] = typer.Argument(..., metavar="TARGET",
                                              help="<paper>, <paper>/<table>, or <table> with --paper"),
          paper: Optional[str] = typer.Option(None, "--paper", metavar="PAPER", help="paper of bare table names"),
          steps: int = typer.Option(20, "--steps", min=1, metavar="N", help="timed optimizer steps per job"),
          engine: Engine_ = typer.Option("fast", "--engine", help="fast | reference"),
          precision: Optional[Precision] = typer.Option(None, "--precision",
                                                        help="bf16 | fp32 (default bf16 on CUDA, fp32 on CPU)"),
          compile_: bool = typer.Option(False, "--compile", help="torch.compile the model"),
          vs: Optional[Engine_] = typer.Option(None, "--vs", help="reference: also time the reference loop, "
                                               "print the ratio"),
          data: bool = typer.Option(False, "--data", help="the input pipeline alone: the fast and the reference "
                                    "ImageNet input's images/s per core, side by side, and the cores one GPU needs"),
          decode: str = typer.Option("cpu", "--decode", metavar="WHERE", help="with --data: cpu | cuda (nvJPEG)"),
          device: str = typer.Option("auto", "--device", callback=_device, metavar="DEVICE",
                                     help="auto | cpu | cuda | cuda:N"),
          fmt: Format = FormatOpt(),
          db: Optional[str] = DbOpt, specs_dir: Optional[list[str]] = SpecsOpt,
          plugins: Optional[list[str]] = PluginsOpt):
    """Time N steps of each training job's exact recipe on synthetic data of the real shape (or, with
    --data, its input pipeline alone on real JPEG files)."""
    from ..train import bench as lib
    from ..db import Database
    from ..train.trainer import Engine
    from ..worker import device_name, git_state, pick_device

    if vs is not None and vs.value != "reference":
        _fail(f"--vs takes only 'reference', got {vs.value!r}")
    url = _check_db(db, write=True, must_exist=False, specs_dir=specs_dir)
    jobs = _train_jobs(specs_dir, plugins, targets, paper)
    dev = pick_device(device)
    if os.environ.get("REPRO_THREADS"):
        import torch

        torch.set_num_threads(max(1, int(os.environ["REPRO_THREADS"])))
    database, commit, label = Database(url), git_state()[0], device_name(dev)
    if data:
        _print_inputs(lib.bench_inputs(jobs, dev, decode, label, database, commit), fmt)
        return
    eng = Engine.for_device(dev, engine.value, precision.value if precision else None, compile_)
    results = []
    for r in lib.bench_jobs(jobs, eng, dev, steps, label, vs is not None, database, commit):
        results.append(r)
        if fmt.value == "table":
            print(_bench_line(r), flush=True)
    if fmt.value != "table":
        _emit([r.row() for r in results], fmt, list(BenchResultFields))
    elif not results:
        print("no training jobs in these targets", file=sys.stderr)


def _train_jobs(specs_dir, plugins, targets, paper):
    from ..plan import PlanError, plan, resolve_targets

    try:
        catalog = _catalog(specs_dir, plugins)
        return plan(catalog, resolve_targets(catalog, targets, paper), kinds={"train"})
    except (SpecError, PlanError) as e:
        _fail(str(e))


def _bench_line(r) -> str:
    ratio = (f"; reference {r.ref_img_per_s:,.1f} img/s, ratio {r.ratio:.2f}x; data path alone "
             f"{r.data_img_per_s:,.0f} vs {r.ref_data_img_per_s:,.0f} img/s, ratio {r.data_ratio:.1f}x"
             if r.ratio else f"; data path alone {r.data_img_per_s:,.0f} img/s")
    hours = f"full recipe ~{r.projected_hours:,.1f} h" if r.projected_hours is not None else \
        "full recipe: its image count is in its files"
    return (f"{r.job} {r.model} [{r.dataset}, batch {r.batch_size}] on {r.device}, {r.engine}/{r.precision}"
            f"{'/compiled' if r.compiled else ''}: {r.img_per_s:,.1f} img/s, {r.ms_per_step:,.1f} ms/step, "
            f"peak {r.peak_mem_mb:,.0f} MB, {hours}{ratio}")


INPUT_COLUMNS = ["job", "model", "dataset", "split", "decode", "images", "fast_img_per_cpu_s", "ref_img_per_cpu_s",
                 "ratio", "gpu_img_per_s", "gpu_rate", "fast_cores_per_gpu", "ref_cores_per_gpu"]


def _print_inputs(measured, fmt: Format) -> None:
    rows = []
    for job, r, source in measured:
        row = {"job": job.id, "model": job.model, "dataset": job.spec["dataset"], "gpu_rate": source, **r.row()}
        rows.append(row)
        if fmt == Format.table:
            print(f"{job.id} {job.model} [{row['dataset']} {r.split} input, {r.images} JPEGs of {r.jpeg_kb:.0f} KB, "
                  f"decode {r.decode}]: fast {r.fast_img_per_cpu_s:,.0f} img/s per core vs reference "
                  f"{r.ref_img_per_cpu_s:,.0f}, ratio {r.ratio:.2f}x; at {r.gpu_img_per_s:,.0f} GPU img/s ({source}) "
                  f"one GPU needs {r.fast_cores_per_gpu:.1f} cores (reference {r.ref_cores_per_gpu:.1f})", flush=True)
    if fmt != Format.table:
        _emit(rows, fmt, INPUT_COLUMNS)
    elif not rows:
        print("no job of these targets decodes JPEGs (ImageNet); the others' data lives on the device", file=sys.stderr)
