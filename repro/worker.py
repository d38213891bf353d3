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
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

import torch

from .checkpoints import LeaseLost
from .db import Database, utcnow

# A job whose owner stopped beating for LEASE_SECONDS may be taken over by any worker (``--lease-seconds``).
# A dead owner on another host is only noticed this way; one on this host is noticed at once (pid gone).
# $REPRO_LEASE_SECONDS / $REPRO_HEARTBEAT_SECONDS shorten both for the fault tests.
LEASE_SECONDS = float(os.environ.get("REPRO_LEASE_SECONDS", 180))
HEARTBEAT_SECONDS = float(os.environ.get("REPRO_HEARTBEAT_SECONDS", min(20.0, LEASE_SECONDS / 4)))
MIN_LEASE_SECONDS = 3 * HEARTBEAT_SECONDS  # a shorter lease would let a live but slow beat be taken over
REPO = Path(__file__).resolve().parent.parent


@dataclass
class WorkerOptions:
    db_url: str
    data_dir: str | None = None
    download: bool = False
    device: str = "auto"
    checkpoint_dir: str = "checkpoints"
    loader_workers: int | None = None  # None: the engine's default (0, or a share of the cores for ImageNet)
    engine: str = "fast"  # fast | reference
    precision: str | None = None  # bf16 | fp32; None: bf16 on CUDA, fp32 on CPU
    compile: bool = False
    keep_checkpoints: bool = False
    lease_seconds: float = LEASE_SECONDS
    threads: int | None = None  # torch CPU threads; None: see ``resolve_threads``


@dataclass
class WorkerReport:
    ran: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)  # jobs another worker took over from us


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


def this_host() -> str:
    """The host name in owner strings; ``$REPRO_HOSTNAME`` overrides it (tests fake a second node)."""
    return os.environ.get("REPRO_HOSTNAME") or socket.gethostname()


def owner_is_dead_here(owner: str | None) -> bool:
    """Owner strings are ``host:pid:token``; a same-host owner whose pid is gone is dead."""
    if not owner:
        return False
    host, pid, _ = owner.rsplit(":", 2)
    return host == this_host() and not _pid_alive(int(pid))


def resolve_threads(opts: WorkerOptions) -> int | None:
    """Torch CPU threads of a worker: ``--threads``, else ``$REPRO_THREADS``, else the Slurm task's CPUs
    (``$SLURM_CPUS_PER_TASK``; 1, Slurm's default allocation, inside a Slurm job without it), else None
    (torch's default: every core). CPU results depend on the thread count, so it is recorded per run."""
    for value in (opts.threads, os.environ.get("REPRO_THREADS"), os.environ.get("SLURM_CPUS_PER_TASK")):
        if value not in (None, ""):
            return max(1, int(value))
    return 1 if os.environ.get("SLURM_JOB_ID") else None


def worker_threads() -> int:
    """The thread count this process trains with, for the run's provenance."""
    return torch.get_num_threads()


class Heartbeat:
    """Refresh the job's lease from a thread while it runs."""

    def __init__(self, db: Database, job_id: str, owner: str):
        self.db, self.job_id, self.owner = db, job_id, owner
        self.progress: str | None = None
        self.lost = threading.Event()  # set when a beat finds the job owned by someone else
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                if not self.db.heartbeat(self.job_id, self.owner, self.progress):
                    self.lost.set()
            except Exception:  # a missed beat is retried; the lease is generous
                pass

    def check(self) -> None:
        """Called between steps: stop at once when another worker holds the job now."""
        if self.lost.is_set():
            raise LeaseLost(f"lost the lease on job {self.job_id} to another worker")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)


def run_profile(spec: dict) -> dict[str, tuple[float, str | None]]:
    import repro_models as models
    from .counting import count_macs, count_params, skip_init

    # one build serves all three counts; no count depends on a weight's value, so skip the init
    with skip_init():
        model = models.create(spec["model"], **spec["model_kwargs"])
    profile = spec["counter_profile"]
    return {"params": (count_params(model, "torch"), "torch"),
            "params_mxnet": (count_params(model, "mxnet"), "mxnet: + BN running mean/var, gamma/beta of non-affine BN"),
            "macs": (count_macs(model, tuple(spec["input_size"]), profile), profile)}


def run_train(spec: dict, opts: WorkerOptions, device: torch.device, store, engine, on_epoch: Callable,
              on_step: Callable | None, on_resume: Callable) -> dict[str, tuple[float, str | None]]:
    import repro_models as models
    from . import loaders
    from .trainer import fit, seed_everything

    train_loader, test_loader = loaders.build(spec, engine=engine.name, device=device, data_dir=opts.data_dir,
                                              download=opts.download, loader_workers=opts.loader_workers,
                                              channels_last=engine.channels_last)
    seed_everything(spec["seed"])
    model = models.create(spec["model"], **spec["model_kwargs"])
    metrics = fit(model, train_loader, test_loader, spec["recipe"], spec.get("train", {}), seed=spec["seed"],
                  device=device, store=store, on_epoch=on_epoch, engine=engine, on_step=on_step,
                  on_resume=on_resume)
    return {k: (v, None) for k, v in metrics.items()}


class Worker:
    def __init__(self, opts: WorkerOptions, progress=None):
        self.opts = opts
        self.db = Database(opts.db_url)
        self.owner = f"{this_host()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.progress = progress  # optional object with start(job, total), epoch(...), step(...), done(job)
        self.device = pick_device(opts.device)
        threads = resolve_threads(opts)
        if threads is not None:
            torch.set_num_threads(threads)

    def try_claim(self, job_id: str) -> bool:
        stale = utcnow() - dt.timedelta(seconds=self.opts.lease_seconds)
        if self.db.claim(job_id, self.owner, stale):
            return True
        job = self.db.get_job(job_id)
        if job is not None and job.state == "running" and owner_is_dead_here(job.owner):
            return self.db.reclaim_dead(job_id, job.owner, self.owner)
        return False

    def execute(self, job_id: str) -> None:
        """Run one claimed job. Every write of its results is fenced: a worker that lost the job to
        another stops with one line and writes nothing more for it."""
        from .checkpoints import CheckpointStore, Recorded
        from .trainer import Diverged, Engine

        job = self.db.get_job(job_id)
        commit, dirty = git_state()
        engine = Engine.for_device(self.device, self.opts.engine, self.opts.precision, self.opts.compile)
        trains = job.kind in ("train", "detect")
        run_id = self.db.start_run(
            job_id, self.owner, host=this_host(), pid=os.getpid(),
            device=device_name(self.device) if trains else "cpu", git_commit=commit, git_dirty=dirty,
            versions=versions(), threads=torch.get_num_threads(),
            **({"engine": engine.name if job.kind == "train" else None, "precision": engine.precision,
                "compiled": engine.compile} if trains else {}))
        store = CheckpointStore(
            Path(self.opts.checkpoint_dir) / job_id,
            known=[Recorded(*r) for r in self.db.checkpoints_for(job_id)],
            on_saved=lambda rec: self.db.put_checkpoint(job_id, run_id, self.owner, rec.path, rec.sha256, rec.step))
        resumed = lambda step: self.db.set_resumed(job_id, run_id, self.owner, step)  # noqa: E731
        try:
            with Heartbeat(self.db, job_id, self.owner) as hb:
                if job.kind == "profile":
                    metrics = run_profile(job.spec)
                elif job.kind == "train":
                    def on_epoch(r):
                        hb.progress = f"epoch {r.epoch}"
                        self.db.put_curve_point(job_id, run_id, self.owner, vars(r))
                        if self.progress:
                            self.progress.epoch(job, r)

                    def on_step(epoch, step, steps):
                        hb.check()
                        if self.progress:
                            self.progress.step(job, epoch, step, steps)

                    metrics = run_train(job.spec, self.opts, self.device, store, engine, on_epoch, on_step, resumed)
                elif job.kind == "detect":
                    from .detect import run_detect

                    def on_progress(it, total, loss):
                        hb.check()
                        hb.progress = f"iteration {it}/{total}"
                        if self.progress:
                            self.progress.iteration(job, it, total, loss)

                    metrics = run_detect(job.spec, self.opts.data_dir, self.opts.download, store, self.device,
                                         on_progress, resumed)
                else:
                    raise ValueError(f"job kind {job.kind!r} has no runner")
            self.db.complete(job_id, run_id, self.owner, metrics)
            if not self.opts.keep_checkpoints:
                store.remove_all()
        except LeaseLost as e:
            # the new owner's results stand; ours end here, and our own attempt says why
            self.db.end_run(run_id, "lost-lease", str(e))
            raise
        except Diverged as e:
            try:
                self.db.complete(job_id, run_id, self.owner, {}, state="diverged", error=str(e))
            except LeaseLost:
                self.db.end_run(run_id, "lost-lease", f"{e} (after losing the lease)")
            raise JobFailed(job_id, str(e), "diverged") from None
        except BaseException as e:  # record, release, and re-raise interrupts
            err = "".join(traceback.format_exception_only(type(e), e)).strip()
            stopped = isinstance(e, (KeyboardInterrupt, Preempted))
            if not stopped and self._lost(job_id):
                # taken over while this worker was stopped or slow: what failed here (a checkpoint file the
                # new owner cleaned up, say) follows from that. Not a failure of the job: a lost lease.
                self.db.end_run(run_id, "lost-lease", f"{err} (after losing the lease)")
                raise LeaseLost(f"lost the lease on job {job_id} to another worker") from e
            self.db.end_run(run_id, "interrupted" if stopped else "failed", err)
            self.db.finish_job(job_id, self.owner, "pending" if stopped else "failed")
            if isinstance(e, (KeyboardInterrupt, SystemExit, Preempted)):
                raise
            raise JobFailed(job_id, err) from e

    def _lost(self, job_id: str) -> bool:
        try:
            return not self.db.holds(job_id, self.owner)
        except Exception:  # the database is what failed: report the original error as it is
            return False

    def loop(self, job_ids: list[str], wait_for_others: bool = True, poll: float = 2.0) -> WorkerReport:
        """Run every claimable job of ``job_ids``; wait for ones other workers hold."""
        report = WorkerReport()
        remaining = list(job_ids)
        while remaining:
            states = self.db.job_states(remaining)
            progressed = False
            for jid in list(remaining):
                state = states.get(jid)
                if state in ("done", "failed", "diverged") or jid in report.failed:
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
                    except LeaseLost as e:  # another worker finishes it; we wait for it like any other
                        print(str(e), file=sys.stderr, flush=True)
                        report.lost.append(jid)
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
    def __init__(self, job_id: str, error: str, state: str = "failed"):
        super().__init__(f"{job_id}: {error}")
        self.job_id, self.error, self.state = job_id, error, state


def worker_main(opts: WorkerOptions, job_ids: list[str]) -> WorkerReport:
    """Entry point for worker processes and Slurm tasks (picklable); threads are set by ``Worker``."""
    return Worker(opts).loop(job_ids)
