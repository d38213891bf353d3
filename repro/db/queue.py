"""The job queue and its leases: planned jobs go in once (by hash), a worker takes one with a single
conditional UPDATE (so two processes never run the same job), renews its lease by heartbeat with its
progress, and releases it with the job's new state. ``own`` is the fence every write of a job's results
passes (``repro.db.results``): a worker that lost its lease gets ``LeaseLost`` and writes nothing more.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any, Iterable

from sqlalchemy import Text, cast, select, update

from dataclasses import replace

from ..states import FINISHED, JobOutcome, JobState, Progress, waiting_state
from .connect import Store
from .schema import Job, Run, divergence_of, utcnow

NO_PROGRESS = {"progress_done": None, "progress_total": None, "progress_unit": None}


class LeaseLost(Exception):
    """This worker no longer owns the job: another worker took it over; stop writing at once."""


def own(s, job_id: str, owner: str) -> None:
    """Fencing: inside a write transaction, confirm we still hold the job, or raise ``LeaseLost``.
    The UPDATE takes the row (PostgreSQL) or database (SQLite) write lock, so nobody can take the
    job over between this check and the commit of the write that follows it."""
    hit = s.execute(update(Job).where(Job.id == job_id, Job.owner == owner, Job.state == JobState.RUNNING)
                    .values(heartbeat_at=utcnow())).rowcount
    if hit != 1:
        raise LeaseLost(f"lost the lease on job {job_id} to another worker")


def _states(s, ids) -> dict[str, JobState]:
    ids = list(ids)
    return dict(s.execute(select(Job.id, Job.state).where(Job.id.in_(ids))).all()) if ids else {}


def blocked_dependants(s, job_id: str) -> list[tuple[str, list[str]]]:
    """The blocked jobs that wait for ``job_id`` (it is in their ``upstream``), with their upstream lists: the
    database selects them (``upstream`` is a JSON list of job ids, so ``"<id>"`` in its text is exactly an
    element), not every blocked job."""
    quoted = json.dumps(job_id)  # as the JSON column spells an element
    pattern = "%" + quoted.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = s.execute(select(Job.id, Job.upstream).where(Job.state == JobState.BLOCKED,
                                                        cast(Job.upstream, Text).like(pattern, escape="\\")))
    return [(j, ups) for j, ups in rows if ups and job_id in ups]


def settle_downstream(s, job_id: str) -> None:
    """Inside the transaction that ended ``job_id``: the blocked jobs that wait for it become pending (all
    their upstream jobs done) or failed, naming it (it failed or diverged: not retried until it succeeds)."""
    for j, ups in blocked_dependants(s, job_id):
        state, failed = waiting_state(_states(s, ups), ups)
        if state != JobState.BLOCKED:
            s.execute(update(Job).where(Job.id == j, Job.state == JobState.BLOCKED)
                      .values(state=state, failed_upstream=failed, updated_at=utcnow()))
            if state == JobState.FAILED:
                settle_downstream(s, j)


class Queue(Store):
    def add_jobs(self, jobs: Iterable[dict]) -> None:
        """Insert planned jobs; jobs already known (same hash) are left as they are. A job with upstream
        jobs (``upstream``: ids, inserted before it) starts blocked until they are done."""
        with self.Session.begin() as s:
            for job in jobs:
                ups = job.get("upstream") or []
                state, failed = waiting_state(_states(s, ups), ups) if ups else (JobState.PENDING, None)
                s.execute(self._insert(Job.__table__).values(**{**job, "upstream": ups or None}, state=state,
                                                             failed_upstream=failed).on_conflict_do_nothing())

    def job_states(self, ids: Iterable[str]) -> dict[str, str]:
        ids = list(ids)
        out: dict[str, str] = {}
        with self.Session() as s:
            for i in range(0, len(ids), 500):
                for jid, state in s.execute(select(Job.id, Job.state).where(Job.id.in_(ids[i:i + 500]))):
                    out[jid] = state
        return out

    def owners(self, ids: Iterable[str]) -> dict[str, str | None]:
        """Each job's owner: the worker that holds it, or that last held it (a finished job keeps it)."""
        ids = list(ids)
        out: dict[str, str | None] = {}
        with self.engine.connect() as s:
            for i in range(0, len(ids), 500):
                out.update(s.execute(select(Job.id, Job.owner).where(Job.id.in_(ids[i:i + 500]))).all())
        return out

    def get_job(self, job_id: str) -> Job | None:
        with self.Session() as s:
            return s.get(Job, job_id)

    def reset_failed(self, ids: Iterable[str], diverged: bool = False) -> int:
        """Make failed jobs claimable again (a new ``repro run`` retries what failed before); diverged
        jobs only when asked (``--retry-failed``): a diverged loss is a result of the recipe. A job that
        waits for upstream jobs goes back to blocked (or stays failed while one of them still is)."""
        ids = list(ids)
        states = [JobState.FAILED, JobState.DIVERGED] if diverged else [JobState.FAILED]
        n = 0
        with self.Session.begin() as s:
            rows = []
            for i in range(0, len(ids), 500):
                rows += s.execute(select(Job.id, Job.upstream).where(Job.id.in_(ids[i:i + 500]),
                                                                     Job.state.in_(states))).all()
            for jid, ups in rows:  # upstream first: a retried upstream is pending when its downstream looks
                if not ups:
                    n += s.execute(update(Job).where(Job.id == jid).values(
                        state=JobState.PENDING, owner=None, failed_upstream=None)).rowcount
            for jid, ups in rows:
                if ups:
                    state, failed = waiting_state(_states(s, ups), ups)
                    if state == JobState.FAILED and failed in {j for j, _ in rows}:
                        state, failed = JobState.BLOCKED, None  # its upstream is retried in this same call
                    n += state != JobState.FAILED
                    s.execute(update(Job).where(Job.id == jid).values(state=state, owner=None,
                                                                       failed_upstream=failed))
        return n

    def claim(self, job_id: str, owner: str, stale_before: dt.datetime) -> bool:
        """Atomically take a job: pending, or running under an owner whose lease went stale."""
        now = utcnow()
        with self.Session.begin() as s:
            res = s.execute(update(Job).where(Job.id == job_id).where(
                (Job.state == JobState.PENDING) | ((Job.state == JobState.RUNNING) & (Job.heartbeat_at < stale_before))
            ).values(state=JobState.RUNNING, owner=owner, heartbeat_at=now, updated_at=now))
            return res.rowcount == 1

    def reclaim_dead(self, job_id: str, dead_owner: str, owner: str) -> bool:
        """Take over a running job whose owner (same host) is known to be dead."""
        now = utcnow()
        with self.Session.begin() as s:
            res = s.execute(update(Job).where(Job.id == job_id, Job.state == JobState.RUNNING, Job.owner == dead_owner)
                            .values(owner=owner, heartbeat_at=now, updated_at=now))
            return res.rowcount == 1

    def heartbeat(self, job_id: str, owner: str, progress: Progress | None = None) -> bool:
        """Refresh the lease; False when the job is no longer ours (another worker took it over)."""
        values: dict[str, Any] = {"heartbeat_at": utcnow()}
        if progress is not None:
            values.update(progress_done=progress.done, progress_total=progress.total, progress_unit=progress.unit)
        with self.Session.begin() as s:
            return s.execute(update(Job).where(Job.id == job_id, Job.owner == owner, Job.state == JobState.RUNNING)
                             .values(**values)).rowcount == 1

    def holds(self, job_id: str, owner: str) -> bool:
        """Whether ``owner`` still holds the job (running, and its owner): a read, no lease renewal."""
        with self.engine.connect() as s:
            return s.execute(select(Job.id).where(Job.id == job_id, Job.owner == owner,
                                                  Job.state == JobState.RUNNING)).first() is not None

    def finish_job(self, job_id: str, owner: str, state: JobState) -> bool:
        """Release a job we own with its new state; False when it is no longer ours. A failed job fails the
        jobs that wait for it."""
        with self.Session.begin() as s:
            mine = s.execute(update(Job).where(Job.id == job_id, Job.owner == owner)
                             .values(state=state, updated_at=utcnow(), **NO_PROGRESS)).rowcount == 1
            if mine and state == JobState.FAILED:
                settle_downstream(s, job_id)
            return mine

    def outcomes(self, ids: Iterable[str]) -> dict[str, JobOutcome]:
        """Each job's state with why its latest attempt ended as it did: the error of a failure, where a
        divergence happened, the upstream job that failed it unrun (what executors summarise, typed)."""
        ids = list(ids)
        out: dict[str, JobOutcome] = {}
        cols = (Job.id, Job.state, Job.failed_upstream, Run.error, Run.diverged_value, Run.diverged_unit,
                Run.diverged_at, Run.diverged_lr)
        with self.engine.connect() as s:
            for i in range(0, len(ids), 500):
                q = (select(*cols).outerjoin(Run, Run.job_id == Job.id).where(Job.id.in_(ids[i:i + 500]))
                     .order_by(Job.id, Run.id))
                for jid, state, failed_upstream, error, *at in s.execute(q):
                    old = out.get(jid)
                    # ordered by run id: the latest attempt that says something wins
                    divergence = divergence_of(*at) or (old.divergence if old else None)
                    error = error or (old.error if old else None)
                    upstream = failed_upstream if state == JobState.FAILED else None
                    out[jid] = JobOutcome(jid, state, error=None if divergence or upstream else error,
                                          divergence=divergence if state == JobState.DIVERGED else None,
                                          upstream=upstream,
                                          unfinished=state not in FINISHED)
            ups = {o.upstream for o in out.values() if o.upstream}
            if ups:
                up_states = _states(s, ups)
                out = {j: (replace(o, upstream_state=up_states.get(o.upstream)) if o.upstream else o)
                       for j, o in out.items()}
        return out
