"""What reports, the GPU-hour estimate and ``repro status`` read. Each query reads a whole report's rows at
once (chunked only to stay under SQLite's bound-parameter limit) as Core rows, never run by run: a
campaign has 10^5 metric rows, and curves are averaged over seeds by the database.
"""
from __future__ import annotations

from typing import Iterable

from sqlalchemy import func, select

from ..states import JobState, Progress, RunStatus
from .connect import Store
from .schema import (ArtifactRow, Benchmark, InputBenchmark, CurvePoint, Job, Metric, ModelCount, PublishedCell, Run,
                     divergence_of)


class Reads(Store):
    # --- results and their provenance (reports, ``repro diff``) ---------------------------
    def results_for(self, config_keys: Iterable[str]) -> list[dict]:
        """Done jobs of these configurations with their metrics (one dict per job), how the run that
        measured them ran (``how``: engine, precision, compiled, device) and when the job was planned
        (``created_at``: the newest code version's identity is the newest). One query per 500 keys;
        job specs are not loaded."""
        keys = list(set(config_keys))
        out: dict[str, dict] = {}
        cols = (Job.id, Job.config_key, Job.budget, Job.seed, Job.kind, Metric.name, Metric.value, Metric.detail,
                Run.engine, Run.precision, Run.compiled, Run.device, Run.init_from, Job.created_at)
        with self.engine.connect() as s:  # Core rows, no ORM loading
            for i in range(0, len(keys), 500):
                q = (select(*cols).join(Metric, Metric.job_id == Job.id).join(Run, Run.id == Metric.run_id)
                     .where(Job.config_key.in_(keys[i:i + 500]), Job.state == JobState.DONE))
                for jid, key, budget, seed, kind, name, value, detail, engine, precision, compiled, device, init, \
                        created in s.execute(q).all():
                    d = out.setdefault(jid, {
                        "job": jid, "config_key": key, "budget": budget, "seed": seed, "kind": kind,
                        "metrics": {}, "details": {}, "init_from": init, "created_at": created,
                        "how": {"engine": engine, "precision": precision, "compiled": compiled, "device": device}})
                    d["metrics"][name] = value
                    d["details"][name] = detail
        return list(out.values())

    def done_configs(self, config_keys: Iterable[str], budget: str) -> set[str]:
        """The configurations among these with at least one done job of ``budget`` (no metrics read)."""
        keys, out = list(set(config_keys)), set()
        with self.engine.connect() as s:
            for i in range(0, len(keys), 500):
                q = (select(Job.config_key).distinct()
                     .where(Job.config_key.in_(keys[i:i + 500]), Job.state == JobState.DONE, Job.budget == budget))
                out.update(s.scalars(q))
        return out

    def curve_summary(self, job_ids: Iterable[str], metrics: Iterable[str]) -> list[dict]:
        """Per epoch that every one of these jobs has reached: the mean, min and max of each curve
        metric over the jobs (``<metric>_mean/_min/_max``), aggregated in the database: a figure of
        a thousand seeds reads a few hundred rows, never every point."""
        ids, names = sorted(set(job_ids)), list(metrics)
        if not ids:
            return []
        cols = [agg(getattr(CurvePoint, m)).label(f"{m}_{what}") for m in names
                for what, agg in (("mean", func.avg), ("min", func.min), ("max", func.max))]
        q = (select(CurvePoint.epoch, *cols).where(CurvePoint.job_id.in_(ids)).group_by(CurvePoint.epoch)
             .having(func.count() == len(ids)).order_by(CurvePoint.epoch))
        with self.engine.connect() as s:
            return [dict(row._mapping) for row in s.execute(q)]

    def diverged_for(self, config_keys: Iterable[str]) -> list[dict]:
        """Diverged jobs of these configurations, each with where its last attempt diverged
        (``divergence``, a ``Divergence``; None where an old run's ``error`` says it in words the upgrade
        could not read): a result to show, never a number (``results_for`` skips them)."""
        keys = list(set(config_keys))
        out: dict[str, dict] = {}
        cols = (Job.id, Job.config_key, Job.budget, Job.seed, Job.kind, Run.error, Run.diverged_value,
                Run.diverged_unit, Run.diverged_at, Run.diverged_lr, Run.init_from)
        with self.engine.connect() as s:
            for i in range(0, len(keys), 500):
                q = (select(*cols).outerjoin(Run, Run.job_id == Job.id)
                     .where(Job.config_key.in_(keys[i:i + 500]), Job.state == JobState.DIVERGED).order_by(Job.id,
                                                                                                          Run.id))
                for jid, key, budget, seed, kind, error, value, unit, at, lr, init in s.execute(q):
                    # ordered by run id: the last attempt wins
                    out[jid] = {"job": jid, "config_key": key, "budget": budget, "seed": seed, "kind": kind,
                                "error": error, "divergence": divergence_of(value, unit, at, lr), "init_from": init}
        return list(out.values())

    def provenance_for(self, job_ids: Iterable[str]) -> dict[str, dict]:
        """Each job's seed, budget, state and every run with how it ran: one query for a whole report.
        Runs recorded before a provenance column existed read it as NULL (the upgrade adds it empty)."""
        ids = sorted(set(job_ids))
        cols = ("id", "status", "device", "engine", "precision", "compiled", "threads", "git_commit", "git_dirty",
                "host", "started_at", "ended_at", "resumed_from_epoch")
        out: dict[str, dict] = {}
        with self.engine.connect() as s:
            for i in range(0, len(ids), 500):
                q = (select(Job.id, Job.seed, Job.budget, Job.state, *(getattr(Run, c) for c in cols))
                     .outerjoin(Run, Run.job_id == Job.id).where(Job.id.in_(ids[i:i + 500]))
                     .order_by(Job.id, Run.id))
                for jid, seed, budget, state, *run in s.execute(q).all():
                    d = out.setdefault(jid, {"job": jid, "seed": seed, "budget": budget, "state": state, "runs": []})
                    if run[0] is not None:
                        d["runs"].append(dict(zip(cols, run)))
        return out

    # --- the GPU-hour estimate --------------------------------------------------------------
    def benchmarks(self) -> list[dict]:
        """Every measurement, newest first (callers pick the one they trust for a configuration)."""
        cols = [c.name for c in Benchmark.__table__.columns]
        with self.Session() as s:
            return [{c: getattr(b, c) for c in cols}
                    for b in s.scalars(select(Benchmark).order_by(Benchmark.created_at.desc(), Benchmark.id.desc()))]

    def model_counts(self, keys: Iterable[str]) -> dict[str, dict]:
        """Cached counts of these configuration keys (missing keys are absent)."""
        keys = list(set(keys))
        cols = [c.name for c in ModelCount.__table__.columns]
        out: dict[str, dict] = {}
        with self.Session() as s:
            for i in range(0, len(keys), 500):
                for row in s.scalars(select(ModelCount).where(ModelCount.key.in_(keys[i:i + 500]))):
                    out[row.key] = {c: getattr(row, c) for c in cols}
        return out

    # --- ``repro status`` -------------------------------------------------------------------
    def jobs_by_state(self) -> list[Job]:
        with self.Session() as s:
            return list(s.scalars(select(Job).order_by(Job.state, Job.kind, Job.model)))

    def running(self) -> list[dict]:
        """Running jobs with their current attempt: host, pid, start, resumed epoch, progress, lease."""
        with self.Session() as s:
            q = (select(Job, Run).join(Run, Run.job_id == Job.id)
                 .where(Job.state == JobState.RUNNING, Run.status == RunStatus.RUNNING).order_by(Job.id, Run.id))
            out: dict[str, dict] = {}
            for job, run in s.execute(q):
                out[job.id] = {"job": job.id, "kind": job.kind, "model": job.model, "spec": job.spec,
                               "owner": job.owner, "heartbeat_at": job.heartbeat_at,
                               "progress": (Progress(job.progress_done, job.progress_total, job.progress_unit)
                                            if job.progress_unit else None),
                               "host": run.host, "pid": run.pid, "started_at": run.started_at,
                               "resumed_from_epoch": run.resumed_from_epoch, "last_epoch": None}
            # the curve is written at each epoch's end; the heartbeat's progress lags by up to a beat
            if out:
                q = (select(CurvePoint.job_id, func.max(CurvePoint.epoch)).where(CurvePoint.job_id.in_(list(out)))
                     .group_by(CurvePoint.job_id))
                for jid, epoch in s.execute(q):
                    out[jid]["last_epoch"] = epoch
            return list(out.values())

    def input_benchmarks(self) -> list[dict]:
        """Every input-pipeline measurement, newest first."""
        cols = [c.name for c in InputBenchmark.__table__.columns]
        with self.engine.connect() as s:
            q = select(*(InputBenchmark.__table__.c[c] for c in cols)).order_by(InputBenchmark.created_at.desc(),
                                                                               InputBenchmark.id.desc())
            return [dict(r._mapping) for r in s.execute(q)]

    # --- artifacts (trained weights kept by content) ----------------------------------------
    def artifact_of(self, job_id: str, kind: str = "weights") -> dict | None:
        """The artifact a done job kept (sha256, path, size), or None."""
        with self.engine.connect() as s:
            row = s.execute(select(ArtifactRow.sha256, ArtifactRow.path, ArtifactRow.size)
                            .where(ArtifactRow.job_id == job_id, ArtifactRow.kind == kind)).first()
        return dict(row._mapping) if row else None

    def artifacts(self) -> list[dict]:
        """Every artifact with its job, the published cells its job serves (paper, table, section, row, column),
        and whether a job needs it: a job of this database names its job as upstream (it starts, or will start
        again, from it)."""
        with self.engine.connect() as s:
            rows = s.execute(select(ArtifactRow.id, ArtifactRow.job_id, ArtifactRow.kind, ArtifactRow.sha256,
                                    ArtifactRow.path, ArtifactRow.size, Job.config_key, Job.model, Job.budget,
                                    Job.seed).join(Job, Job.id == ArtifactRow.job_id)
                             .order_by(Job.model, Job.seed)).all()
            needed: dict[str, list[str]] = {}
            for jid, ups in s.execute(select(Job.id, Job.upstream).where(Job.upstream.is_not(None))):
                for u in ups or []:
                    needed.setdefault(u, []).append(jid)
            keys = sorted({r.config_key for r in rows})
            cells: dict[str, list[str]] = {}
            for i in range(0, len(keys), 500):
                q = select(PublishedCell.config_key, PublishedCell.paper, PublishedCell.table_name,
                           PublishedCell.section, PublishedCell.row, PublishedCell.column
                           ).where(PublishedCell.config_key.in_(keys[i:i + 500]))
                for key, paper, table, section, row, column in s.execute(q):
                    cells.setdefault(key, []).append((paper, table, section, row, column))
        return [{**dict(r._mapping), "cells": cells.get(r.config_key, []), "needed_by": needed.get(r.job_id, [])}
                for r in rows]

    def forget_artifact(self, artifact_id: int) -> None:
        with self.Session.begin() as s:
            s.execute(ArtifactRow.__table__.delete().where(ArtifactRow.id == artifact_id))

    def waiting_for(self, job_ids: Iterable[str]) -> dict[str, list[str]]:
        """For blocked jobs: the upstream jobs they wait for that are not done yet."""
        ids = list(job_ids)
        out: dict[str, list[str]] = {}
        with self.engine.connect() as s:
            rows = [(j, ups) for i in range(0, len(ids), 500) for j, ups in s.execute(
                select(Job.id, Job.upstream).where(Job.id.in_(ids[i:i + 500]), Job.upstream.is_not(None)))]
            ups = sorted({u for _, us in rows for u in us or []})
            done = set(s.scalars(select(Job.id).where(Job.id.in_(ups), Job.state == JobState.DONE))) if ups else set()
        for j, us in rows:
            out[j] = [u for u in us or [] if u not in done]
        return out
