"""What `repro status` shows of a running campaign: for each running job its progress, where it runs,
and an ETA extrapolated from this attempt's own pace (units done since it started or resumed)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .states import Progress


def total_units(spec: dict) -> int | None:
    """Epochs (or iterations, for detection) the job's recipe runs in all; None for a static job."""
    from .specs import JobRecipe  # pydantic: not for the CLI's start-up

    return JobRecipe.of(spec["recipe"]).length if spec.get("recipe") else None


def eta_seconds(started_at: dt.datetime, now: dt.datetime, done: int | None, resumed_from: int | None,
                total: int | None) -> float | None:
    """Remaining seconds at this attempt's pace; None before its first unit ends."""
    if done is None or total is None:
        return None
    done_here = done - (resumed_from or 0)
    if done_here <= 0:
        return None
    per_unit = (now - started_at).total_seconds() / done_here
    return max(0.0, per_unit * (total - done))


@dataclass(frozen=True)
class RunningJob:
    """One running job as `repro status` shows it (the CLI renders durations and progress)."""

    job: str
    kind: str
    model: str
    progress: Progress | None  # None: no unit finished yet
    host: str
    pid: int
    elapsed_s: float
    eta_s: float | None
    heartbeat_age_s: float | None


def running_jobs(running: list[dict], now: dt.datetime | None = None) -> list[RunningJob]:
    from .db import utcnow  # SQLAlchemy: not for the CLI's start-up, which imports total_units

    now = now or utcnow()
    out = []
    for r in running:
        progress: Progress | None = r["progress"]
        total = total_units(r["spec"])
        if r.get("last_epoch"):  # the curve is written at each epoch's end; the heartbeat lags by up to a beat
            progress = Progress(r["last_epoch"], total, "epoch")
        elif progress is not None and progress.total is None:
            progress = Progress(progress.done, total, progress.unit)
        eta = eta_seconds(r["started_at"], now, progress.done if progress else None, r["resumed_from_epoch"],
                          progress.total if progress else total)
        beat = r["heartbeat_at"]
        out.append(RunningJob(r["job"], r["kind"], r["model"], progress, r["host"], r["pid"],
                              (now - r["started_at"]).total_seconds(), eta,
                              (now - beat).total_seconds() if beat else None))
    return out
