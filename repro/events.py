"""What a campaign tells its caller while it runs: callbacks, never printing.

The library (worker loops, executors, the campaign) calls an ``Events`` object; every method does nothing
by default. The CLI passes one that renders progress bars and lines with rich; a notebook may pass its
own, or none. Warnings that may come from worker processes, where no callback reaches, go through the
``repro`` logger (``logging.getLogger("repro")``), which the CLI and each worker process print as
``warning: ...`` lines.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

log = logging.getLogger("repro")


@dataclass(frozen=True)
class Tally:
    """A campaign followed from the database: how many of its ``total`` jobs are in each state."""

    total: int
    finished: int
    counts: dict  # JobState -> n (nonzero only)
    workers_alive: int


class Events:
    """Override what you want to see. ``job`` is the job row (id, kind, model, budget, seed, spec)."""

    def workers_started(self, devices: list[str]) -> None: ...

    def tasks_submitted(self, cluster: str, task_ids: list[str], log_dir: str) -> None: ...

    def job_started(self, job) -> None: ...

    def job_step(self, job, epoch: int, step: int, steps: int) -> None: ...

    def job_epoch(self, job, result) -> None: ...  # a trainer.EpochResult

    def job_iteration(self, job, iteration: int, total: int, loss: float) -> None: ...

    def job_ended(self, job, outcome) -> None: ...  # a states.JobOutcome

    def tally(self, tally: Tally) -> None: ...

    def worker_lost(self, fate: str, unfinished: int) -> None: ...


def print_warnings(stream=None) -> None:
    """In a process with no logging set up (a spawned worker, a Slurm task, the CLI): warnings of the
    ``repro`` logger as ``warning: ...`` lines on stderr."""
    if any(getattr(h, "_repro", False) for h in log.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Lowercase())
    handler._repro = True
    log.addHandler(handler)
    log.setLevel(logging.WARNING)
    log.propagate = False


class _Lowercase(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"
