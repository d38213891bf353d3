"""Ours vs published, cell by cell.

Statuses:
- ``reproduced``: counts equal to the printed value when rounded to the printed digits;
  accuracies (full budget only) within the paper's tolerance;
- ``differs``: a measured number that is not;
- ``not-reproducible``: differs, and the spec explains why no natural construction gives it;
- ``not-comparable``: measured under a short budget (smoke, epochs-N): never a reproduction;
- ``pending``: nothing measured yet (never shown as zero);
- ``cited``: the paper quotes the row from other work; nothing to run;
- ``no-number``: measured, but the paper prints no number for it (a figure or a claim).

Claims (``better`` beats ``worse`` on a column) are checked on full-budget means only.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from .db import Database
from .plan import cell_config, config_key
from .specs import METRICS, SCALE, Catalog, Paper, table_cells, tolerance


@dataclass
class Comparison:
    paper: str
    table: str
    section: str | None
    row: str
    column: str
    metric: str
    printed: str
    published: float | None
    ours: float | None  # in the printed unit, rounded as printed for counts
    ours_exact: float | None  # unrounded, base units (a parameter count, % error)
    std: float | None
    n: int
    delta: float | None
    budget: str | None
    status: str
    detail: str | None  # counter profile / convention of the measurement
    uncertain: str | None
    reason: str | None  # why not reproducible / cited source
    config_key: str | None
    jobs: list[str]
    also: dict[str, float] | None = None  # other metrics of the same runs the spec asks to show


def group_by_budget(results: list[dict], metric: str | None = None) -> dict[str, list[dict]]:
    """Done jobs of one configuration, by budget (only those that measured ``metric``)."""
    out: dict[str, list[dict]] = {}
    for r in results:
        if metric is None or metric in r["metrics"]:
            out.setdefault(r["budget"], []).append(r)
    return out


def pick_budget(by_budget: dict[str, list[dict]]) -> str | None:
    """The budget to show: full, else static, else the longest short budget."""
    if not by_budget:
        return None
    if "full" in by_budget:
        return "full"
    if "static" in by_budget:
        return "static"

    def length(b: str) -> int:
        return int(b.split("-")[1]) if b.startswith("epochs-") else 0

    return max(by_budget, key=lambda b: (length(b), len(by_budget[b])))


def compare_paper(catalog: Catalog, paper: Paper, db: Database, tables: list[str] | None = None) -> list[Comparison]:
    specs = [paper.tables[t] for t in (tables or paper.tables)]
    cells = [(spec, c) for spec in specs if spec.kind == "table" for c in table_cells(paper, spec)]
    keys = {}
    for spec, c in cells:
        cfg = cell_config(paper, c)
        keys[id(c)] = config_key(cfg) if cfg else None
    results = db.results_for(k for k in keys.values() if k)
    by_key: dict[str, list[dict]] = {}
    for r in results:
        by_key.setdefault(r["config_key"], []).append(r)
    out = []
    for spec, c in cells:
        out.append(_compare_cell(paper, spec, c, keys[id(c)], by_key.get(keys[id(c)], [])))
    return out


def _compare_cell(paper, spec, c, key, results) -> Comparison:
    printed = c.printed
    base = dict(paper=c.paper, table=c.table, section=c.section, row=c.row, column=c.column, metric=c.metric,
                printed=c.published.value, published=printed.value if printed else None,
                uncertain=c.published.uncertain, config_key=key)
    if c.cited or c.published.value == "-":
        return Comparison(**base, ours=None, ours_exact=None, std=None, n=0, delta=None, budget=None,
                          status="cited" if c.cited else "not-printed", detail=None, reason=c.cited, jobs=[])
    by_budget = group_by_budget(results, c.metric)
    budget = pick_budget(by_budget)
    if budget is None:
        return Comparison(**base, ours=None, ours_exact=None, std=None, n=0, delta=None, budget=None,
                          status="pending", detail=None, reason=c.published.not_reproducible, jobs=[])
    chosen = by_budget[budget]
    also_metrics = next(col.also for col in spec.columns if col.label == c.column)
    also = {m: statistics.fmean(r["metrics"][m] for r in chosen) for m in also_metrics
            if all(m in r["metrics"] for r in chosen)} or None
    values = [r["metrics"][c.metric] for r in chosen]
    exact = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else None
    is_count = METRICS[c.metric][2]
    if printed is None:  # '?': the paper shows it only in a figure or a claim
        return Comparison(**base, ours=exact, ours_exact=exact, std=std, n=len(values), delta=None, budget=budget,
                          status="no-number", detail=chosen[0]["details"].get(c.metric), reason=None,
                          jobs=[r["job"] for r in chosen], also=also)
    scale = SCALE[printed.suffix]
    if is_count:
        ours = printed.rounds_to(exact)
        match = ours == printed.value
        std_u = std / scale if std is not None else None
    else:
        ours = exact
        tol = tolerance(paper, spec, c)
        match = abs(exact - printed.value) <= tol
        std_u = std
    delta = ours - printed.value
    if budget not in ("full", "static"):
        status = "not-comparable"
    elif match:
        status = "reproduced"
    elif c.published.not_reproducible:
        status = "not-reproducible"
    else:
        status = "differs"
    return Comparison(**base, ours=ours, ours_exact=exact, std=std_u, n=len(values), delta=round(delta, 6),
                      budget=budget, status=status, detail=chosen[0]["details"].get(c.metric),
                      reason=c.published.not_reproducible, jobs=[r["job"] for r in chosen], also=also)


def fails_over(rows: list[Comparison], threshold: float) -> list[Comparison]:
    """Full-budget (or static) cells whose |delta| exceeds ``threshold`` in the printed unit.

    Cells the spec marks not-reproducible are known findings, not regressions: they never fail.
    """
    return [r for r in rows if r.budget in ("full", "static") and r.delta is not None
            and abs(r.delta) > threshold and r.status != "not-reproducible"]


@dataclass
class ClaimCheck:
    table: str
    text: str
    better: str
    worse: str
    verdict: str  # holds | does-not-hold | pending | not-comparable
    detail: str


def check_claims(paper: Paper, rows: list[Comparison]) -> list[ClaimCheck]:
    out = []
    for name, spec in paper.tables.items():
        cells = {(r.section, r.row, r.column): r for r in rows if r.table == name}
        for claim in spec.claims:
            a = cells.get((claim.section, claim.better, claim.column))
            b = cells.get((claim.section, claim.worse, claim.column))
            if a is None or b is None or a.ours is None or b.ours is None:
                verdict, detail = "pending", "not measured yet"
            elif a.budget != "full" or b.budget != "full":
                verdict, detail = "not-comparable", f"short budget ({a.budget}, {b.budget})"
            else:
                higher_better = METRICS[a.metric][1]
                holds = a.ours > b.ours if higher_better else a.ours < b.ours
                verdict = "holds" if holds else "does-not-hold"
                detail = f"{claim.better}: {a.ours:.2f} (n={a.n}) vs {claim.worse}: {b.ours:.2f} (n={b.n})"
            out.append(ClaimCheck(name, claim.text, claim.better, claim.worse, verdict, detail))
    return out
