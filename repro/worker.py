"""A worker: claim jobs from the database one at a time, run them, store what they measured.

The same loop runs in-process, in local worker processes, or inside Slurm tasks (submitit):
executors only decide where loops run. Claiming is one conditional UPDATE, so two workers
(or two ``repro run`` invocations) never run the same job. A job whose owner died (SIGKILL,
node loss) is taken over once its heartbeat is stale, or at once when the owner was a process
on this host that no longer exists; training then resumes from the last checkpoint.
"""
from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

import torch

from .db import Database, utcnow

LEASE_SECONDS = 180
HEARTBEAT_SECONDS = 20
REPO = Path(__file__).resolve().parent.parent


@dataclass
class WorkerOptions:
    db_url: str
    data_dir: str | None = None
    download: bool = False
    device: str = "auto"
    checkpoint_dir: str = "checkpoints"
    loader_workers: int = 0


@dataclass
class WorkerReport:
    ran: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def git_state() -> tuple[str | None, bool | None]:
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        # dirty means the code differs from the commit; the results it writes do not count
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":!results.db", ":!reports"],
                               capture_output=True, text=True, timeout=10).stdout.strip() != ""
        return commit, (dirty if commit else None)
    except (OSError, subprocess.SubprocessError):
        return None, None


def versions() -> dict[str, str]:
    out = {}
    for pkg in ("torch", "torchvision", "thop", "timm", "numpy", "sqlalchemy", "repro"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    import platform
    out["python"] = platform.python_version()
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_is_dead_here(owner: str | None) -> bool:
    """Owner strings are ``host:pid:token``; a same-host owner whose pid is gone is dead."""
    if not owner:
        return False
    host, pid, _ = owner.rsplit(":", 2)
    return host == socket.gethostname() and not _pid_alive(int(pid))


class Heartbeat:
    """Refresh the job's lease from a thread while it runs."""

    def __init__(self, db: Database, job_id: str, owner: str):
        self.db, self.job_id, self.owner = db, job_id, owner
        self.progress: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self.db.heartbeat(self.job_id, self.owner, self.progress)
            except Exception:  # a missed beat is retried; the lease is generous
                pass

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)


def run_profile(spec: dict) -> dict[str, tuple[float, str | None]]:
    import models
    from .counting import count_macs, count_params, skip_init

    # one build serves all three counts; no count depends on a weight's value, so skip the init
    with skip_init():
        model = models.create(spec["model"], **spec["model_kwargs"])
    profile = spec["counter_profile"]
    return {"params": (count_params(model, "torch"), "torch"),
            "params_mxnet": (count_params(model, "mxnet"), "mxnet: + BN running mean/var, gamma/beta of non-affine BN"),
            "macs": (count_macs(model, tuple(spec["input_size"]), profile), profile)}


def run_train(spec: dict, job_id: str, opts: WorkerOptions, device: torch.device,
              on_epoch: Callable, on_step: Callable | None, on_resume: Callable) -> dict[str, tuple[float, str | None]]:
    import models
    from . import data
    from .trainer import fit, seed_everything

    recipe = spec["recipe"]
    train_ds, test_ds = data.load(spec["dataset"], opts.data_dir, augment=recipe["augment"],
                                  train_split=recipe["train_split"], download=opts.download)
    train_ds = data.subset(train_ds, recipe.get("train_images"))
    test_ds = data.subset(test_ds, recipe.get("test_images"))
    seed_everything(spec["seed"])
    model = models.create(spec["model"], **spec["model_kwargs"])
    ckpt = Path(opts.checkpoint_dir) / job_id / "checkpoint.pt"
    metrics = fit(model, train_ds, test_ds, recipe, spec.get("train", {}), seed=spec["seed"], device=device,
                  checkpoint=ckpt, on_epoch=on_epoch, on_step=on_step, loader_workers=opts.loader_workers,
                  on_resume=on_resume)
    return {k: (v, None) for k, v in metrics.items()}


class Worker:
    def __init__(self, opts: WorkerOptions, progress=None):
        self.opts = opts
        self.db = Database(opts.db_url)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.progress = progress  # optional object with start(job, total), epoch(...), step(...), done(job)
        self.device = pick_device(opts.device)
        if os.environ.get("REPRO_THREADS"):
            torch.set_num_threads(max(1, int(os.environ["REPRO_THREADS"])))

    def try_claim(self, job_id: str) -> bool:
        stale = utcnow() - dt.timedelta(seconds=LEASE_SECONDS)
        if self.db.claim(job_id, self.owner, stale):
            return True
        job = self.db.get_job(job_id)
        if job is not None and job.state == "running" and owner_is_dead_here(job.owner):
            return self.db.reclaim_dead(job_id, job.owner, self.owner)
        return False

    def execute(self, job_id: str) -> None:
        job = self.db.get_job(job_id)
        commit, dirty = git_state()
        run_id = self.db.start_run(job_id, host=socket.gethostname(), pid=os.getpid(),
                                   device=device_name(self.device) if job.kind != "profile" else "cpu",
                                   git_commit=commit, git_dirty=dirty, versions=versions())
        try:
            with Heartbeat(self.db, job_id, self.owner) as hb:
                if job.kind == "profile":
                    metrics = run_profile(job.spec)
                elif job.kind == "train":
                    def on_epoch(r):
                        hb.progress = f"epoch {r.epoch}"
                        self.db.put_curve_point(job_id, run_id, vars(r))
                        if self.progress:
                            self.progress.epoch(job, r)

                    def on_step(epoch, step, steps, loss):
                        if self.progress:
                            self.progress.step(job, epoch, step, steps, loss)

                    metrics = run_train(job.spec, job_id, self.opts, self.device, on_epoch, on_step,
                                        lambda epoch: self.db.set_resumed(run_id, epoch))
                elif job.kind == "detect":
                    from .detect import run_detect

                    def on_progress(it, total, loss):
                        hb.progress = f"iteration {it}/{total}"
                        if self.progress:
                            self.progress.iteration(job, it, total, loss)

                    metrics = run_detect(job.spec, job_id, self.opts.data_dir, self.opts.download,
                                         self.opts.checkpoint_dir, self.device, on_progress,
                                         lambda it: self.db.set_resumed(run_id, it))
                else:
                    raise ValueError(f"job kind {job.kind!r} has no runner")
            self.db.put_metrics(job_id, run_id, metrics)
            self.db.end_run(run_id, "done")
            self.db.finish_job(job_id, self.owner, "done")
        except BaseException as e:  # record, release, and re-raise interrupts
            err = "".join(traceback.format_exception_only(type(e), e)).strip()
            stopped = isinstance(e, (KeyboardInterrupt, Preempted))
            self.db.end_run(run_id, "interrupted" if stopped else "failed", err)
            self.db.finish_job(job_id, self.owner, "pending" if stopped else "failed")
            if isinstance(e, (KeyboardInterrupt, SystemExit, Preempted)):
                raise
            raise JobFailed(job_id, err) from e

    def loop(self, job_ids: list[str], wait_for_others: bool = True, poll: float = 2.0) -> WorkerReport:
        """Run every claimable job of ``job_ids``; wait for ones other workers hold."""
        report = WorkerReport()
        remaining = list(job_ids)
        while remaining:
            states = self.db.job_states(remaining)
            progressed = False
            for jid in list(remaining):
                state = states.get(jid)
                if state in ("done", "failed") or jid in report.failed:
                    remaining.remove(jid)
                    continue
                if self.try_claim(jid):
                    progressed = True
                    job = self.db.get_job(jid)
                    if self.progress:
                        self.progress.start(job)
                    try:
                        self.execute(jid)
                        report.ran.append(jid)
                    except JobFailed as e:
                        report.failed[jid] = e.error
                    finally:
                        if self.progress:
                            self.progress.done(job)
                    break  # re-read states: other workers may have moved on
            if not progressed and remaining:
                if not wait_for_others:
                    break
                time.sleep(poll)
        return report


class Preempted(BaseException):
    """Raised in a worker that must stop now (Slurm preemption/time limit, scancel): the job goes back
    to pending and resumes from its last checkpoint wherever it is claimed next. A BaseException, like
    KeyboardInterrupt, so that no ``except Exception`` on the way swallows it."""


class JobFailed(Exception):
    def __init__(self, job_id: str, error: str):
        super().__init__(f"{job_id}: {error}")
        self.job_id, self.error = job_id, error


def worker_main(opts: WorkerOptions, job_ids: list[str]) -> WorkerReport:
    """Entry point for worker processes and Slurm tasks (picklable)."""
    torch.set_num_threads(max(1, int(os.environ.get("REPRO_THREADS", torch.get_num_threads()))))
    return Worker(opts).loop(job_ids)
