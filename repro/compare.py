"""Ours vs published, cell by cell, and the paper's claims, pair by pair.

Statuses:
- ``reproduced``: counts equal to the printed value when rounded to the printed digits;
  accuracies (full budget only) under the seed rule of :func:`seed_verdict`;
- ``differs``: a measured count that is not; an accuracy whose 95% interval excludes the tolerance band;
- ``inconclusive``: an accuracy whose seeds cannot tell (see :func:`seed_verdict`);
- ``diverged``: a job of the cell ended with a non-finite loss; never shown as a number;
- ``not-reproducible``: differs, and the spec explains why no natural construction gives it;
- ``not-comparable``: measured under a short budget (smoke, epochs-N): never a reproduction;
- ``pending``: nothing measured yet (never shown as zero);
- ``cited``: the paper quotes the row from other work; nothing to run;
- ``no-number``: measured, but the paper prints no number for it (a figure or a claim).

Claims (``better`` beats ``worse`` on a column, for one or several row pairs) are judged by
:func:`claim_verdict` on the seeds of both full-budget cells.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from .db import Database
from .expanded import ExpandedCell, ExpandedPaper, expand
from .superseded import newest_per_seed, noting_older
from .specs import METRICS, Paper, Printed
from .states import CellStatus, ClaimVerdict

CONFIDENCE = 0.95  # of the interval around a cell's mean
ALPHA = 0.05  # significance level of the claim test (two-sided Welch t-test)


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
    values: list[float] = field(default_factory=list)  # per seed, printed unit (what claims test on)
    sem: float | None = None  # standard error of the mean
    ci_low: float | None = None  # 95% Student-t interval of the mean
    ci_high: float | None = None
    tolerance: float | None = None  # accuracy points within which the mean counts as reproduced
    verdict_note: str | None = None  # why this status (standard errors away, n too small, diverged epoch)
    how: str | None = None  # how the runs ran (engine/precision[/compiled] on device): provenance, not identity
    report_epoch: str | None = None  # trained cells: the epoch judged on (final | best), from the spec
    init_from: list[dict] | None = None  # the weights its runs started from (upstream job, artifact SHA-256)
    scale: float = 1.0  # base units per printed unit (the cell's suffix, else its column's unit)
    unit_off: int | None = None  # a count that differs by 1000**unit_off: a unit left off (or wrong), likely


@dataclass(frozen=True)
class SeedStats:
    n: int
    mean: float
    std: float | None  # sample std (n - 1); None for one seed
    sem: float | None
    ci_low: float | None
    ci_high: float | None


def seed_stats(values: list[float], confidence: float = CONFIDENCE) -> SeedStats:
    """Mean, sample std, standard error and Student-t interval of the mean of ``values``."""
    n, mean = len(values), statistics.fmean(values)
    if n < 2:
        return SeedStats(n, mean, None, None, None, None)
    from scipy.special import stdtrit  # Student-t quantile (what scipy.stats.t.ppf calls), a third of the import

    std = statistics.stdev(values)
    sem = std / math.sqrt(n)
    half = float(stdtrit(n - 1, 0.5 + confidence / 2)) * sem
    return SeedStats(n, mean, std, sem, mean - half, mean + half)


# The error rate of each wrong verdict: at most VERDICT_ALPHA that a cell whose true mean lies outside the band
# is called reproduced, and at most VERDICT_ALPHA that one whose true mean lies inside it is called differs.
VERDICT_ALPHA = (1 - CONFIDENCE) / 2


def seed_verdict(s: SeedStats, published: float, tol: float, alpha: float = VERDICT_ALPHA) -> tuple[str, str]:
    """Accuracy cells at full budget, from the seeds' mean and its Student-t interval; the band is
    published ± tolerance. Symmetric: both verdicts need the same kind of evidence, the interval on one
    side of the band's edge, so each wrong verdict has the same error rate, at most 2.5%:

    - reproduced: the interval lies entirely inside the band (an equivalence test, TOST: two one-sided
      t-tests at 2.5%): at most 2.5% of cells whose true mean lies outside the band are called reproduced;
    - differs: the interval lies entirely outside the band (a one-sided t-test at 2.5% against the
      nearer edge): at most 2.5% of cells whose true mean lies inside the band are called differs;
    - inconclusive: otherwise (the interval crosses an edge of the band), or n = 1 (no seed spread).

    A fixed number of seeds (``--seeds N``) is one look: the 95% interval. A cell run with adaptive seeds
    (``--seeds MIN..MAX``) is judged at its last look with that look's share of the 2.5% (see
    :func:`stopping_rule`), so the 2.5% holds over all its looks.
    """
    if s.n < 2:
        return CellStatus.INCONCLUSIVE, (f"n = 1: {abs(s.mean - published):.2f} from the published value, "
                                        "no seed spread to judge by")
    verdict, half = interval_verdict(s.mean, s.std, s.n, published, tol, alpha)
    level = f"{100 * (1 - 2 * alpha):.4g}%"
    lo, hi = s.mean - half, s.mean + half
    if verdict == VERDICT_REPRODUCED:
        return CellStatus.REPRODUCED, f"{level} interval [{lo:.2f}, {hi:.2f}] inside published ±{tol:g}"
    if verdict == VERDICT_DIFFERS:
        away = (f"mean {abs(s.mean - published) / s.sem:.1f} standard errors from the published value" if s.sem > 0
                else f"every seed gives {s.mean:.2f}")
        return CellStatus.DIFFERS, f"{level} interval [{lo:.2f}, {hi:.2f}] outside ±{tol:g}; {away}"
    return CellStatus.INCONCLUSIVE, f"{level} interval [{lo:.2f}, {hi:.2f}] crosses an edge of published ±{tol:g}"


# interval_verdict's codes (numbers, so that the simulation in benchmarks/adaptive_seeds.py runs it on arrays)
VERDICT_INCONCLUSIVE, VERDICT_REPRODUCED, VERDICT_DIFFERS = 0, 1, 2
# stopping_rule's codes
STOP_OPEN, STOP_DECIDED, STOP_FUTILE, STOP_MAX_REACHED = 0, 1, 2, 3
# why a cell's seeds stopped (or not), as the run prints it and the report's verdict note says it
STOP_REASON = {STOP_OPEN: "open", STOP_DECIDED: "decided", STOP_FUTILE: "futile",
               STOP_MAX_REACHED: "max-reached"}


def interval_verdict(mean, std, n, published, tol, alpha=VERDICT_ALPHA):
    """The rule of :func:`seed_verdict` on numbers or numpy arrays (n >= 2): (verdict code, half-width of
    the interval), the interval at 1 - 2 * alpha (alpha: the error rate of each wrong verdict)."""
    import numpy as np
    from scipy.special import stdtrit

    n = np.asarray(n, dtype=float)
    half = stdtrit(n - 1, 1 - np.asarray(alpha, dtype=float)) * np.asarray(std, dtype=float) / np.sqrt(n)
    gap = np.abs(np.asarray(mean) - np.asarray(published))
    verdict = np.where(gap + half <= tol + 1e-9, VERDICT_REPRODUCED,
                       np.where(gap - half > tol + 1e-9, VERDICT_DIFFERS, VERDICT_INCONCLUSIVE))
    return (int(verdict), float(half)) if verdict.ndim == 0 else (verdict, half)


def look_alpha(n: int, min_seeds: int, max_seeds: int) -> float:
    """The share of VERDICT_ALPHA spent at the look at ``n`` seeds of a MIN..MAX plan (see stopping_rule)."""
    looks = max_seeds - min_seeds + 1
    if looks == 1:
        return VERDICT_ALPHA
    return VERDICT_ALPHA / 2 if n <= min_seeds else VERDICT_ALPHA / (2 * (looks - 1))


def stopping_rule(mean, std, n, published, tol, min_seeds: int, max_seeds: int):
    """Adaptive seeds (``repro run --seeds MIN..MAX``): a cell first gets MIN seeds; each time one of its
    seeds finishes it is looked at (looks at n = MIN, MIN + 1, ..., MAX: K = MAX - MIN + 1 planned looks)
    and it gets one more seed unless it stops. Each look spends a share of the 2.5% error rate of each
    wrong verdict (a weighted Bonferroni correction over the K planned looks, valid whatever look a cell
    stops at): half of it at the first look (n = MIN, the 1 - 2.5% interval), the other half shared equally
    by the K - 1 later looks (the 1 - 2.5%/(K - 1) interval; for 3..10, 99.64%). Over all its looks a cell
    whose true mean lies outside the band is called reproduced at most 2.5% of the time, and one inside it
    is called differs at most 2.5% of the time, as with a fixed number of seeds. A cell stops when:

    - decided: the look's interval lies inside or outside the band (the verdict of :func:`seed_verdict` at
      the look's error rate), so more seeds would not change it; a cell in a claim also needs each of its
      claim's pairs decided (Welch's test significant at the look's share of 5%, or futile as below);
    - futile: at the seeds' mean and std as they stand, the MAX-seed interval, widened by one current
      standard error of the mean, would still cross an edge of the band (stopping for futility makes no
      verdict, so it adds no wrong one): inconclusive;
    - MAX reached while undecided: inconclusive.

    Numbers or numpy arrays in, (stop code, verdict code) out: ``STOP_*`` and ``VERDICT_*``.
    """
    import numpy as np

    n_arr = np.asarray(n, dtype=float)
    alpha = np.where(n_arr <= min_seeds, look_alpha(min_seeds, min_seeds, max_seeds),
                     look_alpha(min_seeds + 1, min_seeds, max_seeds))
    verdict, _ = interval_verdict(mean, std, n_arr, published, tol, alpha)
    _, half_max = interval_verdict(mean, std, np.full_like(n_arr, max_seeds), published, tol,
                                   look_alpha(max_seeds, min_seeds, max_seeds))
    gap = np.abs(np.asarray(mean) - np.asarray(published))
    futile = np.abs(gap - tol) < half_max + np.asarray(std, dtype=float) / np.sqrt(n_arr)
    stop = np.where(np.asarray(verdict) != VERDICT_INCONCLUSIVE, STOP_DECIDED,
                    np.where(n_arr >= max_seeds, STOP_MAX_REACHED, np.where(futile, STOP_FUTILE, STOP_OPEN)))
    return (int(stop), verdict) if stop.ndim == 0 else (stop, verdict)


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


def compare_paper(paper: Paper | ExpandedPaper, db: Database, tables: list[str] | None = None) -> list[Comparison]:
    """Every cell of ``tables`` (default all; figure specs are not compared) against the database: two
    queries (done results, diverged jobs) whatever the number of cells."""
    cells = expand(paper).cells(tables)
    wanted = {c.config_key for c in cells if c.config_key}
    by_key: dict[str, list[dict]] = {}
    for r in db.results_for(wanted):
        by_key.setdefault(r["config_key"], []).append(r)
    older: dict[str, list[dict]] = {}  # one sample per configuration and seed (``repro.superseded``)
    for key, results in by_key.items():
        by_key[key], older[key] = newest_per_seed(results)
    diverged: dict[str, list[dict]] = {}
    for d in db.diverged_for(wanted):
        diverged.setdefault(d["config_key"], []).append(d)
    plans = db.seed_plans()  # adaptive seeds: (MIN, MAX) per configuration
    return [noting_older(_compare_cell(c, by_key.get(c.config_key, []), diverged.get(c.config_key, []),
                                       plans.get(c.config_key)), older.get(c.config_key, [])) for c in cells]


def _diverged_note(jobs: list[dict], n_done: int) -> str:
    """Built from each job's stored divergence (a database older than that column has only the words)."""
    where = [str(d["divergence"]) if d.get("divergence") else (d.get("error") or "diverged") for d in jobs]
    seeds = ", ".join(f"seed {d['seed']}: {e}" for d, e in zip(jobs, where))
    return f"{len(jobs)} of {len(jobs) + n_done} seed(s) diverged ({seeds})"


# What a code base that keeps its best checkpoint reports: the test epoch of the lowest top-1 error (its
# top-5 is that epoch's), stored by the trainer beside the final epoch's numbers.
BEST = {"top1_err": ("best_top1_err", False), "top5_err": ("best_top5_err", False),
        "top1_acc": ("best_top1_err", True), "top5_acc": ("best_top5_err", True)}


def reported(results: list[dict], metric: str, epoch: str) -> list[dict]:
    """Each result with ``metric`` as the paper reports it (``report_epoch``): the final epoch's, or the
    best epoch's; a run that stored no best-epoch number has none to judge by."""
    if epoch != "best" or metric not in BEST:
        return results
    name, accuracy = BEST[metric]
    out = []
    for r in results:
        metrics = {k: v for k, v in r["metrics"].items() if k != metric}
        if name in r["metrics"]:
            metrics[metric] = 100.0 - r["metrics"][name] if accuracy else r["metrics"][name]
        out.append({**r, "metrics": metrics})
    return out


def without_required_weights(ec: ExpandedCell, chosen: list[dict]) -> str | None:
    """Why runs of a cell whose spec starts from other weights (``init_from``) are not its setting: a run
    that did not record starting from them (``pretrained`` 1) trained from scratch."""
    init = ec.cell.production.get("init_from")
    if init is None:
        return None
    scratch = [r for r in chosen if r["metrics"].get("pretrained") != 1.0]
    if not scratch:
        return None
    source = f"{init.table} row {init.row!r}" if init.table else f"the file {init.file}"
    return (f"{len(scratch)} of {len(chosen)} run(s) did not start from the weights the spec requires "
            f"(init_from {source}): never judged as a reproduction")


def _compare_cell(ec: ExpandedCell, results: list[dict], diverged=(), plan: tuple[int, int] | None = None
                  ) -> Comparison:
    c = ec.cell
    printed = c.printed
    results = reported(results, c.metric, ec.report_epoch)
    base = dict(paper=c.paper, table=c.table, section=c.section, row=c.row, column=c.column, metric=c.metric,
                printed=c.published.value, published=printed.value if printed else None,
                scale=printed.scale if printed else 1.0,
                uncertain=c.published.uncertain, config_key=ec.config_key)
    empty = dict(ours=None, ours_exact=None, std=None, n=0, delta=None, detail=None, jobs=[])
    if c.cited or c.published.value == "-":
        return Comparison(**base, **empty, budget=None, status=CellStatus.CITED if c.cited else CellStatus.NOT_PRINTED,
                          reason=c.cited)
    by_budget = group_by_budget(results, c.metric)
    div_by_budget = group_by_budget([{**d, "metrics": {}} for d in diverged])
    budget = pick_budget({**div_by_budget, **by_budget})
    if budget is None:
        return Comparison(**base, **empty, budget=None, status=CellStatus.PENDING, reason=c.published.not_reproducible)
    chosen = by_budget.get(budget, [])
    if div_by_budget.get(budget):  # a diverged seed is a result: averaging the survivors would hide it
        bad = sorted(div_by_budget[budget], key=lambda d: (d["seed"] is None, d["seed"]))
        jobs = [r["job"] for r in chosen] + [d["job"] for d in bad]
        return Comparison(**{**base, **empty, "jobs": jobs}, budget=budget, status=CellStatus.DIVERGED,
                          reason=c.published.not_reproducible, verdict_note=_diverged_note(bad, len(chosen)),
                          report_epoch=ec.report_epoch, init_from=started_from(chosen + bad))
    also = {m: statistics.fmean(r["metrics"][m] for r in chosen) for m in ec.also
            if all(m in r["metrics"] for r in chosen)} or None
    values = [r["metrics"][c.metric] for r in chosen]
    s = seed_stats(values)
    exact = s.mean
    is_count = METRICS[c.metric][2]
    jobs = [r["job"] for r in chosen]
    if printed is None:  # '?': the paper shows it only in a figure or a claim
        return Comparison(**base, ours=exact, ours_exact=exact, std=s.std, n=s.n, delta=None, budget=budget,
                          status=CellStatus.NO_NUMBER, detail=chosen[0]["details"].get(c.metric), reason=None,
                          jobs=jobs, also=also, values=values, sem=s.sem, ci_low=s.ci_low, ci_high=s.ci_high,
                          how=how_ran(chosen))
    if is_count:
        return _compare_count(base, c, printed, s, budget, chosen, also)
    tol = ec.tolerance
    scratch = without_required_weights(ec, chosen)
    if budget != "full":
        status, note = CellStatus.NOT_COMPARABLE, f"{budget} budget: never compared with the paper"
    elif scratch:
        status, note = CellStatus.NOT_COMPARABLE, scratch
    elif plan is not None and s.n >= 2:  # run with adaptive seeds: judged at its last look's error rate
        lo, hi = plan
        status, note = seed_verdict(s, printed.value, tol, look_alpha(s.n, lo, hi))
        stop, _ = stopping_rule(exact, s.std, s.n, printed.value, tol, lo, hi)
        note = f"{note}; adaptive seeds {lo}..{hi}: {s.n} run, {STOP_REASON[stop]}"
        if status == CellStatus.DIFFERS and c.published.not_reproducible:
            status = CellStatus.NOT_REPRODUCIBLE
    else:
        status, note = seed_verdict(s, printed.value, tol)
        if status == CellStatus.DIFFERS and c.published.not_reproducible:
            status = CellStatus.NOT_REPRODUCIBLE
    return Comparison(**base, ours=exact, ours_exact=exact, std=s.std, n=s.n, delta=round(exact - printed.value, 6),
                      budget=budget, status=status, detail=chosen[0]["details"].get(c.metric),
                      reason=c.published.not_reproducible, jobs=jobs, also=also, values=values, sem=s.sem,
                      ci_low=s.ci_low, ci_high=s.ci_high, tolerance=tol, verdict_note=note, how=how_ran(chosen),
                      report_epoch=ec.report_epoch, init_from=started_from(chosen))


def started_from(chosen: list[dict]) -> list[dict] | None:
    """The weights each run of a cell started from (upstream job and artifact SHA-256, or a file's)."""
    found = [r["init_from"] for r in chosen if r.get("init_from")]
    return found or None


def how_ran(chosen: list[dict]) -> str | None:
    """'fast/bf16 on cuda:NVIDIA H200' for the runs of a cell (several when they differ)."""
    seen = []
    for r in chosen:
        h = r.get("how") or {}
        if not h.get("engine"):
            continue
        text = f"{h['engine']}/{h['precision']}{'/compiled' if h.get('compiled') else ''} on {h.get('device')}"
        if text not in seen:
            seen.append(text)
    return "; ".join(seen) or None


def _compare_count(base: dict, c, printed: Printed, s: SeedStats, budget: str, chosen: list[dict], also) -> Comparison:
    """Counts are exact: equal when rounded as printed, or not (seeds play no part)."""
    scale = printed.scale
    ours = printed.rounds_to(s.mean)
    if budget not in ("full", "static"):
        status = CellStatus.NOT_COMPARABLE
    elif ours == printed.value:
        status = CellStatus.REPRODUCED
    elif c.published.not_reproducible:
        status = CellStatus.NOT_REPRODUCIBLE
    else:
        status = CellStatus.DIFFERS
    return Comparison(**base, ours=ours, ours_exact=s.mean, std=s.std / scale if s.std is not None else None, n=s.n,
                      delta=round(ours - printed.value, 6), budget=budget, status=status,
                      unit_off=units_off(s.mean, printed.base) if status == CellStatus.DIFFERS else None,
                      detail=chosen[0]["details"].get(c.metric), reason=c.published.not_reproducible,
                      jobs=[r["job"] for r in chosen], also=also,
                      values=[r["metrics"][c.metric] / scale for r in chosen])


def units_off(ours: float, published: float) -> int | None:
    """k where ``ours`` is within 5% of ``published`` x 1000**k for some k != 0 (a count read in the wrong
    unit: "4.24" under a "GFLOPs" header, a column with no ``unit``); None otherwise."""
    if ours <= 0 or published <= 0:
        return None
    power = math.log10(ours / published) / 3
    k = round(power)
    return k if k != 0 and abs(ours / (published * 1000.0 ** k) - 1) <= 0.05 else None


def comparable(rows: list[Comparison]) -> list[Comparison]:
    """Cells a regression gate can check: a full-budget (or static) number beside a printed one."""
    return [r for r in rows if r.budget in ("full", "static") and r.delta is not None]


def fails_over(rows: list[Comparison], threshold: float) -> list[Comparison]:
    """Full-budget (or static) cells whose |delta| exceeds ``threshold`` in the printed unit.

    Cells the spec marks not-reproducible are known findings, not regressions: they never fail.
    """
    return [r for r in comparable(rows) if abs(r.delta) > threshold and r.status != CellStatus.NOT_REPRODUCIBLE]


# --- claims ---------------------------------------------------------------------------------

@dataclass
class PairCheck:
    better: str
    worse: str
    section: str | None
    published_gain: float | None  # in the claimed direction, printed unit: from the two published cells
    gain: float | None  # ours, same direction (positive: the claim's way)
    p: float | None  # two-sided Welch t-test
    d: float | None  # Cohen's d in the claimed direction (pooled std); None when both cells have no spread
    n_better: int
    n_worse: int
    verdict: str
    detail: str


@dataclass
class ClaimCheck:
    table: str
    text: str
    column: str
    published_gain: str | None  # as printed in the paper's text (e.g. "1.94")
    gain_of: str  # what the printed gain is of: each pair, their max ("at most"), their mean ("on average")
    pairs: list[PairCheck]
    verdict: str
    detail: str

    @property
    def better(self) -> str:
        return "; ".join(p.better for p in self.pairs)

    @property
    def worse(self) -> str:
        return "; ".join(p.worse for p in self.pairs)


def claim_verdict(better: Comparison | None, worse: Comparison | None, published_gain: float | None,
                  tol: float, alpha: float = ALPHA) -> tuple[str, str, dict]:
    """One row pair of a claim ("``better`` beats ``worse``"), on the seeds of both cells:

    - pending: a cell not measured, measured only under a short budget, diverged, or with fewer than
      2 seeds (the test needs a spread on each side); the note says which;
    - Welch's t-test (two-sided, unequal variances) on the two cells' seeds, significance p < 0.05;
      the gain is our difference of means in the claimed direction (positive: the claim's way), with
      Cohen's d (difference of means over the pooled std);
    - holds: significant in the claimed direction and our gain >= the published gain - tolerance;
    - holds, smaller: significant in the claimed direction, gain smaller than that;
    - reversed: significant the other way;
    - not significant: p >= 0.05.

    The published gain is the difference of the two published cells (the paper's own table), in the
    claimed direction; the tolerance is the cells' accuracy tolerance.
    """
    stats_out = {"gain": None, "p": None, "d": None}
    missing = [c for c in (better, worse) if c is None or c.status == CellStatus.PENDING]
    if missing:
        missing_rows = ", ".join(c.row if c else "no such cell" for c in missing)
        return ClaimVerdict.PENDING, "not measured: " + missing_rows, stats_out
    short = [c for c in (better, worse) if c.budget != "full"]
    if short:
        return ClaimVerdict.PENDING, "short budget: " + ", ".join(f"{c.row} ({c.budget})" for c in short), stats_out
    bad = [c for c in (better, worse) if c.status == CellStatus.DIVERGED]
    if bad:
        return ClaimVerdict.PENDING, "diverged: " + ", ".join(c.row for c in bad), stats_out
    few = [c for c in (better, worse) if len(c.values) < 2]
    if few:
        return ClaimVerdict.PENDING, "n < 2: " + ", ".join(f"{c.row} (n={len(c.values)})" for c in few), stats_out
    sign = 1 if METRICS[better.metric][1] else -1  # errors: lower is better
    a, b = better.values, worse.values
    gain = sign * (statistics.fmean(a) - statistics.fmean(b))
    va, vb = statistics.variance(a), statistics.variance(b)
    if va == 0 and vb == 0:  # no spread on either side: the difference is exact
        p = 0.0 if gain != 0 else 1.0
    else:
        from scipy import stats  # only once two cells have seeds to test

        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    pooled = math.sqrt(((len(a) - 1) * va + (len(b) - 1) * vb) / (len(a) + len(b) - 2))
    d = gain / pooled if pooled > 0 else None
    stats_out = {"gain": round(gain, 6), "p": p, "d": d}
    if p >= alpha:
        return ClaimVerdict.NOT_SIGNIFICANT, f"p = {p:.3g} >= {alpha}", stats_out
    if gain < 0:
        return ClaimVerdict.REVERSED, f"significant the other way (p = {p:.3g})", stats_out
    if published_gain is None or gain >= published_gain - tol - 1e-9:
        return ClaimVerdict.HOLDS, f"p = {p:.3g}", stats_out
    return ClaimVerdict.HOLDS_SMALLER, f"gain {gain:.2f} < published {published_gain:.2f} - {tol:g}", stats_out


def overall_verdict(verdicts: list[str]) -> str:
    """A claim over several pairs: reversed if any pair is; else pending if any is; else not significant
    if any is; else holds, smaller if any is; else holds (every pair must hold for "every depth")."""
    for v in (ClaimVerdict.REVERSED, ClaimVerdict.PENDING, ClaimVerdict.NOT_SIGNIFICANT, ClaimVerdict.HOLDS_SMALLER):
        if v in verdicts:
            return v
    return ClaimVerdict.HOLDS


def check_claims(paper: Paper, rows: list[Comparison]) -> list[ClaimCheck]:
    out = []
    for name, spec in paper.tables.items():
        if not spec.claims:
            continue
        cells = {(r.section, r.row, r.column): r for r in rows if r.table == name}
        if not cells:  # the table was not compared (diff of another table)
            continue
        for claim in spec.claims:
            pairs = []
            for pair in claim.all_pairs():
                sec_a, sec_b = pair.sections
                a = cells.get((sec_a, pair.better, claim.column))
                b = cells.get((sec_b, pair.worse, claim.column))
                pub = _published_gain(a, b, claim)
                tol = next((c.tolerance for c in (a, b) if c is not None and c.tolerance is not None),
                           paper.spec.tolerance)
                verdict, detail, st = claim_verdict(a, b, pub, tol)
                pairs.append(PairCheck(_label(sec_a, pair.better), _label(sec_b, pair.worse), sec_a, pub,
                                       st["gain"], st["p"], st["d"],
                                       len(a.values) if a else 0, len(b.values) if b else 0, verdict, detail))
            verdict = overall_verdict([p.verdict for p in pairs])
            detail = "; ".join(f"{n} {v}" for v, n in _tally(p.verdict for p in pairs)) + f" (of {len(pairs)} pairs)"
            out.append(ClaimCheck(name, claim.text, claim.column, claim.published_gain, claim.gain_of, pairs,
                                  verdict, detail))
    return out


def _published_gain(a: Comparison | None, b: Comparison | None, claim) -> float | None:
    """The pair's gain in the paper's own table; the text's printed gain when a cell has no number."""
    if a is not None and b is not None and a.published is not None and b.published is not None:
        sign = 1 if METRICS[a.metric][1] else -1
        return round(sign * (a.published - b.published), 6)
    if claim.published_gain is not None and claim.gain_of == "each":
        return Printed.parse(claim.published_gain).value
    return None


def _label(section: str | None, row: str) -> str:
    return f"{section} / {row}" if section else row


def _tally(verdicts) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v] = counts.get(v, 0) + 1
    return sorted(counts.items())
