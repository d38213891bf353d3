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
import time
from dataclasses import replace
from pathlib import Path

from submitit.helpers import Checkpointable

from .db import Database
from .events import Events, Tally, log
from .options import EXECUTORS, ExecError, ExecOptions, SlurmOptions, parse_slurm_opts  # noqa: F401
from .states import FINISHED, JobState
from .worker import MIN_LEASE_SECONDS, Preempted, Worker, WorkerOptions, WorkerReport, backoff, worker_main

GPU_KINDS = ("train", "detect")  # job kinds that want an accelerator; profile jobs are static counts


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


# --- running ---------------------------------------------------------------------------------

def check(wopts: WorkerOptions, eopts: ExecOptions) -> None:
    """Options that cannot run, refused before anything starts."""
    if eopts.executor not in EXECUTORS:
        raise ExecError(f"unknown executor {eopts.executor!r}: use {', '.join(EXECUTORS)}", "executor")
    if wopts.lease_seconds < MIN_LEASE_SECONDS:
        raise ExecError(f"must be at least {MIN_LEASE_SECONDS:g} (3 heartbeats), got {wopts.lease_seconds:g}",
                        "lease_seconds")
    if eopts.jobs_per_gpu < 1:
        raise ExecError("must be at least 1", "jobs_per_gpu")
    if eopts.workers is not None and eopts.workers < 1:
        raise ExecError("must be at least 1", "workers")


def run(job_ids: list[str], wopts: WorkerOptions, eopts: ExecOptions, events: Events | None = None) -> WorkerReport:
    """Run ``job_ids`` to their outcomes on the chosen executor; every executor reports the same typed
    outcome for the same job (the in-process worker from what it ran, the others from the database)."""
    events = events or Events()
    check(wopts, eopts)
    if eopts.executor != "local":
        return _submitit(job_ids, wopts, eopts, events)
    import torch

    n_gpus = torch.cuda.device_count()
    workers = eopts.workers or default_workers(n_gpus, eopts.jobs_per_gpu, wopts.device)
    if uses_gpus(wopts.device) and n_gpus and workers > n_gpus * eopts.jobs_per_gpu:
        raise ExecError(f"{workers} is more than {n_gpus} GPU(s) x {eopts.jobs_per_gpu} job(s) per GPU", "workers")
    if workers <= 1:
        worker = Worker(wopts, events)
        lost = worker.loop(job_ids).lost
        try:
            return replace(outcomes_from(worker.db, job_ids), lost=lost)
        finally:
            worker.db.dispose()
    return _local_pool(job_ids, wopts, eopts, workers, n_gpus, events)


class _Watched:
    """One worker the driver watches: ``alive()``, and a one-line ``fate`` once it is gone (a fact about
    a process or task, for people)."""

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


def _local_pool(job_ids, wopts, eopts, workers, n_gpus, events: Events) -> WorkerReport:
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
    events.workers_started(devices)
    db = Database(wopts.db_url)
    try:  # a dead worker is not restarted: the survivors take its job over (at once, same host)
        return _follow(job_ids, db, watched, events, eopts.poll_seconds)
    finally:
        for w in watched:
            w.proc.join(timeout=30)  # they end on their own once nothing is left to claim
            if w.proc.is_alive():
                w.proc.terminate()
        db.dispose()


def _follow(job_ids, db, watched: list, events: Events, poll: float, refresh=None, first: float = 0.1
            ) -> WorkerReport:
    """Watch the database until every job is finished or no worker is alive; then the outcomes. It looks
    again after ``first`` seconds, then less often up to every ``poll`` seconds, and soon again after a change."""
    last = None
    delays = backoff(poll, first)
    while True:
        if refresh is not None:
            refresh()
        states = db.job_states(job_ids)
        left = [j for j in job_ids if states.get(j) not in FINISHED]
        for w in watched:
            if not w.alive() and w.fate and not w.reported:
                w.reported = True
                events.worker_lost(w.fate, len(left))
        alive = sum(1 for w in watched if w.alive())
        counts = {s: n for s in JobState if (n := sum(1 for j in job_ids if states.get(j) == s))}
        tally = Tally(len(job_ids), len(job_ids) - len(left), counts, alive)
        if tally != last:
            events.tally(tally)
            last = tally
            delays = backoff(poll, first)
        if not left or not alive:
            break
        time.sleep(next(delays))
    return outcomes_from(db, job_ids)


def outcomes_from(db: Database, job_ids: list[str]) -> WorkerReport:
    """Each job's outcome as the database holds it: the same facts an in-process worker reports, and
    those of jobs that ended without running here (failed unrun because an upstream job failed, or run by
    another invocation)."""
    return WorkerReport(outcomes=db.outcomes(job_ids))


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


def check_shared_paths(wopts: WorkerOptions) -> WorkerOptions:
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
        log.warning(f"relative {key.replace('_', ' ')} on a multi-node executor: every node uses {value}; "
                    f"it must be on shared storage")
    if wopts.db_url.startswith("sqlite"):
        log.warning("SQLite on a cluster needs a shared filesystem with working locks; PostgreSQL is safer")
    return WorkerOptions(**{**vars(wopts), **changed})


def _submitit(job_ids, wopts, eopts, events: Events) -> WorkerReport:
    import submitit

    cluster = {"slurm": "slurm", "submitit-local": "local", "submitit-debug": "debug"}[eopts.executor]
    if cluster == "slurm":
        wopts = check_shared_paths(wopts)
    db = Database(wopts.db_url)
    try:
        jobs = _submit(submitit, cluster, job_ids, wopts, eopts, db)
        events.tasks_submitted(cluster, [j.job_id for j in jobs], eopts.log_dir)
        if cluster == "debug":  # debug tasks run in this process, one after the other, when asked
            for j in jobs:
                j.result()
        if eopts.detach:
            return WorkerReport()
        if cluster != "slurm":
            return _follow(job_ids, db, [_SubmititWatch(j) for j in jobs], events, eopts.poll_seconds)
        return _follow_slurm(job_ids, db, [j.job_id for j in jobs], events, eopts.poll_seconds)
    finally:
        db.dispose()


def _submit(submitit, cluster: str, job_ids, wopts, eopts, db) -> list:
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
        return [ex.submit(task, wopts, job_ids) for _ in range(eopts.workers or 1)]
    except submitit.core.utils.FailedJobError as e:  # sbatch refused: its own first error line says why
        first = next((ln for ln in str(e).splitlines() if "error" in ln.lower()), str(e).strip())
        raise ExecError(f"sbatch failed: {first.strip()}") from None


def _follow_slurm(job_ids, db, ids: list[str], events: Events, poll: float) -> WorkerReport:
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
                raise ExecError(f"lost contact with Slurm ({e}); the tasks may still run") from None

    poll = max(poll, 1.0)  # each look asks squeue: at a steady pace, and 12 failed looks in a row give up
    return _follow(job_ids, db, watched, events, poll, refresh=refresh, first=poll)
