"""Where a cell's numbers came from when results travel between databases (``repro import``): per cell, the
origins that contributed (this database's own runs are ``here``; an imported run's origin is its ``--label``,
else the exporting host), and the replication check: where two origins disagree beyond their seed noise
(Welch's two-sided t-test at ``compare.ALPHA``, as the claims use, over each origin's seeds of the cell), and
the largest gap between two origins' measurements of the same job (a job is one sample in verdicts; its other
origins' numbers are ``replicas``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Iterable

from sqlalchemy import select

from .compare import ALPHA, Comparison, reported
from .db import Database
from .db.schema import Metric, OriginRow, Replica, Run

HERE = "here"


@dataclass(frozen=True)
class Disagreement:
    a: str
    b: str
    mean_a: float
    mean_b: float
    p: float


@dataclass
class CellOrigins:
    origins: list[str] = field(default_factory=list)  # who contributed, sorted (``here`` first)
    disagree: list[Disagreement] = field(default_factory=list)
    same_job_gap: float | None = None  # largest |difference| between two origins' values of one job

    @property
    def text(self) -> str:
        out = f"{len(self.origins)}: {', '.join(self.origins)}"
        if self.same_job_gap is not None:
            out += f"; same jobs differ by up to {self.same_job_gap:.3g}"
        for d in self.disagree:
            out += f"; {d.a} vs {d.b} disagree ({d.mean_a:.2f} vs {d.mean_b:.2f}, Welch p={d.p:.3f})"
        return out


def _name(label, host) -> str:
    return label or host or HERE


def job_values(db: Database, job_ids: Iterable[str]) -> dict[str, dict[str, dict[str, float]]]:
    """job -> origin name -> metric name -> value (the measurement the job holds and its replicas)."""
    ids = sorted(set(job_ids))
    out: dict[str, dict[str, dict[str, float]]] = {}
    with db.engine.connect() as conn:
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            q = (select(Metric.job_id, Metric.name, Metric.value, OriginRow.label, OriginRow.host)
                 .join(Run, Run.id == Metric.run_id).outerjoin(OriginRow, OriginRow.id == Run.origin_id)
                 .where(Metric.job_id.in_(part)))
            r = (select(Replica.job_id, Replica.name, Replica.value, OriginRow.label, OriginRow.host)
                 .join(OriginRow, OriginRow.id == Replica.origin_id).where(Replica.job_id.in_(part)))
            for jid, name, value, label, host in list(conn.execute(q)) + list(conn.execute(r)):
                origin = HERE if label is None and host is None else _name(label, host)
                out.setdefault(jid, {}).setdefault(origin, {})[name] = value
    return out


def cell_origins(db: Database, rows: list[Comparison]) -> dict[tuple, CellOrigins]:
    """(paper, table, section, row, column) -> its origins and replication check, for cells with results."""
    from scipy import stats

    values = job_values(db, (j for r in rows for j in r.jobs))
    out: dict[tuple, CellOrigins] = {}
    for r in rows:
        if not r.jobs:
            continue
        per_origin: dict[str, list[float]] = {}
        gap = None
        for jid in r.jobs:
            by_origin = {}
            for origin, metrics in values.get(jid, {}).items():
                m = reported([{"metrics": metrics}], r.metric, r.report_epoch or "final")[0]["metrics"]
                if r.metric in m:
                    by_origin[origin] = m[r.metric]
            for origin, v in by_origin.items():
                per_origin.setdefault(origin, []).append(v)
            if len(by_origin) > 1:
                spread = max(by_origin.values()) - min(by_origin.values())
                gap = spread if gap is None else max(gap, spread)
        cell = CellOrigins(sorted(per_origin, key=lambda o: (o != HERE, o)), same_job_gap=gap)
        for a, b in combinations(cell.origins, 2):
            va, vb = per_origin[a], per_origin[b]
            if len(va) < 2 or len(vb) < 2:
                continue
            p = float(stats.ttest_ind(va, vb, equal_var=False).pvalue)
            if p == p and p < ALPHA:
                cell.disagree.append(Disagreement(a, b, sum(va) / len(va), sum(vb) / len(vb), p))
        out[(r.paper, r.table, r.section, r.row, r.column)] = cell
    return out


def origin_names(db: Database) -> list[str]:
    with db.engine.connect() as conn:
        return sorted({_name(label, host) for label, host in conn.execute(select(OriginRow.label, OriginRow.host))})


class OriginView:
    """A database seen through one origin's measurements alone (``repro diff --origin LABEL``): the results
    of jobs that origin measured, its replicas standing in where another origin's run is the job's sample.
    Everything else is the database's own."""

    def __init__(self, db: Database, origin: str):
        self._db, self.origin = db, origin

    def __getattr__(self, name):
        return getattr(self._db, name)

    def results_for(self, config_keys):
        rows = self._db.results_for(config_keys)
        values = job_values(self._db, (r["job"] for r in rows))
        out = []
        for r in rows:
            mine = values.get(r["job"], {}).get(self.origin)
            if mine:
                out.append({**r, "metrics": dict(mine), "details": {k: r["details"].get(k) for k in mine}})
        return out

    def diverged_for(self, config_keys):
        return self._db.diverged_for(config_keys) if self.origin == HERE else []
