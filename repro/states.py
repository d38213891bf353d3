"""The vocabulary of states, defined once: jobs, runs (attempts at a job) and published cells.

Every module that stores, reads or shows a state imports it from here (MLflow's ``RunStatus`` and
Ray Tune's trial states are the model). Facts travel typed: a job's progress is numbers (done, total,
unit) and a divergence is a value at an epoch or iteration. Sentences are built from these facts at
the edge (the CLI, the report), never parsed back.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal


class _Str(str, Enum):
    """A string enum whose members print as their value (``f"{JobState.DONE}"`` is ``done``)."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class JobState(_Str):
    PENDING = "pending"  # claimable
    BLOCKED = "blocked"  # waits for an upstream job (its weights) to be done
    RUNNING = "running"  # claimed by a worker that holds its lease
    DONE = "done"
    FAILED = "failed"  # an error: retried by the next ``repro run``
    DIVERGED = "diverged"  # the loss became nan/inf: a result of the recipe, retried only when asked


class RunStatus(_Str):
    """How one attempt ended (or ``running`` while it runs)."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    DIVERGED = "diverged"
    INTERRUPTED = "interrupted"  # stopped (preempted, Ctrl-C) or its process died: the job resumes
    LOST_LEASE = "lost-lease"  # another worker took the job over; this attempt's writes stopped


class CellStatus(_Str):
    """A published cell's verdict (rules in ``repro.compare``)."""

    REPRODUCED = "reproduced"
    DIFFERS = "differs"
    INCONCLUSIVE = "inconclusive"
    DIVERGED = "diverged"
    NOT_REPRODUCIBLE = "not-reproducible"
    NOT_COMPARABLE = "not-comparable"
    PENDING = "pending"
    CITED = "cited"
    NO_NUMBER = "no-number"
    NOT_PRINTED = "not-printed"  # the paper prints '-': not a cell


class ClaimVerdict(_Str):
    """A claim's verdict, per row pair and over its pairs (rules in ``repro.compare.claim_verdict``)."""

    HOLDS = "holds"
    HOLDS_SMALLER = "holds, smaller"
    NOT_SIGNIFICANT = "not significant"
    REVERSED = "reversed"
    PENDING = "pending"


FINISHED = frozenset({JobState.DONE, JobState.FAILED, JobState.DIVERGED})  # no worker moves a job out of these
ENDED_BADLY = frozenset({JobState.FAILED, JobState.DIVERGED})


def waiting_state(upstream_states: dict[str, JobState], upstream: list[str]) -> tuple[JobState, str | None]:
    """A job's state from its upstream jobs' (``upstream`` in order; one absent from ``upstream_states`` is
    not done): pending when all are done; failed, naming the first that failed or diverged, when one did;
    blocked otherwise. The queue stores it; a dry run shows it for a job the database does not hold yet."""
    for u in upstream:
        if upstream_states.get(u) in (JobState.FAILED, JobState.DIVERGED):
            return JobState.FAILED, u
    if all(upstream_states.get(u) == JobState.DONE for u in upstream):
        return JobState.PENDING, None
    return JobState.BLOCKED, None

Unit = Literal["epoch", "iteration"]


@dataclass(frozen=True)
class Progress:
    """How far a running job is: ``done`` of ``total`` units (epochs, or iterations for detection)."""

    done: int
    total: int | None
    unit: Unit

    def __str__(self) -> str:
        return f"{self.unit} {self.done}" + (f" of {self.total}" if self.total else "")


@dataclass(frozen=True)
class Divergence:
    """Where a training loss stopped being finite: ``value`` (nan | inf) at ``unit`` ``at`` (1-based)."""

    value: Literal["nan", "inf"]
    unit: Unit
    at: int
    lr: float | None = None  # the learning rate of that step, when the runner knows it

    def __str__(self) -> str:
        return f"loss became {self.value} at {self.unit} {self.at}" + (f" (lr {self.lr:g})" if self.lr else "")


@dataclass(frozen=True)
class JobOutcome:
    """How a job of a campaign ended, as every executor reports it (from the worker or the database):
    its state, and why when it did not end done. Left unfinished (no worker left), ``state`` is the one
    it was left in and ``unfinished`` says so."""

    job: str
    state: JobState
    error: str | None = None  # a failure's exception line, for people
    divergence: Divergence | None = None
    unfinished: bool = False
    upstream: str | None = None  # failed unrun: the upstream job (its weights) that failed or diverged
    upstream_state: JobState | None = None

    @property
    def ok(self) -> bool:
        return self.state == JobState.DONE

    @property
    def why(self) -> str | None:
        if self.unfinished:
            return f"left {self.state}: no worker was left to run it"
        if self.upstream:
            return f"its upstream job {self.upstream} {self.upstream_state or 'did not finish'}: not run"
        return str(self.divergence) if self.divergence else self.error
