"""Adaptive seeds (``repro run --seeds MIN..MAX``): spend seeds only on cells whose verdict is still open.

A campaign first plans MIN seeds per trained cell. Once they have run, every cell is looked at with
``compare.stopping_rule`` (the rule and its error rates are written there, once); a cell still open gets its
next seed (seed index n for a cell with n seeds done), planned like any job (same content hash as a fixed
``--seeds n+1`` run would give it) and written to the database queue, so ``--workers N`` and Slurm run it as
they run any job. Rounds repeat until no cell is open. Nothing is queued twice (a job is its hash), and a
killed campaign resumes where it stood: what it asks for depends only on the seeds done in the database.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .compare import (STOP_REASON, ALPHA, VERDICT_ALPHA, STOP_MAX_REACHED, STOP_OPEN, Comparison, check_claims,
                      compare_paper, look_alpha, stopping_rule)
from .specs import METRICS, Paper, cell_key



@dataclass(frozen=True)
class SeedRange:
    min: int
    max: int

    def __str__(self) -> str:
        return f"{self.min}..{self.max}"


def parse_seeds(text: str | int) -> int | SeedRange:
    """``5`` (a fixed number of seeds) or ``3..10`` (adaptive); ValueError says what is wrong."""
    text = str(text).strip()
    m = re.fullmatch(r"(\d+)\.\.(\d+)", text)
    if m:
        lo, hi = int(m.group(1)), int(m.group(2))
        if lo < 2:
            raise ValueError(f"{text!r}: MIN must be at least 2 (a verdict needs a seed spread)")
        if hi < lo:
            raise ValueError(f"{text!r}: MAX must be at least MIN")
        return SeedRange(lo, hi)
    if re.fullmatch(r"\d+", text) and int(text) >= 1:
        return int(text)
    raise ValueError(f"{text!r}: use N (a fixed number of seeds, >= 1) or MIN..MAX (adaptive, e.g. 3..10)")


@dataclass
class CellLook:
    """One trained cell at its latest look: seeds done, the stop code and why (STOP_REASON)."""

    key: str
    n: int
    stop: int
    claims_open: bool = False

    @property
    def reason(self) -> str:
        return "open (a claim)" if self.claims_open and self.stop != STOP_MAX_REACHED else STOP_REASON[self.stop]

    @property
    def wants_more(self) -> bool:
        return self.n and (self.stop == STOP_OPEN or (self.claims_open and self.stop != STOP_MAX_REACHED))


def _key(paper: Paper, r: Comparison) -> str:
    return cell_key(paper.slug, r.table, r.section, r.row, r.column)


def _judged(r: Comparison) -> bool:
    """A full-budget trained cell with a printed number and a verdict from its seeds."""
    return (r.budget == "full" and not METRICS[r.metric][2] and r.published is not None and r.tolerance is not None
            and r.n >= 2 and r.std is not None)


def look(paper: Paper, rows: list[Comparison], seeds: SeedRange) -> dict[str, CellLook]:
    """Every judged cell of ``rows`` looked at with the stopping rule, its claims' pairs included."""
    out: dict[str, CellLook] = {}
    for r in rows:
        if _judged(r):
            stop, _ = stopping_rule(r.ours_exact, r.std, r.n, r.published, r.tolerance, seeds.min, seeds.max)
            out[_key(paper, r)] = CellLook(_key(paper, r), r.n, stop)
    by_label = {(r.table, _label(r.section, r.row), r.column): r for r in rows}
    for check in check_claims(paper, rows):
        for pair in check.pairs:
            cells = [by_label.get((check.table, x, check.column)) for x in (pair.better, pair.worse)]
            if any(c is None or not _judged(c) for c in cells) or _pair_decided(*cells, seeds):
                continue
            for c in cells:
                if (k := _key(paper, c)) in out:
                    out[k].claims_open = True
    return out


def _label(section: str | None, row: str) -> str:
    return f"{section} / {row}" if section else row


def _pair_decided(a: Comparison, b: Comparison, seeds: SeedRange) -> bool:
    """A claim's pair is decided when Welch's test is significant at the look's share of 5% (the cells' looks
    spend alpha as stopping_rule says), or futile: at the two cells' current gain and stds, MAX seeds each
    would still leave it not significant at the last look's share."""
    from scipy import stats
    from scipy.special import stdtrit

    n = min(a.n, b.n)
    va, vb = a.std ** 2, b.std ** 2
    level = ALPHA * look_alpha(n, seeds.min, seeds.max) / VERDICT_ALPHA  # the look's share of 5%
    gain = a.ours_exact - b.ours_exact
    if va == 0 and vb == 0:
        return True
    p = float(stats.ttest_ind(a.values, b.values, equal_var=False).pvalue)
    if p < level:
        return True
    se_max = math.sqrt((va + vb) / seeds.max)
    last = ALPHA * look_alpha(seeds.max, seeds.min, seeds.max) / VERDICT_ALPHA
    critical = float(stdtrit(2 * seeds.max - 2, 1 - last / 2))
    return abs(gain) / se_max + math.sqrt((va / a.n + vb / b.n)) / se_max < critical


def wanted(targets: list[tuple[Paper, str]], db, seeds: SeedRange) -> tuple[dict[str, int], dict[str, CellLook]]:
    """Cell key -> seeds it should have now (one more than done) for each open cell below MAX; and every
    judged cell's look (for the report and the CLI)."""
    by_paper: dict[str, tuple[Paper, list[str]]] = {}
    for paper, table in targets:
        by_paper.setdefault(paper.slug, (paper, []))[1].append(table)
    looks: dict[str, CellLook] = {}
    for paper, tables in by_paper.values():
        looks.update(look(paper, compare_paper(paper, db, tables), seeds))
    more = {k: c.n + 1 for k, c in looks.items() if c.wants_more and c.n < seeds.max}
    return more, looks


@dataclass
class AdaptiveSummary:
    """What the adaptive rounds of one invocation did: seeds queued, rounds run, each judged cell's look."""

    seeds: SeedRange
    queued: int = 0  # jobs this invocation added to the queue beyond the MIN seeds
    rounds: int = 0
    looks: dict[str, CellLook] | None = None
    note: str | None = None  # why no cell was looked at (a short budget)


def run_rounds(registered, opts, events, run_once):
    """MIN seeds first (``registered``), then rounds: look at every cell, plan the next seed of each open
    one, register those jobs in the queue (a job already there is left as it is) and run what is not done,
    until no cell is open or a job failed (the next ``repro run`` retries it and goes on from there)."""
    from .campaign import CampaignPlan, register
    from .db import Database
    from .plan import plan as plan_jobs

    seeds = SeedRange(opts.seeds, opts.seeds_max)
    summary = run_once(registered, opts, events)
    info = summary.adaptive = AdaptiveSummary(seeds)
    base = registered.plan
    if base.budget != "full":
        info.note = f"{base.budget} budget: never compared with the paper, so every cell keeps its MIN seeds"
        return summary
    _record_plans(base, registered.db_url, seeds)
    while not summary.failed and not summary.detached and not registered.held_back:
        database = Database(registered.db_url)
        try:
            more, info.looks = wanted(base.targets, database, seeds)
            jobs = plan_jobs(base.catalog, base.targets, budget=base.budget, seeds=seeds.min,
                             kinds=set(opts.kinds) if opts.kinds else None, max_jobs=opts.max_jobs, cell_seeds=more)
            known = set(database.job_states(j.id for j in jobs))
        finally:
            database.dispose()
        fresh = [j for j in jobs if j.id not in known]
        round_ = register(CampaignPlan(base.catalog, base.targets, jobs, base.budget), opts)
        if not round_.todo:
            break
        info.queued += len(fresh)
        info.rounds += 1
        step = run_once(round_, opts, events)
        summary.outcomes.update(step.outcomes)
        if step.counts is not None:
            summary.counts = step.counts if summary.counts is None else summary.counts + step.counts
        summary.retried += step.retried
        summary.detached = step.detached
    return summary


def _record_plans(base, db_url: str, seeds: SeedRange) -> None:
    """The plan of every trained configuration of the campaign's tables, so that a report judges its cells
    at their last look's error rate and says why they stopped (``seed_plans``)."""
    from .db import Database
    from .expanded import expand

    keys = {c.config_key for p, t in base.targets for c in expand(p).table(t).cells
            if c.config_key and not METRICS[c.cell.metric][2]}
    database = Database(db_url)
    try:
        database.put_seed_plans({k: (seeds.min, seeds.max) for k in keys})
    finally:
        database.dispose()


def expected_seeds(seeds: SeedRange, cells: int = 4000, seed: int = 0) -> float:
    """Seeds per cell the rule spends on average over the grid of benchmarks/adaptive_seeds.py (true mean 0,
    0.5, 1, 1.5, 2 and 4 tolerances from published, seed std 0.1-0.5, tolerance 0.3-0.5), simulated."""
    import numpy as np

    rng = np.random.default_rng(seed)
    distance = np.repeat([0.0, 0.5, 1.0, 1.5, 2.0, 4.0], cells)
    tol, std = rng.uniform(0.3, 0.5, distance.size), rng.uniform(0.1, 0.5, distance.size)
    values = distance[:, None] * tol[:, None] + std[:, None] * rng.standard_normal((distance.size, seeds.max))
    used = np.full(distance.size, seeds.max)
    open_ = np.ones(distance.size, dtype=bool)
    for n in range(seeds.min, seeds.max + 1):
        stop, _ = stopping_rule(values[:, :n].mean(1), values[:, :n].std(1, ddof=1), n, 0.0, tol, seeds.min, seeds.max)
        now = open_ & (stop != STOP_OPEN)
        used[now] = n
        open_ &= ~now
    return float(used.mean())
