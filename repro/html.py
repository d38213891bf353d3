"""The HTML report: ``reports/<paper>/index.html`` per paper and ``reports/index.html``.

Each page is self-contained (CSS, a little vanilla JS and the figures inlined as base64 PNG) so it works
from a file:// URL and offline. Tables keep the paper's layout (rows x columns, sections) with status
colours; a header click sorts the rows of each section, status checkboxes filter the cells, and every
cell expands to its provenance (jobs, runs, seeds, device, engine, precision, compiled, counter profile,
git commit and dirty flag, the assumptions in force). Jinja2 templates in ``repro/templates`` with
autoescape on: every spec and database string is escaped.

Performance (issue 8.6): the cells come from the comparisons the Markdown pass already computed, the
provenance of every job of the report is one query (:meth:`Database.provenance_for`), and the figures
are the PNG files the Markdown pass wrote (no curve is loaded twice).
"""
from __future__ import annotations

import base64
import datetime as dt
import functools
import html
from collections import Counter
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from .compare import Comparison, compare_paper
from .db import Database
from .expanded import ExpandedPaper, ExpandedTable, expand
from .specs import METRICS, Catalog, Paper, Printed, TableSpec
from .states import CellStatus

# Order of the status filters; statuses not listed here (added later) follow, in a neutral colour.
STATUS_ORDER = [CellStatus.REPRODUCED, CellStatus.DIFFERS, CellStatus.NOT_REPRODUCIBLE, CellStatus.INCONCLUSIVE,
                CellStatus.DIVERGED, CellStatus.NOT_COMPARABLE, CellStatus.PENDING, CellStatus.NO_NUMBER,
                CellStatus.CITED]
STATUS_LEGEND = {
    CellStatus.REPRODUCED: "counts equal when rounded as printed; accuracies within the paper's tolerance "
                           "(full budget)",
    CellStatus.DIFFERS: "a measured number that does not match",
    CellStatus.NOT_REPRODUCIBLE: "differs, and the spec explains why no natural construction gives it",
    CellStatus.INCONCLUSIVE: "the seeds cannot tell (too few, or too spread)",
    CellStatus.DIVERGED: "training diverged (loss nan/inf)",
    CellStatus.NOT_COMPARABLE: "measured under a short budget: never a reproduction",
    CellStatus.PENDING: "nothing measured yet (never shown as zero)",
    CellStatus.NO_NUMBER: "measured; the paper prints no number for it",
    CellStatus.CITED: "quoted by the paper from other work; nothing to run",
}


def _env() -> Environment:
    """The templates, compiled once per template source and Jinja version into the user cache dir (Jinja's
    own bytecode cache: compiling them cost every report ~0.2 s; a cache that cannot be written costs that)."""
    from jinja2 import FileSystemBytecodeCache

    from .cache import cache_dir

    cache = None
    try:
        folder = cache_dir() / "jinja"
        folder.mkdir(parents=True, exist_ok=True)
        cache = FileSystemBytecodeCache(str(folder))
    except OSError:
        pass
    return Environment(loader=PackageLoader("repro", "templates"), autoescape=select_autoescape(["html"]),
                       trim_blocks=True, lstrip_blocks=True, bytecode_cache=cache)


def _num(x: float, digits: int = 2) -> str:
    return f"{x:,.{digits}f}"


def _ours_text(r: Comparison) -> str:
    if r.ours is None:  # the status line under it says pending; never a zero
        return "—" if r.status == CellStatus.PENDING else ""
    if METRICS[r.metric][2]:  # a count: rounded as printed, with its suffix
        return Printed.parse(r.printed).show(r.ours)
    budget = "" if r.budget == "full" else f", {r.budget}"  # a short budget is said next to its number
    return f"{r.ours:.2f}" + (f" ± {r.std:.2f}" if r.std is not None else "") + f" (n={r.n}{budget})"


def _delta_text(r: Comparison) -> str:
    if r.delta is None or r.status == CellStatus.NOT_COMPARABLE:  # a short run's gap to the paper means nothing
        return ""
    return f"Δ {r.delta:+.3f}" if METRICS[r.metric][2] else f"Δ {r.delta:+.2f}"


def _esc(v) -> str:
    return html.escape(str(v))


@functools.lru_cache(maxsize=4096)
def _run_cells(status, resumed, device, engine, precision, compiled, threads, commit, dirty, host) -> str:
    """The cells of a run that repeat across a campaign's runs (same device, engine, commit, host), escaped
    once per distinct combination."""
    flag = "" if compiled is None else ("yes" if compiled else "no")
    cols = [_esc(status) + (f" (resumed at epoch {_esc(resumed)})" if resumed else ""), _esc(device or ""),
            _esc(engine or ""), _esc(precision or ""), flag, _esc(threads or ""),
            f"<code>{_esc((commit or '')[:10])}</code>" + (" dirty" if dirty else ""), _esc(host or "")]
    return "".join(f"<td>{c}</td>" for c in cols)


def _when(t) -> str:
    # an ISO timestamp has nothing to escape; anything else read from a database is escaped
    return t.isoformat(sep=" ", timespec="seconds") if isinstance(t, dt.datetime) else _esc(t or "")


def _runs_html(jobs: list[dict]) -> Markup:
    """The rows of a cell's runs table (a row per run of each job; one saying so for a job with none).

    Built here rather than in the template because a campaign's page holds tens of thousands of these
    rows and Jinja's per-attribute lookups were most of its render time; every value is escaped."""
    out = []
    for j in jobs:
        head = (f'<tr><td><code title="{_esc(j["job"])}">{_esc(j["job"][:10])}</code> '
                f'{_esc(j["budget"])}/{_esc(j["state"])}</td><td>{"" if j["seed"] is None else _esc(j["seed"])}</td>')
        if not j["runs"]:
            out.append(head + '<td colspan="10">no run recorded</td></tr>')
        for r in j["runs"]:
            cells = _run_cells(r["status"], r["resumed_from_epoch"], r["device"], r["engine"], r["precision"],
                               r["compiled"], r["threads"], r["git_commit"], bool(r["git_dirty"]), r["host"])
            out.append(f"{head}{cells}<td>{_when(r['started_at'])}</td><td>{_when(r['ended_at'])}</td></tr>")
    return Markup("\n".join(out))


def _started_from(init: list[dict] | None) -> str | None:
    """The weights a cell's runs started from: the upstream job and its artifact's SHA-256, or a file's."""
    if not init:
        return None
    return "; ".join(f"upstream job {i['job']}, artifact sha256 {i['sha256']}" if i.get("job") else
                     f"file {i.get('file')}, sha256 {i['sha256']}" for i in init)


def _recipe_assumed(paper: Paper, recipe: str | None) -> str | None:
    r = paper.spec.recipes.get(recipe) if recipe else None
    return f"recipe {recipe} assumes (the paper leaves open): {', '.join(r.assumed)}" if r and r.assumed else None


def _assumption_links(ids: list[str], anchor: str) -> Markup:
    """Links to assumptions whose texts are on the page once (``anchor``: the table's id and '-', or '' for
    the paper's): the same for every cell of a table, so built once per table, not per cell by Jinja."""
    return Markup(", ").join(Markup('<a href="#{0}assume-{1}"><code>{1}</code></a>').format(anchor, i) for i in ids)


def _facts_html(facts: list[tuple[str, object]]) -> Markup:
    return Markup("").join(Markup("<dt>{}</dt><dd>{}</dd>").format(k, v) for k, v in facts if v not in (None, ""))


def _cell_view(paper: Paper, spec: TableSpec, r: Comparison, recipe: str | None, prov: dict[str, dict],
               links: tuple[Markup, Markup]) -> dict:
    ci = (getattr(r, "ci_low", None), getattr(r, "ci_high", None))
    facts = [("budget", r.budget), ("seeds (n)", r.n if r.ours is not None and r.budget != "static" else None),
             ("counter profile / convention", r.detail),
             ("95% interval", f"{ci[0]:.2f} – {ci[1]:.2f}" if None not in ci else None),
             ("tolerance", getattr(r, "tolerance", None)), ("verdict", getattr(r, "verdict_note", None)),
             ("also measured", "; ".join(f"{m} {v:.2f}" for m, v in (r.also or {}).items()) or None),
             ("uncertain transcription", r.uncertain),
             ("cited from" if r.status == CellStatus.CITED else "why not reproducible",
                                                        r.reason),
             ("judged on", f"the {r.report_epoch} epoch" if r.report_epoch else None),
             ("started from", _started_from(r.init_from)),
             ("configuration", r.config_key)]
    jobs = [prov[j] for j in r.jobs if j in prov]
    return {"status": r.status, "ours": _ours_text(r), "published": r.printed, "delta": _delta_text(r),
            "sort": "" if r.ours is None else repr(float(r.ours)), "uncertain": bool(r.uncertain),
            "facts_html": _facts_html(facts), "jobs": jobs, "runs_html": _runs_html(jobs),
            # the assumptions' texts are on the page once (below the table, at the top): a cell links to them,
            # so a 200-cell page does not repeat every text 200 times
            "assumptions": links[0], "recipe_assumed": _recipe_assumed(paper, recipe), "paper_assumptions": links[1]}


def _table_view(paper: Paper | ExpandedPaper, table: ExpandedTable, rows: list[Comparison], prov: dict[str, dict]
                ) -> dict:
    spec = table.spec
    by_cell = {(r.section, r.row, r.column): r for r in rows}
    recipes = {(c.cell.section, c.cell.row, c.cell.column): c.recipe for c in table.cells}
    columns = [c.label for c in spec.columns]
    settings = table.settings
    links = (_assumption_links([a.id for a in spec.assumptions], f"{spec.table}-"),
             _assumption_links([a.id for a in paper.spec.assumptions], ""))
    sections: list[dict] = []
    for row in table.rows:
        if not sections or sections[-1]["name"] != row.section:
            sections.append({"name": row.section, "rows": []})
        cells = []
        for c in columns:
            r = by_cell.get((row.section, row.label, c))
            cells.append(None if r is None or r.status == CellStatus.NOT_PRINTED
                         else _cell_view(paper, spec, r, recipes.get((row.section, row.label, c)), prov, links))
        sections[-1]["rows"].append({"label": row.label, "cited": row.cited, "note": row.note,
                                     "settings": [(row.settings or {}).get(k, "") for k in settings],
                                     "cells": cells})
    return {"id": spec.table, "title": spec.title, "caption": (spec.caption or "").strip(),
            "metric_note": (spec.metric_note or "").strip(), "head": spec.sweep.label if spec.sweep else "Row",
            "settings": settings, "columns": columns, "sections": sections,
            "n_cells": sum(1 for s in sections for row in s["rows"] for c in row["cells"] if c),
            "assumptions": [(a.id, a.text.strip()) for a in spec.assumptions],
            "findings": [f.strip() for f in spec.findings]}


def _png(path: Path) -> str | None:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode() if path.is_file() else None


def _claims(paper: Paper, rows: list[Comparison]) -> list[dict]:
    from .compare import check_claims

    return [{"table": paper.tables[ch.table].title, "text": ch.text.strip(), "verdict": ch.verdict,
             "detail": ch.detail} for ch in check_claims(paper, rows)]


def _statuses(counts: Counter) -> list[tuple[str, int, str]]:
    order = STATUS_ORDER + sorted(set(counts) - set(STATUS_ORDER))
    return [(s, counts[s], STATUS_LEGEND.get(s, "")) for s in order if counts.get(s)]


def render_paper_html(env: Environment, paper: Paper | ExpandedPaper, rows: list[Comparison], prov: dict[str, dict],
                      out: Path, generated: str) -> Path:
    paper = expand(paper)
    pdir = out / paper.slug
    figdir = pdir / "figures"
    blocks = []
    for name, spec in paper.tables.items():
        if spec.kind == "figure":
            blocks.append({"figure": True, "id": name, "title": spec.title, "caption": (spec.caption or "").strip(),
                           "src": _png(figdir / f"{name}.png")})
        else:
            blocks.append(_table_view(paper, paper.table(name), [r for r in rows if r.table == name], prov))
    shown = [r for r in rows if r.status != CellStatus.NOT_PRINTED]
    page = env.get_template("paper.html").render(
        paper=paper.spec, blocks=blocks, statuses=_statuses(Counter(r.status for r in shown)),
        claims=_claims(paper, rows), overview=_png(figdir / "ours_vs_published.png"), generated=generated,
        assumptions=[(a.id, a.text.strip()) for a in paper.spec.assumptions],
        findings=[f.strip() for f in paper.spec.findings])
    pdir.mkdir(parents=True, exist_ok=True)
    path = pdir / "index.html"
    path.write_text(page)
    return path


def _as_of(db: Database) -> str:
    """When the database last changed (its latest run's end), never the clock: a page rendered again from
    an unchanged database is byte-identical."""
    from sqlalchemy import func, select

    from .db.schema import Run

    with db.engine.connect() as conn:
        last = conn.execute(select(func.max(func.coalesce(Run.ended_at, Run.started_at)))).scalar()
    if isinstance(last, str):  # SQLite returns what coalesce compared: the stored text
        last = dt.datetime.fromisoformat(last)
    return last.strftime("%Y-%m-%d %H:%M UTC") if last else "no runs yet"


def render_html(catalog: Catalog, db: Database, out: Path, summary: dict[str, list[Comparison]]) -> list[Path]:
    """Write the HTML pages of the papers in ``summary`` (their comparisons, already computed) and the
    index of every paper in the catalog."""
    env = _env()
    generated = _as_of(db)
    prov = db.provenance_for(j for rows in summary.values() for r in rows for j in r.jobs)
    written = [render_paper_html(env, catalog.papers[slug], rows, prov, out, generated)
               for slug, rows in summary.items()]
    papers, totals = [], Counter()
    for slug, paper in catalog.papers.items():
        rows = summary.get(slug)
        if rows is None:  # not rendered this time: its counts still come from the database (one query)
            rows = compare_paper(paper, db)
        counts = Counter(r.status for r in rows if r.status != CellStatus.NOT_PRINTED)
        totals.update(counts)
        papers.append({"slug": slug, "title": paper.spec.title, "authors": paper.spec.authors,
                       "page": (out / slug / "index.html").is_file(), "cells": sum(counts.values()),
                       "statuses": _statuses(counts)})
    index = out / "index.html"
    index.write_text(env.get_template("index.html").render(papers=papers, statuses=_statuses(totals),
                                                           generated=generated))
    return written + [index]


__all__ = ["render_html", "render_paper_html", "STATUS_ORDER"]
