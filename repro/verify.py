"""``repro verify``: re-measure what a database claims, in a scratch database, and compare job by job.

Static (profile) jobs are all re-run and must give exactly the stored numbers. Trained jobs are re-run only
when asked (``trained``: that many, the first by job id, each at its own budget and seed) and must agree
within their cell's seed spread: a re-run seed may differ from the stored one by no more than the cell's seeds
differ from each other (max - min over the cell's done jobs of that budget; a cell of one seed has no spread,
so its re-run must be equal). Trained jobs that start from another job's weights are not re-run (their
upstream would have to be re-run first); the result counts them.

The claims database is only read; the scratch database and its checkpoints live in a temporary folder that
is removed afterwards. The library returns a typed ``Verification``; the CLI prints it.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from .db import Database
from .db.schema import Job, Metric
from .states import JobState

# Metrics that time a run rather than measure the model: never compared.
NOT_MEASURES = frozenset({"train_seconds"})


@dataclass(frozen=True)
class Drift:
    job: str
    kind: str
    model: str
    seed: int | None
    budget: str
    metric: str
    claimed: float
    measured: float | None  # None: the re-run did not measure it (it failed, or stored no such metric)
    allowed: float  # the largest difference accepted (0: exact)


@dataclass
class Verification:
    remeasured: int = 0
    equal: int = 0  # jobs whose every metric is exactly the claimed one
    within: int = 0  # trained jobs within their cell's seed spread, not all equal
    drifts: list[Drift] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # job -> why its re-run did not finish
    trained_not_rerun: int = 0  # trained jobs in the targets not re-run (not asked, or start from weights)

    @property
    def drifted_jobs(self) -> int:
        return len({d.job for d in self.drifts} | set(self.failed))

    @property
    def ok(self) -> bool:
        return not self.drifts and not self.failed


def claims(db: Database, config_keys: set[str]) -> list[dict]:
    """The done jobs of these configurations with their stored metrics, ordered by job id."""
    out: dict[str, dict] = {}
    keys = sorted(config_keys)
    cols = (Job.id, Job.config_key, Job.kind, Job.model, Job.budget, Job.seed, Job.spec, Job.upstream)
    with db.engine.connect() as conn:
        for i in range(0, len(keys), 500):
            q = (select(*cols, Metric.name, Metric.value).join(Metric, Metric.job_id == Job.id)
                 .where(Job.config_key.in_(keys[i:i + 500]), Job.state == JobState.DONE))
            for jid, key, kind, model, budget, seed, spec, upstream, name, value in conn.execute(q):
                job = out.setdefault(jid, {"id": jid, "config_key": key, "kind": kind, "model": model,
                                           "budget": budget, "seed": seed, "spec": spec, "upstream": upstream,
                                           "metrics": {}})
                job["metrics"][name] = value
    return [out[k] for k in sorted(out)]


def spreads(jobs: list[dict]) -> dict[tuple[str, str, str], float]:
    """(config key, budget, metric) -> max - min over the cell's done seeds (0 for one seed)."""
    values: dict[tuple[str, str, str], list[float]] = {}
    for j in jobs:
        for name, v in j["metrics"].items():
            values.setdefault((j["config_key"], j["budget"], name), []).append(v)
    return {k: max(v) - min(v) for k, v in values.items()}


def select_jobs(jobs: list[dict], trained: int) -> tuple[list[dict], int]:
    """Every static job and the first ``trained`` trained jobs that start from no other job's weights; how
    many trained jobs are left out."""
    static = [j for j in jobs if j["kind"] == "profile"]
    others = [j for j in jobs if j["kind"] != "profile"]
    runnable = [j for j in others if not j["upstream"]]
    chosen = runnable[:trained]
    return static + chosen, len(others) - len(chosen)


def compare(claimed: list[dict], measured: dict[str, dict[str, float]], failed: dict[str, str],
            spread: dict[tuple[str, str, str], float]) -> Verification:
    out = Verification(remeasured=len(claimed), failed=dict(failed))
    for j in claimed:
        if j["id"] in failed:
            continue
        got = measured.get(j["id"], {})
        equal, drifted = True, False
        for name, want in sorted(j["metrics"].items()):
            if name in NOT_MEASURES:
                continue
            allowed = 0.0 if j["kind"] == "profile" else spread.get((j["config_key"], j["budget"], name), 0.0)
            have = got.get(name)
            if have is not None and have == want:
                continue
            equal = False
            if have is None or not math.isfinite(have) or abs(have - want) > allowed + 1e-12:
                drifted = True
                out.drifts.append(Drift(j["id"], j["kind"], j["model"], j["seed"], j["budget"], name, want, have,
                                        allowed))
        if equal:
            out.equal += 1
        elif not drifted:
            out.within += 1
    return out


def verify(config_keys: set[str], db_url: str, *, trained: int = 0, worker_options: dict | None = None,
           events=None) -> Verification:
    """Re-measure the done jobs of these configurations (``config_keys``) that
    ``db_url`` holds, in a scratch database; compare them (see the module's docstring)."""
    source = Database(db_url, create=False)
    try:
        jobs = claims(source, config_keys)
    finally:
        source.dispose()
    spread = spreads(jobs)
    chosen, left_out = select_jobs(jobs, trained)
    if not chosen:
        return Verification(trained_not_rerun=left_out)
    from . import executor  # torch: only when something is re-measured
    from .options import ExecOptions, WorkerOptions

    with tempfile.TemporaryDirectory(prefix="repro-verify-") as tmp:
        scratch_url = f"sqlite:///{Path(tmp) / 'scratch.db'}"
        scratch = Database(scratch_url)
        try:
            scratch.add_jobs({k: j[k] for k in ("id", "config_key", "kind", "model", "budget", "seed", "spec")}
                             for j in chosen)
        finally:
            scratch.dispose()
        wopts = WorkerOptions(db_url=scratch_url, checkpoint_dir=str(Path(tmp) / "checkpoints"),
                              artifact_dir=str(Path(tmp) / "artifacts"), **(worker_options or {}))
        report = executor.run([j["id"] for j in chosen], wopts, ExecOptions(workers=1), events)
        failed = {jid: (o.error or o.state.value) for jid, o in report.outcomes.items() if not o.ok}
        scratch = Database(scratch_url, create=False)
        try:
            measured: dict[str, dict[str, float]] = {}
            with scratch.engine.connect() as conn:
                for jid, name, value in conn.execute(select(Metric.job_id, Metric.name, Metric.value)):
                    measured.setdefault(jid, {})[name] = value
        finally:
            scratch.dispose()
    result = compare(chosen, measured, failed, spread)
    result.trained_not_rerun = left_out
    return result
