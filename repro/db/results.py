"""What a job's attempts write: the run row with its provenance, curve points, checkpoint records and, in
one transaction, the final metrics with the run's and job's end. Every write of a job's results passes the
fence (``queue.own``): a worker that lost its lease raises ``LeaseLost`` and writes nothing. NaN is never
stored. Also the measurements that belong to no job's lease: benchmarks and the model-count cache.
"""
from __future__ import annotations

import math
from typing import Iterable

from sqlalchemy import select, update

from ..states import Divergence, JobState, RunStatus
from .connect import Store
from .queue import NO_PROGRESS, own, settle_downstream
from .schema import (ArtifactRow, Benchmark, InputBenchmark, CheckpointRow, CurvePoint, Job, Metric, ModelCount, Run,
                     utcnow)


def _finite(values: dict[str, float], what: str) -> None:
    """NaN is never stored as a metric (PostgreSQL would keep it; SQLite turns it into NULL)."""
    bad = [k for k, v in values.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise ValueError(f"refusing to store non-finite {', '.join(bad)} in the {what}")


class Results(Store):
    def start_run(self, job_id: str, owner: str, **provenance) -> int:
        with self.Session.begin() as s:
            own(s, job_id, owner)
            # an attempt left 'running' by a killed process is closed as interrupted
            s.execute(update(Run).where(Run.job_id == job_id, Run.status == RunStatus.RUNNING)
                      .values(status=RunStatus.INTERRUPTED, ended_at=utcnow()))
            run = Run(job_id=job_id, status=RunStatus.RUNNING, started_at=utcnow(), **provenance)
            s.add(run)
            s.flush()
            return run.id

    def end_run(self, run_id: int, status: RunStatus, error: str | None = None) -> None:
        """Close our own attempt's row (the job row is released by ``finish_job``/``complete``). A worker
        that lost its lease may find its row already closed as interrupted by the new owner: it says why."""
        open_states = ([RunStatus.RUNNING, RunStatus.INTERRUPTED] if status == RunStatus.LOST_LEASE
                       else [RunStatus.RUNNING])
        with self.Session.begin() as s:
            s.execute(update(Run).where(Run.id == run_id, Run.status.in_(open_states))
                      .values(status=status, error=error, ended_at=utcnow()))

    def set_resumed(self, job_id: str, run_id: int, owner: str, epoch: int) -> None:
        with self.Session.begin() as s:
            own(s, job_id, owner)
            s.execute(update(Run).where(Run.id == run_id).values(resumed_from_epoch=epoch))

    def put_curve_point(self, job_id: str, run_id: int, owner: str, point: dict[str, float]) -> None:
        _finite(point, f"curve point of job {job_id}")
        with self.Session.begin() as s:
            own(s, job_id, owner)
            stmt = self._insert(CurvePoint.__table__).values(job_id=job_id, run_id=run_id, **point)
            s.execute(stmt.on_conflict_do_update(index_elements=["job_id", "epoch"],
                                                 set_={**{k: v for k, v in point.items() if k != "epoch"},
                                                       "run_id": run_id}))

    def put_checkpoint(self, job_id: str, run_id: int, owner: str, path: str, sha256: str, step: int) -> None:
        with self.Session.begin() as s:
            own(s, job_id, owner)
            s.add(CheckpointRow(job_id=job_id, run_id=run_id, path=path, sha256=sha256, step=step,
                                created_at=utcnow()))

    def checkpoints_for(self, job_id: str) -> list[tuple[str, str, int]]:
        """(path, sha256, step) of every checkpoint this database recorded for the job, newest first."""
        with self.Session() as s:
            q = (select(CheckpointRow.path, CheckpointRow.sha256, CheckpointRow.step)
                 .where(CheckpointRow.job_id == job_id).order_by(CheckpointRow.step.desc(), CheckpointRow.id.desc()))
            return [tuple(r) for r in s.execute(q)]

    def set_run_facts(self, job_id: str, run_id: int, owner: str, **facts) -> None:
        """Provenance an attempt learns while it runs: ``data`` (how its data was read), ``init_from`` (the
        weights it started from)."""
        with self.Session.begin() as s:
            own(s, job_id, owner)
            s.execute(update(Run).where(Run.id == run_id).values(**facts))

    def complete(self, job_id: str, run_id: int, owner: str, metrics: dict[str, tuple[float, str | None]],
                 divergence: Divergence | None = None, artifact=None) -> None:
        """The end of an attempt, in one fenced transaction: metrics, the artifact it keeps (its final
        weights, an ``artifacts.Artifact``), the run's status, the job's state (done, or diverged where
        ``divergence`` says), and the jobs that wait for it (unblocked, or failed when it diverged). Raises
        ``LeaseLost`` (and writes nothing) when the job is no longer ours."""
        state = JobState.DONE if divergence is None else JobState.DIVERGED
        at = {} if divergence is None else {"diverged_value": divergence.value, "diverged_unit": divergence.unit,
                                             "diverged_at": divergence.at, "diverged_lr": divergence.lr}
        _finite({k: v for k, (v, _) in metrics.items()}, f"metrics of job {job_id}")
        with self.Session.begin() as s:
            own(s, job_id, owner)
            for name, (value, detail) in metrics.items():
                stmt = self._insert(Metric.__table__).values(job_id=job_id, run_id=run_id, name=name,
                                                             value=float(value), detail=detail)
                s.execute(stmt.on_conflict_do_update(index_elements=["job_id", "name"],
                                                     set_={"value": float(value), "detail": detail, "run_id": run_id}))
            if artifact is not None:
                row = {"sha256": artifact.sha256, "path": artifact.path, "size": artifact.size, "run_id": run_id,
                       "created_at": utcnow()}
                stmt = self._insert(ArtifactRow.__table__).values(job_id=job_id, kind=artifact.kind, **row)
                s.execute(stmt.on_conflict_do_update(index_elements=["job_id", "kind"], set_=row))
            s.execute(update(Run).where(Run.id == run_id).values(status=RunStatus(state.value), ended_at=utcnow(),
                                                                 **at))
            s.execute(update(Job).where(Job.id == job_id).values(state=state, updated_at=utcnow(), **NO_PROGRESS))
            settle_downstream(s, job_id)

    # --- measurements outside a job's lease ------------------------------------------------
    def put_benchmark(self, row: dict) -> None:
        with self.Session.begin() as s:
            s.add(Benchmark(created_at=utcnow(), **row))

    def put_input_benchmark(self, row: dict) -> None:
        with self.Session.begin() as s:
            s.add(InputBenchmark(created_at=utcnow(), **row))

    def put_model_counts(self, rows: Iterable[dict]) -> None:
        """Store counts; a key already cached keeps its row (the key includes the code's hash)."""
        with self.Session.begin() as s:
            for row in rows:
                s.execute(self._insert(ModelCount.__table__).values(created_at=utcnow(), **row)
                          .on_conflict_do_nothing())
