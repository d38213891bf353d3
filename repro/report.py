"""Markdown reports and figures: every table in the paper's layout, ours beside published.

``reports/<paper>/README.md`` opens with the paper's claims scorecard and the verdict legend, then holds
each table (published | ours mean ± std (n, 95% interval, budget) | delta | status), the spec's
assumptions and findings, and links to figures; ``reports/README.md`` summarises all papers. Cells
with no measurement show as pending, never as zero; short-budget numbers are labelled with their
budget and never called reproductions. Everything that comes from a spec is escaped (HTML and table
pipes): a spec is data, never markup.
"""
from __future__ import annotations

import html
import inspect
from collections import Counter
from pathlib import Path

from .compare import (ClaimCheck, Comparison, check_claims, claim_verdict, compare_paper, overall_verdict, reported,
                      seed_verdict, stopping_rule, without_required_weights)
from .db import Database
from .expanded import ExpandedPaper, ExpandedTable, expand
from .specs import METRICS, Catalog, Paper, Printed, cell_key
from .states import CellStatus, ClaimVerdict

# How the Markdown page shows each status (what is not listed shows as its name)
STATUS_MARK = {CellStatus.NO_NUMBER: "measured (no printed number)", CellStatus.DIFFERS: "**differs**",
               CellStatus.NOT_REPRODUCIBLE: "not reproducible", CellStatus.NOT_COMPARABLE: "not comparable",
               CellStatus.DIVERGED: "**diverged**"}


def esc(text) -> str:
    """Spec text as Markdown-safe text: HTML escaped, table pipes escaped, one line."""
    if text is None:
        return ""
    return " ".join(html.escape(str(text), quote=False).replace("|", "\\|").split())


def fmt_ours(r: Comparison) -> str:
    if r.status == CellStatus.DIVERGED:
        return f"diverged ({r.budget}): {r.verdict_note}"
    if r.ours is None:
        return "pending" if r.status == CellStatus.PENDING else ""
    if METRICS[r.metric][2]:
        text = f"{Printed.parse(r.printed).show(r.ours)} ({r.ours_exact:,.0f})"
        return text if r.budget == "static" else f"{text} ({r.budget})"
    std = f" ± {r.std:.2f}" if r.std is not None else ""
    ci = f", 95% CI {r.ci_low:.2f}–{r.ci_high:.2f}" if r.ci_low is not None else ""
    also = "".join(f"; {m} {v:.2f}" for m, v in (r.also or {}).items())
    how = f"; {r.how}" if r.how else ""
    return f"{r.ours:.2f}{std} (n={r.n}{ci}, {r.budget}{also}{how})"


def _delta(r: Comparison) -> str:
    if r.delta is None or r.status == CellStatus.NOT_COMPARABLE:  # a smoke run's gap to the paper means nothing
        return ""
    return f"{r.delta:+.3f}" if METRICS[r.metric][2] else f"{r.delta:+.2f}"


def _status(r: Comparison) -> str:
    mark = STATUS_MARK.get(r.status, r.status)
    if r.status in (CellStatus.DIFFERS, CellStatus.INCONCLUSIVE) and r.verdict_note and not METRICS[r.metric][2]:
        return f"{mark}: {r.verdict_note}"
    return mark


def _table_md(table: ExpandedTable, rows: list[Comparison]) -> list[str]:
    spec = table.spec
    lines = [f"## {esc(spec.title)}", ""]
    if spec.caption:
        lines += [f"*{esc(spec.caption)}*", ""]
    if spec.metric_note:
        lines += [f"Metric: {esc(spec.metric_note)}", ""]
    by_cell = {(r.section, r.row, r.column): r for r in rows}
    columns = [c.label for c in spec.columns]
    settings = table.settings
    head = [esc(spec.sweep.label) if spec.sweep else "Row"] + [esc(k) for k in settings]
    for c in columns:
        head += [f"{esc(c)}: published", "ours", "Δ", "status"]
    section = object()
    for row in table.rows:
        if row.section != section:
            section = row.section
            if section:
                lines += ["", f"**{esc(section)}**", ""]
            lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        label = esc(row.label) + (f" — cited: {esc(row.cited)}" if row.cited else "")
        cells = [label] + [esc((row.settings or {}).get(k, "")) for k in settings]
        for c in columns:
            r = by_cell.get((row.section, row.label, c))
            if r is None:
                cells += ["", "", "", ""]
                continue
            pub = esc(r.printed) + (" ⚠" if r.uncertain else "")
            cells += [pub, esc(fmt_ours(r)) if r.status != CellStatus.CITED else "", _delta(r),
                      _status(r) if r.status != CellStatus.NOT_PRINTED else ""]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [r for r in rows if r.uncertain or r.reason and r.status in (CellStatus.NOT_REPRODUCIBLE,
                                                                         CellStatus.DIFFERS,
                                                                           CellStatus.PENDING)]
    if notes:
        lines += [""]
        for r in notes:
            if r.uncertain:
                lines.append(f"- ⚠ {esc(r.row)} / {esc(r.column)}: uncertain transcription: {esc(r.uncertain)}")
            if r.reason and r.status != CellStatus.CITED:
                lines.append(f"- {esc(r.row)} / {esc(r.column)}: not reproducible: {esc(r.reason)}")
    if spec.claims:
        lines += ["", f"Claims on this table: {len(spec.claims)}, judged in the scorecard at the top of this page."]
    if spec.assumptions:
        lines += ["", "Assumptions:"] + [f"- `{esc(a.id)}`: {esc(a.text)}" for a in spec.assumptions]
    if spec.findings:
        lines += ["", "Findings:"] + [f"- {esc(f)}" for f in spec.findings]
    return lines + [""]


def _num(x: float | None, fmt: str) -> str:
    return "" if x is None else format(x, fmt)


def claims_scorecard(checks: list[ClaimCheck]) -> list[str]:
    """One row per pair; the claim, its printed gain and its overall verdict on the claim's first row."""
    if not checks:
        return ["No relative claims are written in this paper's specs.", ""]
    lines = ["| claim | pair (better vs worse) | published gain | ours | p | d | verdict |",
             "|---|---|---|---|---|---|---|"]
    for ch in checks:
        printed = f"{esc(ch.published_gain)} as printed ({'of every pair' if ch.gain_of == 'each' else ch.gain_of})" \
            if ch.published_gain else ""
        for i, pc in enumerate(ch.pairs):
            claim = (f"“{esc(ch.text)}” ({esc(ch.table)}, {esc(ch.column)}): **{ch.verdict}** ({ch.detail})"
                     + (f"; text: {printed}" if printed else "")) if i == 0 else ""
            table_gain = _num(pc.published_gain, "+.2f") + (" (table)" if pc.published_gain is not None else "")
            ours = _num(pc.gain, "+.2f") + (f" (n={pc.n_better}/{pc.n_worse})" if pc.gain is not None else "")
            verdict = pc.verdict if pc.verdict != ClaimVerdict.PENDING else f"pending: {esc(pc.detail)}"
            lines.append(f"| {claim} | {esc(pc.better)} vs {esc(pc.worse)} | {table_gain} | {ours} | "
                         f"{_num(pc.p, '.3g')} | {_num(pc.d, '.2f')} | {verdict} |")
    return lines + [""]


def legend() -> list[str]:
    """The verdict rules, quoted from the functions that apply them (written once, in compare.py)."""
    def quote(fn) -> list[str]:
        return ["> " + line if line else ">" for line in inspect.getdoc(fn).splitlines()]

    return (["<details><summary>How verdicts are decided</summary>", "",
             "Cells (accuracy and error, full budget; counts are reproduced when equal as rounded in print, "
             "short budgets are *not comparable*, a cell with a diverged seed is *diverged*):", ""]
            + quote(seed_verdict) + ["", "Adaptive seeds (`repro run --seeds MIN..MAX`), when a cell stops:", ""]
            + quote(stopping_rule) + ["", "Claims, per row pair:", ""] + quote(claim_verdict)
            + ["", "Claims over several pairs:", ""] + quote(overall_verdict)
            + ["", "Which epoch a trained cell is judged on (the spec's `report_epoch`, paper-wide or per recipe):", ""]
            + quote(reported) + ["", "Cells whose spec starts from other weights (`init_from`):", ""]
            + quote(without_required_weights) + ["", "</details>", ""])


def _summary(rows: list[Comparison]) -> Counter:
    return Counter(r.status for r in rows if r.status != CellStatus.NOT_PRINTED)


def _shown(path: Path) -> str:
    """A spec folder as a reader finds it: relative to this checkout when inside it, else as it is."""
    from .paths import CHECKOUT

    try:
        return Path(path).resolve().relative_to(CHECKOUT).as_posix()
    except ValueError:
        return str(path)


def _source(paper) -> str:
    """How the report names the paper: a link from its ``citation`` (repro.citation), else the spec's
    ``source`` as written; never a path that depends on where the checkout lies."""
    c = paper.spec.citation
    if c is None:
        return f"Source: `{esc(paper.spec.source)}`."
    title = f"[{esc(c.title)}]({c.link})" if c.link else esc(c.title)
    return f"Paper: {title}, {esc(c.venue)}, {c.year} (`repro cite {paper.slug}`)."


def render_paper(catalog: Catalog, paper: Paper | ExpandedPaper, db: Database, out: Path, keep=None
                 ) -> tuple[Path, list[Comparison]]:
    """``keep``: a predicate on cell keys (``plan.Selection.keeps``) limiting the cells shown."""
    from . import figures

    paper = expand(paper)  # compare, the tables and the figures read one expansion
    pdir = out / paper.slug
    (pdir / "figures").mkdir(parents=True, exist_ok=True)
    rows = compare_paper(paper, db)
    if keep is not None:
        rows = [r for r in rows if keep(cell_key(r.paper, r.table, r.section, r.row, r.column))]
    s = paper.spec
    counts = _summary(rows)
    lines = [f"# {esc(s.title)}", "", f"{esc(s.authors)}. {_source(paper)} "
             f"Spec: `{esc(_shown(paper.path))}/`.", "",
             "Generated by `repro report` from the results database; do not edit by hand. Published numbers are "
             "as printed. Only full-budget runs are compared with the paper; smoke/short runs are labelled with "
             "their budget and marked *not comparable*. Counts use the counter profile named in the spec "
             f"(default `{s.counter_profile}`). ⚠ marks an uncertain transcription.", "",
             "Cells: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())), "",
             "## Claims scorecard", ""] + claims_scorecard(check_claims(paper, rows)) + legend()
    if s.findings:
        lines += ["Findings:"] + [f"- {esc(f)}" for f in s.findings] + [""]
    if s.assumptions:
        lines += ["Assumptions (paper-wide):"] + [f"- `{esc(a.id)}`: {esc(a.text)}" for a in s.assumptions] + [""]
    if s.recipes:
        from .train.describe import text as recipe_text

        lines += ["Recipes (every value training uses; *(assumed)*: the paper leaves it open and the spec chose, "
                  "*(default)*: not written in the spec, repro's default):"]
        for name, r in s.recipes.items():
            lines.append(f"- `{esc(name)}` ({esc(r.dataset)}): {esc(recipe_text(r))}")
        lines.append("")
    for name, spec in paper.tables.items():
        if keep is not None and not any(r.table == name for r in rows):
            continue
        if spec.kind == "figure":
            img = figures.curves(paper, spec, db, pdir / "figures")
            lines += [f"## {esc(spec.title)}", "", f"*{esc(spec.caption)}*", ""]
            lines += [f"![{esc(spec.title)}](figures/{img.name})" if img
                      else "No training curves measured yet (pending).", ""]
            continue
        lines += _table_md(paper.table(name), [r for r in rows if r.table == name])
    lines += _origins_md(db, rows)
    img = figures.ours_vs_published(paper, rows, pdir / "figures")
    lines += ["## Ours vs published, all cells", "",
              f"![ours vs published](figures/{img.name})" if img else "Nothing measured yet.", ""]
    path = pdir / "README.md"
    path.write_text("\n".join(lines))
    return path, rows


def _origins_md(db: Database, rows: list[Comparison]) -> list[str]:
    """Where results were imported (``repro import``): per cell, the origins that contributed and where two
    disagree beyond their seed noise (``repro.origins``). Nothing for a database of its own runs alone."""
    from .origins import cell_origins, origin_names

    if not origin_names(db):
        return []
    checks = cell_origins(db, rows)
    shown = [(r, checks[k]) for r in rows if (k := (r.paper, r.table, r.section, r.row, r.column)) in checks
             and (len(checks[k].origins) > 1 or checks[k].origins != ["here"])]
    if not shown:
        return []
    lines = ["## Replication across origins", "",
             "Cells with imported results: the origins that contributed (`here`: this database's own runs), the "
             "largest gap between two origins' measurements of the same job, and where two origins' seeds "
             "disagree (Welch's t-test, p < 0.05).", "", "| table | row | column | origins |", "|---|---|---|---|"]
    lines += [f"| {esc(r.table)} | {esc(r.row)} | {esc(r.column)} | {esc(c.text)} |" for r, c in shown]
    return lines + [""]


def render(catalog: Catalog, db: Database, out: Path, papers: list[str], keep=None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written, summary = [], {}
    for slug in papers:
        path, rows = render_paper(catalog, catalog.papers[slug], db, out, keep)
        written.append(path)
        summary[slug] = rows
    if set(papers) == set(catalog.papers) and keep is None:
        written.append(_render_index(catalog, db, out, summary))
    from .html import render_html  # the HTML pages reuse the comparisons and figures made above

    written += render_html(catalog, db, out, summary)
    return written


def _render_index(catalog: Catalog, db: Database, out: Path, summary: dict[str, list[Comparison]]) -> Path:
    from .estimate import estimate

    lines = ["# Reproduction status", "",
             "Generated by `repro report`; one line per paper. *Static* cells are parameter and MAC/FLOP counts "
             "(measured on CPU); *training* cells need runs of the paper's recipe (full budget).", "",
             "| paper | tables | cells | static reproduced | static not reproducible | static differs | "
             "training done (full) | training pending | cited | est. GPU-hours to finish |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    notes, one_seed = [], 0.0
    for slug, rows in summary.items():
        paper = catalog.papers[slug]
        static = [r for r in rows if METRICS[r.metric][0] == "profile" and r.status not in (CellStatus.NOT_PRINTED,)]
        train = [r for r in rows if METRICS[r.metric][0] != "profile"
                 and r.status not in (CellStatus.NOT_PRINTED, CellStatus.CITED)]
        c_static = Counter(r.status for r in static)
        done = sum(1 for r in train if r.budget == "full")
        pending = len(train) - done
        e = estimate(expand(paper), db)
        notes.append(f"- {slug}: {e.note}")
        one_seed += e.hours
        tables = sum(1 for t in paper.tables.values() if t.kind == "table")
        cells = sum(1 for r in rows if r.status != CellStatus.NOT_PRINTED)
        lines.append(f"| [{slug}]({slug}/README.md) | {tables} | {cells} | {c_static['reproduced']} | "
                     f"{c_static['not-reproducible']} | {c_static['differs']} | {done} | {pending} | "
                     f"{sum(1 for r in rows if r.status == 'cited')} | {e.hours_text} |")
    lines += ["", "GPU-hour estimates (measured by `repro bench` on a GPU where it has run, assumed otherwise):"]
    lines += notes + [""] + _seed_hours(one_seed)
    path = out / "README.md"
    path.write_text("\n".join(lines))
    return path


def _seed_hours(one_seed: float) -> list[str]:
    """The estimate above is one seed per pending cell; what a verdict costs under fixed and adaptive seeds."""
    if not one_seed:
        return []
    from .adaptive import SeedRange, expected_seeds

    adaptive = expected_seeds(SeedRange(3, 10))
    return [f"Seeds: the hours above are one seed per pending cell ({one_seed:,.0f} GPU-hours in all). A verdict needs "
            f"several: fixed 3 seeds ~{3 * one_seed:,.0f}, fixed 5 ~{5 * one_seed:,.0f}; adaptive `--seeds 3..10` "
            f"spends an expected {adaptive:.2f} seeds per cell (simulated over benchmarks/adaptive_seeds.py's grid): "
            f"~{adaptive * one_seed:,.0f} GPU-hours.", ""]


__all__ = ["render", "render_paper", "fmt_ours"]
