"""A database's side of bundles (``repro.bundle``): the rows ``repro export`` writes, and ``merge``, which
writes a checked bundle into a database in one transaction.

Merging, job by job:

- a job this database does not hold (or holds unfinished) gets the bundle's run, metrics and curve, the run
  marked with the bundle's origin (``origins``: its SHA-256, the ``--label``, the exporting host);
- a job this database holds done is one sample already: the bundle's numbers of it become ``replicas`` of that
  origin (the replication check compares them), unless they are the very run this database holds (same host,
  pid and start: a bundle of this database's own runs);
- a bundle imported before (same SHA-256) adds nothing, and so does a run already imported from another bundle
  with the same host, pid and start.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select, update

from ..states import JobState, RunStatus
from .database import Database
from .schema import ArtifactRow, CurvePoint, Job, Metric, OriginRow, Replica, Run, utcnow

CHUNK = 500


@dataclass
class Merged:
    origin: int | None = None  # the origins row (None: the bundle was imported before)
    already: bool = False
    jobs_added: int = 0
    runs_added: int = 0
    replicas_added: int = 0
    skipped_runs: int = 0  # runs this database already holds
    artifacts_added: int = 0
    notes: list[str] = field(default_factory=list)


def _done_jobs(db: Database, config_keys: set[str]) -> list[str]:
    keys = sorted(config_keys)
    out: list[str] = []
    with db.engine.connect() as conn:
        for i in range(0, len(keys), CHUNK):
            out += conn.execute(select(Job.id).where(Job.config_key.in_(keys[i:i + CHUNK]),
                                                     Job.state == JobState.DONE)).scalars().all()
    return sorted(out)


def export_rows(db: Database, config_keys: set[str]) -> tuple[dict[str, list[dict]], list[dict]]:
    """The done jobs of these configurations, each with the run that measured it, its metrics and its curve;
    and the artifact rows of those jobs."""
    from ..bundle import CURVE_COLUMNS, JOB_COLUMNS, RUN_COLUMNS

    ids = _done_jobs(db, config_keys)
    tables: dict[str, list[dict]] = {"jobs": [], "runs": [], "metrics": [], "curve_points": []}
    artifacts: list[dict] = []
    run_cols = [Run.id, Run.job_id] + [getattr(Run, c) for c in RUN_COLUMNS[2:]]
    with db.engine.connect() as conn:
        for i in range(0, len(ids), CHUNK):
            part = ids[i:i + CHUNK]
            tables["jobs"] += [dict(zip(JOB_COLUMNS, r)) for r in conn.execute(
                select(*[getattr(Job, c) for c in JOB_COLUMNS]).where(Job.id.in_(part)).order_by(Job.id))]
            metrics = [dict(zip(("job_id", "run_id", "name", "value", "detail"), r)) for r in conn.execute(
                select(Metric.job_id, Metric.run_id, Metric.name, Metric.value, Metric.detail)
                .where(Metric.job_id.in_(part)).order_by(Metric.job_id, Metric.name))]
            tables["metrics"] += metrics
            run_ids = sorted({m["run_id"] for m in metrics})
            tables["runs"] += [dict(zip(RUN_COLUMNS, r)) for r in conn.execute(
                select(*run_cols).where(Run.id.in_(run_ids)).order_by(Run.id))]
            tables["curve_points"] += [dict(zip(CURVE_COLUMNS, r)) for r in conn.execute(
                select(CurvePoint.job_id, CurvePoint.run_id, *[getattr(CurvePoint, c) for c in CURVE_COLUMNS[2:]])
                .where(CurvePoint.job_id.in_(part)).order_by(CurvePoint.job_id, CurvePoint.epoch))]
            artifacts += [dict(zip(("job_id", "run_id", "kind", "sha256", "size", "path"), r)) for r in conn.execute(
                select(ArtifactRow.job_id, ArtifactRow.run_id, ArtifactRow.kind, ArtifactRow.sha256, ArtifactRow.size,
                       ArtifactRow.path).where(ArtifactRow.job_id.in_(part)))]
    for r in tables["runs"]:
        r["status"] = r["status"].value if hasattr(r["status"], "value") else r["status"]
    return tables, artifacts


def merge(db: Database, bundle, *, label: str | None, artifact_dir: Path | None = None) -> Merged:
    """Write ``bundle`` (a checked ``repro.bundle.Bundle``) into ``db`` in one transaction (see the module's
    docstring). Artifact files are written (content-addressed) before the transaction, which records them."""
    out = Merged()
    t = bundle.tables
    with db.Session.begin() as s:
        if s.execute(select(OriginRow.id).where(OriginRow.bundle_sha256 == bundle.sha256)).first():
            out.already = True
            return out
        m = bundle.manifest
        origin = OriginRow(bundle_sha256=bundle.sha256, label=label, host=m.get("host") or "unknown",
                           repro_version=m.get("repro_version"), code_version=m.get("code_version"),
                           imported_at=utcnow())
        s.add(origin)
        s.flush()
        out.origin = origin.id
        ids = [j["id"] for j in t["jobs"]]
        have: dict[str, JobState] = {}
        for i in range(0, len(ids), CHUNK):
            have.update(s.execute(select(Job.id, Job.state).where(Job.id.in_(ids[i:i + CHUNK]))).all())
        # the runs this database holds already, by (job, host, pid, start): the same measurement
        known: dict[tuple, int] = {}
        for i in range(0, len(ids), CHUNK):
            for rid, jid, host, pid, started in s.execute(
                    select(Run.id, Run.job_id, Run.host, Run.pid,
                           Run.started_at).where(Run.job_id.in_(ids[i:i + CHUNK]))):
                known[(jid, host, pid, started)] = rid
        metrics_of: dict[int, list[dict]] = {}
        for mrow in t["metrics"]:
            metrics_of.setdefault(mrow["run_id"], []).append(mrow)
        curve_of: dict[int, list[dict]] = {}
        for p in t["curve_points"]:
            curve_of.setdefault(p["run_id"], []).append(p)
        for j in t["jobs"]:  # upstream jobs first (a bundle lists done jobs; upstream rows must exist)
            if j["id"] not in have:
                s.add(Job(id=j["id"], config_key=j["config_key"], kind=j["kind"], model=j["model"], budget=j["budget"],
                          seed=None if j["seed"] is None else int(j["seed"]), spec=j["spec"], upstream=j["upstream"],
                          state=JobState.PENDING))
                out.jobs_added += 1
        s.flush()
        for r in t["runs"]:
            jid = r["job_id"]
            started = r["started_at"].to_pydatetime() if hasattr(r["started_at"], "to_pydatetime") else r["started_at"]
            ended = r["ended_at"].to_pydatetime() if hasattr(r["ended_at"], "to_pydatetime") else r["ended_at"]
            key = (jid, r["host"], int(r["pid"]), started)
            if key in known:
                out.skipped_runs += 1
                continue
            if have.get(jid) == JobState.DONE:  # one sample already: this origin's numbers are a replica
                for mrow in metrics_of.get(r["run_id"], []):
                    exists = s.execute(select(Replica.id).where(Replica.job_id == jid, Replica.origin_id == origin.id,
                                                                Replica.name == mrow["name"])).first()
                    if not exists:
                        s.add(Replica(job_id=jid, origin_id=origin.id, name=mrow["name"], value=float(mrow["value"])))
                        out.replicas_added += 1
                continue
            run = Run(job_id=jid, status=RunStatus.DONE, started_at=started, ended_at=ended,
                      host=r["host"] or "unknown",
                      pid=int(r["pid"]), device=r["device"] or "unknown", git_commit=r["git_commit"],
                      git_dirty=None if r["git_dirty"] is None else bool(r["git_dirty"]), versions=r["versions"] or {},
                      resumed_from_epoch=None if r["resumed_from_epoch"] is None else int(r["resumed_from_epoch"]),
                      engine=r["engine"], precision=r["precision"],
                      compiled=None if r["compiled"] is None else bool(r["compiled"]),
                      threads=None if r["threads"] is None else int(r["threads"]), data=r["data"],
                      init_from=r["init_from"], origin_id=origin.id)
            s.add(run)
            s.flush()
            known[key] = run.id
            for mrow in metrics_of.get(r["run_id"], []):
                s.add(Metric(job_id=jid, run_id=run.id, name=mrow["name"], value=float(mrow["value"]),
                             detail=mrow["detail"]))
            for p in curve_of.get(r["run_id"], []):
                s.add(CurvePoint(job_id=jid, run_id=run.id, epoch=int(p["epoch"]),
                                 **{c: float(p[c]) for c in ("train_loss", "train_top1_err", "train_top5_err",
                                                             "test_top1_err", "test_top5_err", "lr", "seconds")}))
            s.execute(update(Job).where(Job.id == jid).values(state=JobState.DONE, updated_at=utcnow(), owner=None,
                                                              failed_upstream=None))
            have[jid] = JobState.DONE
            out.runs_added += 1
    return out


def write_artifacts(bundle, directory: Path) -> int:
    """The bundle's artifact files, content-addressed under ``directory`` (checked bytes; kept if present)."""
    from ..artifacts import ArtifactStore

    store, n = ArtifactStore(Path(directory)), 0
    for sha, data in bundle.artifacts.items():
        path = store.path_of(sha)
        if path.is_file() and path.stat().st_size == len(data):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        n += 1
    return n
