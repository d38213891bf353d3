"""Executors decide where worker loops run; the loops themselves live in ``worker.py``.

- ``local`` (default): ``--workers 1`` runs the loop in this process with a progress bar;
  ``--workers N`` starts N local processes (spawned) that claim jobs from the database.
- ``slurm``: submits N Slurm tasks through submitit, each running the same worker loop against
  the same database (use a database every node reaches: PostgreSQL, or SQLite on a shared
  filesystem that supports locking). ``submitit``'s "local"/"debug" clusters work the same way
  for testing without Slurm.
"""
from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .db import Database
from .worker import Worker, WorkerOptions, WorkerReport, worker_main


@dataclass
class ExecOptions:
    workers: int = 1
    executor: str = "local"  # local | slurm | submitit-local | submitit-debug
    slurm: dict = field(default_factory=dict)  # partition, gpus_per_node, timeout_min, ...
    log_dir: str = "submitit_logs"


class RichProgress:
    """Progress for one in-process worker: one bar per training job (epoch, loss, ETA)."""

    def __init__(self, console: Console):
        # markup=False: "[smoke, seed 0]" in a description is text, not a Rich style tag
        self.bar = Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                            TextColumn("{task.fields[info]}", markup=False),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        self.bar.start()
        return self

    def __exit__(self, *exc):
        self.bar.stop()

    def start(self, job):
        total = None
        if job.kind in ("train", "detect"):
            r = job.spec["recipe"]
            total = r.get("iterations") or r["epochs"] + r.get("mixup_extra_epochs", 0)
        desc = f"{job.kind:7s} {job.model} [{job.budget}" + (f", seed {job.seed}]" if job.seed is not None else "]")
        self.tasks[job.id] = self.bar.add_task(desc, total=total or 1, info="")

    def step(self, job, epoch, step, steps):
        if step % 10 and step != steps:  # the bar redraws a few times a second at most anyway
            return
        t = self.tasks[job.id]
        self.bar.update(t, completed=epoch - 1 + step / steps, info=f"epoch {epoch} step {step}/{steps}")

    def iteration(self, job, it, total, loss):
        self.bar.update(self.tasks[job.id], completed=it, info=f"iteration {it}/{total} loss {loss:.3f}")

    def epoch(self, job, r):
        t = self.tasks[job.id]
        self.bar.update(t, completed=r.epoch, info=f"epoch {r.epoch} loss {r.train_loss:.3f} "
                                                   f"test err {r.test_top1_err:.2f}%")

    def done(self, job):
        t = self.tasks[job.id]
        self.bar.update(t, completed=self.bar.tasks[t].total)


def run(job_ids: list[str], wopts: WorkerOptions, eopts: ExecOptions, console: Console) -> WorkerReport:
    db = Database(wopts.db_url)
    retried = db.reset_failed(job_ids)
    if retried:
        console.print(f"retrying {retried} job(s) that failed before")
    db.dispose()
    if eopts.executor == "local" and eopts.workers <= 1:
        with RichProgress(console) as progress:
            return Worker(wopts, progress).loop(job_ids)
    if eopts.executor == "local":
        return _local_pool(job_ids, wopts, eopts.workers)
    return _submitit(job_ids, wopts, eopts, console)


def _local_pool(job_ids: list[str], wopts: WorkerOptions, n: int) -> WorkerReport:
    ctx = mp.get_context("spawn")
    with ctx.Pool(n) as pool:
        parts = pool.starmap(worker_main, [(wopts, job_ids)] * n)
    return _merge(parts)


def _submitit(job_ids: list[str], wopts: WorkerOptions, eopts: ExecOptions, console: Console) -> WorkerReport:
    import submitit

    cluster = {"slurm": "slurm", "submitit-local": "local", "submitit-debug": "debug"}.get(eopts.executor)
    if cluster is None:
        raise ValueError(f"unknown executor {eopts.executor!r}: use local, slurm, submitit-local or submitit-debug")
    ex = submitit.AutoExecutor(folder=eopts.log_dir, cluster=cluster)
    params = {"timeout_min": 60 * 24, **eopts.slurm}
    if cluster == "slurm":
        params = {f"slurm_{k}" if k not in ("timeout_min", "gpus_per_node", "cpus_per_task", "mem_gb", "nodes")
                  else k: v for k, v in params.items()}
    ex.update_parameters(**params)
    jobs = [ex.submit(worker_main, wopts, job_ids) for _ in range(eopts.workers)]
    console.print(f"submitted {len(jobs)} {cluster} task(s): {', '.join(j.job_id for j in jobs)}")
    while not all(j.done() for j in jobs):
        time.sleep(5)
    return _merge([j.result() for j in jobs])


def _merge(parts: list[WorkerReport]) -> WorkerReport:
    out = WorkerReport()
    for p in parts:
        out.ran += p.ran
        out.failed.update(p.failed)
    return out
