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

from .artifacts import ArtifactStore
from .db import Database, LeaseLost, SchemaChanged, utcnow
from .events import Events, log, print_warnings
from .options import HEARTBEAT_SECONDS, LEASE_SECONDS, MIN_LEASE_SECONDS, WorkerOptions, owner_token  # noqa: F401
from .states import FINISHED, JobOutcome, JobState, Progress, RunStatus
from .progress import total_units

from .paths import CHECKOUT as REPO  # noqa: E402


def backoff(cap: float, start: float = 0.1):
    """Sleep lengths for polling the shared database: ``start`` seconds, doubled each time up to ``cap``. A job
    that ends in a moment is seen at once (a pool used to notice its last job up to ``cap`` seconds late); a
    long wait still costs one query per ``cap`` seconds."""
    delay = min(start, cap)
    while True:
        yield delay
        delay = min(cap, delay * 2)


@dataclass
class WorkerReport:
    """What a worker loop (or an executor following several) saw happen to each job it was given."""

    outcomes: dict[str, JobOutcome] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)  # jobs another worker took over from us

    @property
    def ran(self) -> list[str]:
        return [j for j, o in self.outcomes.items() if o.ok]

    @property
    def failed(self) -> dict[str, JobOutcome]:
        return {j: o for j, o in self.outcomes.items() if not o.ok}


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

    from .plugin_loader import provenance

    out["python"] = platform.python_version()
    if provenance():  # each plugin file's SHA-256 (a package's version)
        out["plugins"] = provenance()
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


class Heartbeat:
    """Refresh the job's lease from a thread while it runs."""

    def __init__(self, db: Database, job_id: str, owner: str):
        self.db, self.job_id, self.owner = db, job_id, owner
        self.progress: Progress | None = None
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
              on_step: Callable | None, on_resume: Callable, init_state: dict | None = None,
              on_data: Callable[[dict], None] | None = None) -> tuple[dict[str, tuple[float, str | None]], dict]:
    """Train one job: its metrics and its final weights (the artifact it keeps). ``init_state``: the
    weights it starts from (``init_from``, already checked), loaded before any checkpoint is resumed."""
    from repro_models.ghost_bn import apply_bn_batch

    from .data import loaders
    from .specs import JobRecipe
    from .train.regularise import build
    from .train.trainer import fit, seed_everything

    from .data.datasets import for_job

    # JPEGs are decoded on the GPU only where the fast ImageNet path reads them; elsewhere nothing to choose
    decode = opts.decode if engine.name == "fast" and for_job(spec).kind == "imagenet" else "cpu"
    train_loader, test_loader = loaders.build(spec, engine=engine.name, device=device, data_dir=opts.data_dir,
                                              download=opts.download, loader_workers=opts.loader_workers,
                                              channels_last=engine.channels_last, decode=decode)
    if on_data is not None:
        on_data({**(getattr(train_loader, "data_provenance", None) or {}), "decode": decode})
    seed_everything(spec["seed"])
    recipe = JobRecipe.of(spec["recipe"])
    model = build(spec, recipe)  # with the recipe's drop path and dropout
    if init_state is not None:
        load_initial(model, init_state, spec["init_from"]["into"])
    # the paper's device layout, where it matters for the numbers: BatchNorm over bn_batch images
    model = apply_bn_batch(model, recipe.bn_batch)
    metrics = fit(model, train_loader, test_loader, recipe, spec.get("train", {}),
                  seed=spec["seed"], device=device, store=store, on_epoch=on_epoch, engine=engine, on_step=on_step,
                  on_resume=on_resume)
    if init_state is not None:
        metrics["pretrained"] = 1.0
    return {k: (v, None) for k, v in metrics.items()}, {k: v.detach().cpu() for k, v in model.state_dict().items()}


def load_initial(model: torch.nn.Module, state: dict, into: str) -> None:
    """Start ``model`` from ``state``: all of it (``model``), or a classifier's into a detector's body."""
    if into == "backbone":
        from .train.detect import load_backbone

        load_backbone(model, state)
    else:
        model.load_state_dict(state.get("model", state))  # strict: every tensor must come from it


class Worker:
    def __init__(self, opts: WorkerOptions, events: Events | None = None):
        self.opts = opts
        self.db = Database(opts.db_url)
        self.owner = f"{this_host()}:{os.getpid()}:{owner_token(opts.invocation, uuid.uuid4().hex[:8])}"
        self.events = events or Events()
        self.device = pick_device(opts.device)
        threads = resolve_threads(opts)
        if threads is not None:
            torch.set_num_threads(threads)

    def try_claim(self, job_id: str) -> bool:
        stale = utcnow() - dt.timedelta(seconds=self.opts.lease_seconds)
        if self.db.claim(job_id, self.owner, stale):
            return True
        job = self.db.get_job(job_id)
        if job is not None and job.state == JobState.RUNNING and owner_is_dead_here(job.owner):
            return self.db.reclaim_dead(job_id, job.owner, self.owner)
        return False

    def execute(self, job_id: str) -> JobOutcome:
        """Run one claimed job to its outcome (done, diverged or failed). Every write of its results is
        fenced: a worker that lost the job to another raises ``LeaseLost`` and writes nothing more for it.
        Interrupts (Ctrl-C, ``Preempted``) return the job to pending and propagate."""
        from .train.trainer import Diverged, Engine

        job = self.db.get_job(job_id)
        engine = Engine.for_device(self.device, self.opts.engine, self.opts.precision, self.opts.compile)
        run_id = self.db.start_run(job_id, self.owner, **self._provenance(job, engine))
        try:
            with Heartbeat(self.db, job_id, self.owner) as hb:
                metrics, final = self._run(job, run_id, engine, hb)
            # the final weights outlive the checkpoints: another job may start from them
            artifact = ArtifactStore(Path(self.opts.artifact_dir)).put(final) if final is not None else None
            self.db.complete(job_id, run_id, self.owner, metrics, artifact=artifact)
            if not self.opts.keep_checkpoints:
                self._store(job_id, run_id).remove_all()
            return JobOutcome(job_id, JobState.DONE)
        except LeaseLost as e:
            # the new owner's results stand; ours end here, and our own attempt says why
            self.db.end_run(run_id, RunStatus.LOST_LEASE, str(e))
            raise
        except Diverged as e:
            try:
                self.db.complete(job_id, run_id, self.owner, {}, divergence=e.divergence)
            except LeaseLost:
                self.db.end_run(run_id, RunStatus.LOST_LEASE, f"{e} (after losing the lease)")
                raise
            return JobOutcome(job_id, JobState.DIVERGED, divergence=e.divergence)
        except SchemaChanged:  # upgraded (or put back) under us: nothing more may be written, not even why
            raise
        except BaseException as e:  # record, release, and re-raise interrupts
            err = "".join(traceback.format_exception_only(type(e), e)).strip()
            stopped = isinstance(e, (KeyboardInterrupt, Preempted))
            if not stopped and self._lost(job_id):
                # taken over while this worker was stopped or slow: what failed here (a checkpoint file the
                # new owner cleaned up, say) follows from that. Not a failure of the job: a lost lease.
                self.db.end_run(run_id, RunStatus.LOST_LEASE, f"{err} (after losing the lease)")
                raise LeaseLost(f"lost the lease on job {job_id} to another worker") from e
            self.db.end_run(run_id, RunStatus.INTERRUPTED if stopped else RunStatus.FAILED, err)
            self.db.finish_job(job_id, self.owner, JobState.PENDING if stopped else JobState.FAILED)
            if isinstance(e, (KeyboardInterrupt, SystemExit, Preempted)):
                raise
            return JobOutcome(job_id, JobState.FAILED, error=err)

    def _provenance(self, job, engine) -> dict:
        commit, dirty = git_state()
        trains = job.kind in ("train", "detect")
        how = {"engine": engine.name if job.kind == "train" else None, "precision": engine.precision,
               "compiled": engine.compile} if trains else {}
        return dict(host=this_host(), pid=os.getpid(), device=device_name(self.device) if trains else "cpu",
                    git_commit=commit, git_dirty=dirty, versions=versions(), threads=torch.get_num_threads(), **how)

    def _store(self, job_id: str, run_id: int):
        from .train.checkpoints import CheckpointStore, Recorded

        return CheckpointStore(
            Path(self.opts.checkpoint_dir) / job_id,
            known=[Recorded(*r) for r in self.db.checkpoints_for(job_id)],
            on_saved=lambda rec: self.db.put_checkpoint(job_id, run_id, self.owner, rec.path, rec.sha256, rec.step))

    def _run(self, job, run_id: int, engine, hb: "Heartbeat") -> dict[str, tuple[float, str | None]]:
        """The job's runner with its callbacks: progress to the heartbeat and the events, curve points to
        the database (fenced), a lost lease noticed between steps."""
        if job.kind == "profile":
            return run_profile(job.spec), None
        store = self._store(job.id, run_id)
        resumed = lambda step: self.db.set_resumed(job.id, run_id, self.owner, step)  # noqa: E731
        total = total_units(job.spec)
        init_state = self._initial_weights(job, run_id)
        if job.kind == "train":
            def on_epoch(r):
                hb.progress = Progress(r.epoch, total, "epoch")
                self.db.put_curve_point(job.id, run_id, self.owner, vars(r))
                self.events.job_epoch(job, r)

            def on_step(epoch, step, steps):
                hb.check()
                self.events.job_step(job, epoch, step, steps)

            on_data = lambda facts: self.db.set_run_facts(job.id, run_id, self.owner, data=facts)  # noqa: E731
            return run_train(job.spec, self.opts, self.device, store, engine, on_epoch, on_step, resumed,
                             init_state, on_data)
        if job.kind == "detect":
            from .train.detect import run_detect

            def on_progress(it, total_its, loss):
                hb.check()
                hb.progress = Progress(it, total_its, "iteration")
                self.events.job_iteration(job, it, total_its, loss)

            return run_detect(job.spec, self.opts.data_dir, self.opts.download, store, self.device, on_progress,
                              resumed, init_state)
        raise ValueError(f"job kind {job.kind!r} has no runner")

    def _initial_weights(self, job, run_id: int) -> dict | None:
        """The weights a job starts from (its spec's ``init_from``): the upstream job's artifact or a local
        file, its bytes checked against the recorded SHA-256; recorded in the run's provenance."""
        from .artifacts import ArtifactError, load_verified

        init = job.spec.get("init_from")
        if init is None:
            return None
        if "job" in init:
            artifact = self.db.artifact_of(init["job"])
            if artifact is None:
                raise ArtifactError(f"upstream job {init['job']} kept no weights (no artifact recorded)")
            path, sha256, fact = artifact["path"], artifact["sha256"], {"job": init["job"]}
        else:
            path, sha256, fact = init["file"], init["sha256"], {"file": init["file"]}
        state = load_verified(path, sha256)
        self.db.set_run_facts(job.id, run_id, self.owner,
                              init_from={**fact, "sha256": sha256, "path": path, "into": init["into"]})
        return state

    def _lost(self, job_id: str) -> bool:
        try:
            return not self.db.holds(job_id, self.owner)
        except Exception:  # the database is what failed: report the original error as it is
            return False

    def loop(self, job_ids: list[str], wait_for_others: bool = True, poll: float = 2.0) -> WorkerReport:
        """Run every claimable job of ``job_ids``; wait for ones other workers hold (looking again after
        0.1 s, then less and less often, down to every ``poll`` seconds)."""
        report = WorkerReport()
        remaining = list(job_ids)
        delays = backoff(poll)
        while remaining:
            states = self.db.job_states(remaining)
            progressed = False
            for jid in list(remaining):
                if states.get(jid) in FINISHED or jid in report.outcomes:
                    remaining.remove(jid)
                    continue
                if self.try_claim(jid):
                    progressed = True
                    self._execute_reported(jid, report)
                    delays = backoff(poll)
                    break  # re-read states: other workers may have moved on
            if not progressed and remaining:
                if not wait_for_others:
                    break
                time.sleep(next(delays))
        return report

    def _execute_reported(self, job_id: str, report: WorkerReport) -> None:
        job = self.db.get_job(job_id)
        self.events.job_started(job)
        try:
            outcome = report.outcomes[job_id] = self.execute(job_id)
            self.events.job_ended(job, outcome)
        except LeaseLost as e:  # another worker finishes it; we wait for it like any other
            log.warning(str(e))
            report.lost.append(job_id)


class Preempted(BaseException):
    """Raised in a worker that must stop now (Slurm preemption/time limit, scancel): the job goes back
    to pending and resumes from its last checkpoint wherever it is claimed next. A BaseException, like
    KeyboardInterrupt, so that no ``except Exception`` on the way swallows it."""


def worker_main(opts: WorkerOptions, job_ids: list[str]) -> WorkerReport:
    """Entry point for worker processes and Slurm tasks (picklable); threads are set by ``Worker``.
    No callback reaches another process: its warnings go to its stderr through the ``repro`` logger."""
    print_warnings()
    from .plugin_loader import load_all

    load_all(opts.plugins)  # the registries this process reads hold what the planner's held
    try:
        return Worker(opts).loop(job_ids)
    except SchemaChanged as e:  # one line, not a traceback: this worker's code no longer fits the database
        log.error(str(e))
        raise SystemExit(2) from None
