"""What `repro status` shows of a running campaign: for each running job its progress, where it runs,
and an ETA extrapolated from this attempt's own pace (epochs done since it started or resumed)."""
from __future__ import annotations

import datetime as dt
import re

from .db import utcnow


def total_units(spec: dict) -> int | None:
    """Epochs (or iterations, for detection) the job's recipe runs in all."""
    recipe = spec.get("recipe") or {}
    if recipe.get("iterations"):
        return int(recipe["iterations"])
    if recipe.get("epochs"):
        return int(recipe["epochs"]) + int(recipe.get("mixup_extra_epochs", 0))
    return None


def units_done(progress: str | None) -> int | None:
    """``epoch 7`` or ``iteration 120/9000`` (the worker's heartbeat progress) -> 7 or 120."""
    m = re.match(r"(?:epoch|iteration) (\d+)", progress or "")
    return int(m.group(1)) if m else None


def eta_seconds(started_at: dt.datetime, now: dt.datetime, done: int | None, resumed_from: int | None,
                total: int | None) -> float | None:
    """Remaining seconds at this attempt's pace; None before its first epoch ends."""
    if done is None or total is None:
        return None
    done_here = done - (resumed_from or 0)
    if done_here <= 0:
        return None
    per_unit = (now - started_at).total_seconds() / done_here
    return max(0.0, per_unit * (total - done))


def _hms(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


def running_rows(running: list[dict], now: dt.datetime | None = None) -> list[dict[str, str]]:
    now = now or utcnow()
    rows = []
    for r in running:
        total = total_units(r["spec"])
        progress = f"epoch {r['last_epoch']}" if r.get("last_epoch") else r["progress"]
        done = units_done(progress)
        eta = eta_seconds(r["started_at"], now, done, r["resumed_from_epoch"], total)
        beat = r["heartbeat_at"]
        rows.append({"job": r["job"], "kind": r["kind"], "model": r["model"],
                     "progress": (progress or "starting") + (f" of {total}" if total and progress
                                                             and "/" not in progress else ""),
                     "host": r["host"], "pid": str(r["pid"]),
                     "elapsed": _hms((now - r["started_at"]).total_seconds()), "eta": _hms(eta),
                     "heartbeat": f"{int((now - beat).total_seconds())} s ago" if beat else "-"})
    return rows
