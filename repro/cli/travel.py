"""Results that travel: `repro verify` (re-measure what a database claims), `repro export` / `repro import`
(bundles of results between databases and labs) and `repro cite` (a paper's BibTeX)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..specs import SpecError
from .common import app, _catalog, _check_db, console, DbOpt, _examples, _fail, SpecsOpt, PluginsOpt


def _targets(catalog, targets: list[str] | None):
    """The (paper, table) pairs of TARGETS; every paper's tables when none is given."""
    from ..plan import PlanError, resolve_targets

    try:
        return resolve_targets(catalog, list(targets) if targets else list(catalog.papers))
    except PlanError as e:
        _fail(str(e))


def _config_keys(resolved) -> set[str]:
    from ..expanded import expand

    return {c.config_key for paper, table in resolved for c in expand(paper).cells([table]) if c.config_key}


@app.command(epilog=_examples("repro verify se-r/table1 se-r/table2", "repro verify se-r --trained 2 --data-dir /data"))
def verify(targets: list[str] = typer.Argument(None, metavar="TARGET", help="<paper> or <paper>/<table> (default: every paper)"),
           trained: int = typer.Option(0, "--trained", min=0, metavar="N",
                                       help="also re-train N trained jobs (at their own budget and seed) and check each "
                                            "lies within its cell's seed spread"),
           data_dir: Optional[str] = typer.Option(None, "--data-dir", metavar="DIR", help="datasets root for --trained"),
           device: str = typer.Option("auto", "--device", metavar="DEVICE", help="auto | cpu | cuda | cuda:N"),
           db: Optional[str] = DbOpt, specs_dir: Optional[list[str]] = SpecsOpt, plugins: Optional[list[str]] = PluginsOpt):
    """Re-measure what the database claims in a scratch database: every static job must give exactly its
    stored numbers (and --trained N re-trains N jobs). One line per drifted job and metric; exit 1 on drift.
    The database itself is only read."""
    from ..verify import verify as run_verify

    url = _check_db(db, write=False)
    try:
        catalog = _catalog(specs_dir, plugins)
    except SpecError as e:
        _fail(str(e))
    keys = _config_keys(_targets(catalog, targets))
    wopts = {"data_dir": data_dir, "device": device, "plugins": tuple(catalog.plugins)}
    result = run_verify(keys, url, trained=trained, worker_options=wopts)
    for d in result.drifts:
        got = "not measured" if d.measured is None else repr(d.measured)
        within = f" (allowed ±{d.allowed:g}: the cell's seed spread)" if d.allowed else ""
        print(f"drift: job {d.job} ({d.model}, {d.budget}{'' if d.seed is None else f', seed {d.seed}'}) "
              f"{d.metric}: database {d.claimed!r}, re-measured {got}{within}")
    for job, why in result.failed.items():
        print(f"drift: job {job} did not finish when re-run: {why}")
    parts = [f"{result.equal} equal"]
    if result.within:
        parts.append(f"{result.within} within their cell's seed spread")
    if result.drifted_jobs:
        parts.append(f"{result.drifted_jobs} drifted")
    note = (f"; {result.trained_not_rerun} trained job(s) not re-run (--trained N re-runs N)"
            if result.trained_not_rerun else "")
    console.print(f"{result.remeasured} re-measured: {', '.join(parts)}{note}")
    if not result.ok:
        raise typer.Exit(1)


@app.command(epilog=_examples("repro cite se-r", "repro cite simam --specs-dir examples/simam/specs"))
def cite(paper: str = typer.Argument(..., metavar="PAPER"), specs_dir: Optional[list[str]] = SpecsOpt,
         plugins: Optional[list[str]] = PluginsOpt):
    """Print the paper's BibTeX entry (from citation: in its paper.yaml)."""
    from ..citation import bibtex

    try:
        catalog = _catalog(specs_dir, plugins)
    except SpecError as e:
        _fail(str(e))
    if paper not in catalog.papers:
        _fail(f"unknown paper {paper!r}; known: {', '.join(catalog.papers)}")
    c = catalog.papers[paper].spec.citation
    if c is None:
        _fail(f"{paper}: paper.yaml has no citation: (title, authors, venue, year)")
    sys.stdout.write(bibtex(paper, c))
