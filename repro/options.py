"""The options of a campaign, its workers and its executors: plain data, no heavy imports (the CLI builds
them at start-up, spawned workers and Slurm tasks receive them pickled)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

MAX_JOBS = 5_000  # see repro.plan: a plan 15x the four papers' is a typo or a runaway sweep
EXECUTORS = ("local", "slurm", "submitit-local", "submitit-debug")

class ExecError(Exception):
    """Options that cannot run, found before any worker starts. ``option`` names the field of
    ``ExecOptions``/``WorkerOptions``/``SlurmOptions`` at fault (None: the cluster refused), so a caller can
    say it in its own words (the CLI names its flag)."""

    def __init__(self, message: str, option: str | None = None):
        super().__init__(f"{option}: {message}" if option else message)
        self.option, self.message = option, message


def parse_slurm_opts(pairs: list[str] | None) -> dict[str, str]:
    """sbatch options as ``KEY=VALUE`` pairs; a bare KEY is a flag (``exclusive``)."""
    out: dict = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not key.strip("-"):
            raise ExecError(f"{pair!r}: expected KEY=VALUE (an sbatch option)", "extra")
        out[key.strip().lstrip("-")] = value if sep else True
    return out


# A job whose owner stopped beating for LEASE_SECONDS may be taken over by any worker (``--lease-seconds``).
# A dead owner on another host is only noticed this way; one on this host is noticed at once (pid gone).
# $REPRO_LEASE_SECONDS / $REPRO_HEARTBEAT_SECONDS shorten both for the fault tests.
LEASE_SECONDS = float(os.environ.get("REPRO_LEASE_SECONDS", 180))
HEARTBEAT_SECONDS = float(os.environ.get("REPRO_HEARTBEAT_SECONDS", min(20.0, LEASE_SECONDS / 4)))
MIN_LEASE_SECONDS = 3 * HEARTBEAT_SECONDS  # a shorter lease would let a live but slow beat be taken over
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
    plugins: tuple[str, ...] = ()  # plugin files every worker process imports before claiming a job
    artifact_dir: str = "artifacts"  # where finished jobs keep their final weights (content-addressed)
    decode: str = "cpu"  # where the fast ImageNet path decodes JPEGs: cpu | cuda (nvJPEG)
    invocation: str = ""  # the ``repro run`` that started this worker: its owner strings carry it


def owner_token(invocation: str, unique: str) -> str:
    """The last field of a worker's owner string (``host:pid:token``): the invocation that started it, if
    any, then a per-worker part, so a campaign can tell the jobs its own workers ran from others'."""
    return f"{invocation}.{unique}" if invocation else unique


def started_by(owner: str | None, invocation: str) -> bool:
    """Whether the worker that holds (or last held) a job under ``owner`` was started by ``invocation``."""
    return bool(owner and invocation) and owner.rsplit(":", 1)[-1].startswith(invocation + ".")


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


@dataclass(frozen=True)
class CampaignOptions:
    """Everything a campaign needs; ``None`` paths and URL resolve to the project defaults."""

    targets: tuple[str, ...] = ()
    paper: str | None = None  # the paper of bare table names
    model: str | None = None  # only the cells (of the targets) this model produces
    plugins: tuple[str, ...] = ()  # plugin files beyond $REPRO_PLUGINS, entry points and the papers' own
    budget: str = "full"  # full | smoke | epochs-N
    epochs: int | None = None  # shortens the schedule: budget epochs-N
    seeds: int = 1  # a fixed number of seeds per cell; with seeds_max, the adaptive MIN
    seeds_max: int | None = None  # adaptive seeds MIN..MAX (repro.adaptive); None: fixed
    kinds: frozenset[str] | None = None  # only jobs of these kinds (profile, train, detect)
    max_jobs: int = MAX_JOBS
    specs_dir: str | tuple[str, ...] | None = None  # one folder or several; None: $REPRO_SPECS or the repo's
    db: str | None = None
    data_dir: str | None = None
    checkpoint_dir: str | None = None
    artifact_dir: str | None = None  # None: beside the checkpoints (<checkpoint dir>/../artifacts)
    decode: str = "cpu"
    download: bool = False
    retry_diverged: bool = False  # failed jobs are always retried; diverged ones only when asked
    # how jobs run (provenance, never identity)
    device: str = "auto"
    engine: str = "fast"
    precision: str | None = None
    compile: bool = False
    loader_workers: int | None = None
    keep_checkpoints: bool = False
    threads: int | None = None
    lease_seconds: float = LEASE_SECONDS
    execution: ExecOptions = field(default_factory=ExecOptions)


