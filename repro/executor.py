"""Executors decide where worker loops run; the loops themselves live in ``worker.py``.

- ``local`` (default): ``--workers 1`` runs the loop in this process with a progress bar;
  ``--workers N`` starts N local processes (spawned) that claim jobs from the database. Worker i
  uses GPU i mod G; by default there is one worker per GPU (``--jobs-per-gpu K``: K per GPU).
- ``slurm``: submits N Slurm tasks through submitit, each running the same worker loop against
  the same database (use a database every node reaches: PostgreSQL, or SQLite on a shared
  filesystem that supports locking). ``submitit``'s "local"/"debug" clusters work the same way
  for testing without Slurm.

Whatever runs the loops, the driver follows the campaign from the database, not from the
processes' return values: it stops when every job is finished or when no worker (process or
task) is left alive, names the workers that died or were cancelled, and counts the jobs left
unfinished as failed, so it never waits forever on a dead worker.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from submitit.helpers import Checkpointable

from .db import Database, safe_url
from .worker import MIN_LEASE_SECONDS, Preempted, Worker, WorkerOptions, WorkerReport, worker_main

EXECUTORS = ("local", "slurm", "submitit-local", "submitit-debug")
FINISHED = ("done", "failed", "diverged")  # states no worker will move a job out of
GPU_KINDS = ("train", "detect")  # job kinds that want an accelerator; profile jobs are static counts


class ExecError(Exception):
    """Options that cannot run (one line for the CLI), found before any worker starts."""


@dataclass
class SlurmOptions:
    """What a Slurm task asks for. ``gpus`` None: 1 per task when the plan has GPU work, else 0."""
    partition: str | None = None
    gpus: int | None = None
    cpus_per_task: int | None = None  # also the task's torch thread count (SLURM_CPUS_PER_TASK)
    mem: str | None = None  # sbatch --mem syntax: 16G, 4000M
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    timeout_min: int = 24 * 60
    signal_delay_s: int = 120  # USR2 this long before the time limit: time to stop at a safe point
    extra: dict[str, str] = field(default_factory=dict)  # any other sbatch option, --key=value


@dataclass
class ExecOptions:
    workers: int | None = None  # None: one per GPU x jobs_per_gpu (local), else 1
    executor: str = "local"  # local | slurm | submitit-local | submitit-debug
    slurm: SlurmOptions = field(default_factory=SlurmOptions)
    log_dir: str = "submitit_logs"
    jobs_per_gpu: int = 1
    detach: bool = False  # slurm: submit and return; follow with `repro status`
    poll_seconds: float = 2.0


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


# --- pure decisions (tested without GPUs or Slurm) ------------------------------------------

def uses_gpus(device: str) -> bool:
    return device == "auto" or device == "cuda"


def default_workers(n_gpus: int, jobs_per_gpu: int, device: str) -> int:
    """One worker per GPU (times ``jobs_per_gpu``) when jobs may use GPUs, else one."""
    return max(1, n_gpus * jobs_per_gpu) if uses_gpus(device) and n_gpus > 0 else 1


def assign_devices(workers: int, n_gpus: int, device: str) -> list[str]:
    """Worker i gets GPU i mod G. An explicit ``cuda:N`` or ``cpu`` applies to every worker."""
    if uses_gpus(device) and n_gpus > 0:
        return [f"cuda:{i % n_gpus}" for i in range(workers)]
    return [device] * workers


def pool_threads(workers: int, cores: int) -> int:
    """CPU threads per local worker when nothing says otherwise: the cores shared out, at least 1."""
    return max(1, cores // max(1, workers))


def slurm_parameters(opts: SlurmOptions, needs_gpu: bool) -> dict:
    """submitit ``update_parameters`` keywords for one Slurm task."""
    gpus = opts.gpus if opts.gpus is not None else (1 if needs_gpu else 0)
    params: dict = {"timeout_min": opts.timeout_min, "slurm_signal_delay_s": opts.signal_delay_s,
                    "name": "repro", "tasks_per_node": 1, "nodes": 1}
    if gpus:
        params["gpus_per_node"] = gpus
    if opts.cpus_per_task:
        params["cpus_per_task"] = opts.cpus_per_task
    for key in ("partition", "mem", "account", "qos", "constraint"):
        if getattr(opts, key):
            params[f"slurm_{key}"] = getattr(opts, key)
    if opts.extra:
        params["slurm_additional_parameters"] = {k.lstrip("-"): v for k, v in opts.extra.items()}
    return params


def parse_slurm_opts(pairs: list[str] | None) -> dict[str, str]:
    """``--slurm-opt KEY=VALUE`` pairs; a bare KEY is a flag (``--exclusive``)."""
    out: dict = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not key.strip("-"):
            raise ExecError(f"--slurm-opt {pair!r}: expected KEY=VALUE (an sbatch option)")
        out[key.strip().lstrip("-")] = value if sep else True
    return out


# --- running ---------------------------------------------------------------------------------

def run(job_ids: list[str], wopts: WorkerOptions, eopts: ExecOptions, console: Console) -> WorkerReport:
    if eopts.executor not in EXECUTORS:
        raise ExecError(f"unknown executor {eopts.executor!r}: use {', '.join(EXECUTORS)}")
    if wopts.lease_seconds < MIN_LEASE_SECONDS:
        raise ExecError(f"--lease-seconds must be at least {MIN_LEASE_SECONDS:g} (3 heartbeats), "
                        f"got {wopts.lease_seconds:g}")
    if eopts.jobs_per_gpu < 1 or (eopts.workers is not None and eopts.workers < 1):
        raise ExecError("--workers and --jobs-per-gpu must be at least 1")
    db = Database(wopts.db_url)
    retried = db.reset_failed(job_ids)
    if retried:
        console.print(f"retrying {retried} job(s) that failed before")
    if eopts.executor == "local":
        import torch

        n_gpus = torch.cuda.device_count()
        workers = eopts.workers or default_workers(n_gpus, eopts.jobs_per_gpu, wopts.device)
        if uses_gpus(wopts.device) and n_gpus and workers > n_gpus * eopts.jobs_per_gpu:
            raise ExecError(f"--workers {workers} is more than {n_gpus} GPU(s) x --jobs-per-gpu "
                             f"{eopts.jobs_per_gpu}")
        if workers <= 1:
            db.dispose()
            with RichProgress(console) as progress:
                return Worker(wopts, progress).loop(job_ids)
        return _local_pool(job_ids, wopts, eopts, workers, n_gpus, db, console)
    return _submitit(job_ids, wopts, eopts, db, console)


class _Watched:
    """One worker the driver watches: ``alive()``, and a one-line ``fate`` once it is gone."""

    def __init__(self, name: str):
        self.name, self.fate, self.reported = name, None, False

    def alive(self) -> bool:
        raise NotImplementedError


class _LocalProc(_Watched):
    def __init__(self, name: str, proc):
        super().__init__(name)
        self.proc = proc

    def alive(self) -> bool:
        if self.proc.is_alive():
            return True
        code = self.proc.exitcode
        if code and self.fate is None:
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
            self.fate = f"{self.name} (pid {self.proc.pid}) {how}"
        return False


def _local_pool(job_ids, wopts, eopts, workers, n_gpus, db, console) -> WorkerReport:
    ctx = mp.get_context("spawn")
    devices = assign_devices(workers, n_gpus, wopts.device)
    threads = wopts.threads
    if threads is None and not os.environ.get("REPRO_THREADS") and devices[0].startswith(("cpu", "auto")):
        threads = pool_threads(workers, len(os.sched_getaffinity(0)))

    def start(i: int) -> _LocalProc:
        opts = WorkerOptions(**{**vars(wopts), "device": devices[i], "threads": threads})
        proc = ctx.Process(target=worker_main, args=(opts, job_ids), name=f"repro-worker-{i}")
        proc.start()
        return _LocalProc(f"worker {i}", proc)

    watched = [start(i) for i in range(workers)]
    if n_gpus and uses_gpus(wopts.device):
        console.print(f"{workers} worker(s) on {n_gpus} GPU(s): {', '.join(devices)}")
    try:  # a dead worker is not restarted: the survivors take its job over (at once, same host)
        return _follow(job_ids, db, watched, console, eopts.poll_seconds)
    finally:
        for w in watched:
            w.proc.join(timeout=30)  # they end on their own once nothing is left to claim
            if w.proc.is_alive():
                w.proc.terminate()
        db.dispose()


def _follow(job_ids, db, watched: list, console, poll: float, refresh=None) -> WorkerReport:
    """Watch the database until every job is finished or no worker is alive; then summarise."""
    last = None
    while True:
        if refresh is not None:
            refresh()
        states = db.job_states(job_ids)
        left = [j for j in job_ids if states.get(j) not in FINISHED]
        for w in list(watched):
            if not w.alive() and w.fate and not w.reported:
                w.reported = True
                print(f"warning: {w.fate}; {len(left)} job(s) not finished", file=sys.stderr)
        alive = [w for w in watched if w.alive()]
        tally = {s: sum(1 for j in job_ids if states.get(j) == s) for s in ("done", "running", "failed", "diverged")}
        line = (", ".join(f"{n} {s}" for s, n in tally.items() if n) or "none started") + \
            f"; {len(alive)} worker(s) alive"
        if line != last:
            console.print(f"{len(job_ids) - len(left)}/{len(job_ids)} finished: {line}")
            last = line
        if not left or not alive:
            break
        time.sleep(poll)
    report = WorkerReport()
    errors = db.last_errors(j for j in job_ids if states.get(j) in ("failed", "diverged"))
    for jid in job_ids:
        state = states.get(jid)
        if state == "done":
            report.ran.append(jid)
        elif state in ("failed", "diverged"):
            report.failed[jid] = f"{state}: {errors.get(jid, 'no error recorded')}"
        else:
            report.failed[jid] = f"left {state}: no worker was left to run it"
    gone = [w.fate for w in watched if w.fate]
    if gone:
        console.print(f"{len(gone)} worker(s) lost: " + "; ".join(gone))
    return report


# --- submitit / Slurm ------------------------------------------------------------------------

class SlurmTask:
    """The callable a Slurm task runs. Made ``Checkpointable`` (below) so that submitit requeues it.

    SIGUSR2 (Slurm's warning before the time limit or a preemption, sent by ``--signal``) and
    SIGTERM (``scancel``) raise ``Preempted`` in the worker: the running job goes back to pending
    (its last epoch checkpoint is on disk). After USR2 the task then hands over to submitit's own
    handler, which calls ``checkpoint`` (resubmit the same task) and ``scontrol requeue``; the
    requeued task claims the job again and resumes it with identical numbers."""

    def __call__(self, opts: WorkerOptions, job_ids: list[str]) -> WorkerReport:
        submitit_usr2 = signal.getsignal(signal.SIGUSR2)
        received: list[int] = []

        def stop(signum, _frame):
            received.append(signum)
            if len(received) == 1:  # a second signal while unwinding must not interrupt the cleanup
                raise Preempted(f"stopped by {signal.Signals(signum).name}")

        signal.signal(signal.SIGUSR2, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            return worker_main(opts, job_ids)
        except Preempted:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if received and received[0] == signal.SIGUSR2 and callable(submitit_usr2):
                submitit_usr2(signal.SIGUSR2, None)  # checkpoint() + requeue + exit
            return WorkerReport()


class CheckpointableSlurmTask(SlurmTask, Checkpointable):
    """``Checkpointable.checkpoint`` resubmits this callable with the same arguments."""


class _SlurmTaskWatch(_Watched):
    ALIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
             "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "PREEMPTED"}

    def __init__(self, job_id: str, states: dict):
        super().__init__(f"Slurm task {job_id}")
        self.job_id, self.states = job_id, states

    def alive(self) -> bool:
        state = self.states.get(self.job_id)
        if state in self.ALIVE or state == "UNKNOWN":
            return True
        if self.fate is None:
            self.fate = f"{self.name} {state.lower() if state else 'gone from squeue'}"
        return False


class _SubmititWatch(_Watched):
    def __init__(self, job):
        super().__init__(f"task {job.job_id}")
        self.job = job

    def alive(self) -> bool:
        if not self.job.done():
            return True
        if self.fate is None and self.job.state not in ("FINISHED", "COMPLETED"):
            self.fate = f"{self.name} {self.job.state.lower()}"
        return False


def squeue_states(ids: list[str]) -> dict[str, str]:
    """Slurm's view of our tasks, from the controller (no accounting database needed). A requeued task
    keeps its id. Jobs the controller forgot (MinJobAge) are absent: they are over."""
    out = subprocess.run(["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i %T"],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0 and "Invalid job id" not in out.stderr:
        raise RuntimeError(out.stderr.strip() or f"squeue exited {out.returncode}")
    states = {}
    for line in out.stdout.splitlines():
        jid, _, state = line.strip().partition(" ")
        states[jid] = state.strip()
    return states


def check_shared_paths(wopts: WorkerOptions, console) -> WorkerOptions:
    """Tasks on other nodes must see the same database, data and checkpoints. Relative paths resolve
    against the submission folder on every node: made absolute here, with a warning that they must be
    on shared storage."""
    changed = {}
    for key in ("data_dir", "checkpoint_dir"):
        value = getattr(wopts, key)
        if value and not Path(value).is_absolute():
            changed[key] = str(Path(value).resolve())
    if wopts.db_url.startswith("sqlite:///") and not wopts.db_url.startswith("sqlite:////"):
        path = wopts.db_url[len("sqlite:///"):]
        if path and path != ":memory:":
            changed["db_url"] = f"sqlite:///{Path(path).resolve()}"
    for key, value in changed.items():
        print(f"warning: relative {key.replace('_', ' ')} on a multi-node executor: every node uses {value}; "
              f"it must be on shared storage", file=sys.stderr)
    if wopts.db_url.startswith("sqlite"):
        print("warning: SQLite on a cluster needs a shared filesystem with working locks; PostgreSQL is safer",
              file=sys.stderr)
    return WorkerOptions(**{**vars(wopts), **changed})


def _submitit(job_ids, wopts, eopts, db, console) -> WorkerReport:
    import submitit

    cluster = {"slurm": "slurm", "submitit-local": "local", "submitit-debug": "debug"}[eopts.executor]
    workers = eopts.workers or 1
    if cluster == "slurm":
        wopts = check_shared_paths(wopts, console)
    needs_gpu = wopts.device != "cpu" and any(
        (job := db.get_job(j)) is not None and job.kind in GPU_KINDS for j in job_ids)
    # a campaign task requeues at each time limit until its work is done; submitit's default (3 time
    # limits, then give up) would strand a long campaign
    ex = submitit.AutoExecutor(folder=eopts.log_dir, cluster=cluster, slurm_max_num_timeout=10_000)
    if cluster == "slurm":
        ex.update_parameters(**slurm_parameters(eopts.slurm, needs_gpu))
    else:
        ex.update_parameters(timeout_min=eopts.slurm.timeout_min)
    task = CheckpointableSlurmTask()
    try:
        jobs = [ex.submit(task, wopts, job_ids) for _ in range(workers)]
    except submitit.core.utils.FailedJobError as e:  # sbatch refused: its own first error line says why
        first = next((ln for ln in str(e).splitlines() if "error" in ln.lower()), str(e).strip())
        raise ExecError(f"sbatch failed: {first.strip()}") from None
    ids = [j.job_id for j in jobs]
    console.print(f"submitted {len(jobs)} {cluster} task(s): {', '.join(ids)} (logs in {eopts.log_dir})")
    if cluster == "debug":  # debug tasks run in this process, one after the other, when asked
        for j in jobs:
            j.result()
    if eopts.detach:
        console.print(f"detached: follow with `repro status --db {safe_url(wopts.db_url)}`; cancel with `scancel "
                      f"{' '.join(ids)}`" if cluster == "slurm" else "detached")
        db.dispose()
        return WorkerReport()
    if cluster != "slurm":
        watched = [_SubmititWatch(j) for j in jobs]
        return _follow(job_ids, db, watched, console, eopts.poll_seconds)
    states: dict[str, str] = {}
    watched = [_SlurmTaskWatch(i, states) for i in ids]
    failures = 0

    def refresh() -> None:
        nonlocal failures
        try:
            states.clear()
            states.update(squeue_states(ids))
            failures = 0
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            failures += 1
            states.update({i: "UNKNOWN" for i in ids})
            if failures >= 12:
                raise ExecError(f"lost contact with Slurm ({e}); the tasks may still run: "
                                   f"follow with `repro status`") from None

    try:
        return _follow(job_ids, db, watched, console, max(eopts.poll_seconds, 1.0), refresh=refresh)
    finally:
        db.dispose()
