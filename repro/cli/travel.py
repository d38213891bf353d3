"""Results that travel: `repro verify` (re-measure what a database claims), `repro export` / `repro import`
(bundles of results between databases and labs) and `repro cite` (a paper's BibTeX)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..specs import SpecError
from .common import app, _catalog, _check_db, console, DbOpt, _device, _examples, _fail, SpecsOpt, PluginsOpt


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
def verify(targets: list[str] = typer.Argument(None, metavar="TARGET",
                                               help="<paper> or <paper>/<table> (default: every paper)"),
           trained: int = typer.Option(0, "--trained", min=0, metavar="N",
                                       help="also re-train N trained jobs (at their own budget and seed) and "
                                            "check each lies within its cell's seed spread"),
           data_dir: Optional[str] = typer.Option(None, "--data-dir", metavar="DIR",
                                                  help="datasets root for --trained"),
           device: str = typer.Option("auto", "--device", callback=_device, metavar="DEVICE",
                                      help="auto | cpu | cuda | cuda:N"),
           db: Optional[str] = DbOpt, specs_dir: Optional[list[str]] = SpecsOpt,
           plugins: Optional[list[str]] = PluginsOpt):
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


def _code_version() -> str | None:
    from .common import _version

    text = _version()
    return text.split("(git ")[1].rstrip(")") if "(git " in text else None


@app.command("export",
             epilog=_examples("repro export se-r -o se-r.zip", "repro export cra/table2 -o lab-a.zip --with-artifacts"))
def export_(targets: list[str] = typer.Argument(..., metavar="TARGET", help="<paper> or <paper>/<table>"),
            out: Path = typer.Option(..., "-o", "--out", metavar="FILE", help="the bundle to write (a zip file)"),
            with_artifacts: bool = typer.Option(False, "--with-artifacts", help="include the kept weights of the jobs"),
            db: Optional[str] = DbOpt, specs_dir: Optional[list[str]] = SpecsOpt,
            plugins: Optional[list[str]] = PluginsOpt):
    """Write the targets' results (done jobs, the runs that measured them with their provenance, metrics, curves)
    to one self-describing bundle that `repro import` merges into another database."""
    from importlib import metadata

    from .. import bundle
    from ..db import Database
    from ..db.imports import export_rows
    from ..db.migrate import HEAD

    url = _check_db(db, write=False)
    if not out.parent.is_dir():
        _fail(f"cannot write {out}: directory {out.parent} does not exist")
    try:
        catalog = _catalog(specs_dir, plugins)
    except SpecError as e:
        _fail(str(e))
    resolved = _targets(catalog, targets)
    database = Database(url, create=False)
    try:
        tables, artifact_rows = export_rows(database, _config_keys(resolved))
    finally:
        database.dispose()
    files = None
    if with_artifacts:
        files = {a["sha256"]: Path(a["path"]) for a in artifact_rows if Path(a["path"]).is_file()}
        missing = [a for a in artifact_rows if a["sha256"] not in files]
        if missing:
            print(f"warning: {len(missing)} artifact file(s) not found here, left out (first: {missing[0]['path']})",
                  file=sys.stderr)
    try:
        version = metadata.version("repro")
    except metadata.PackageNotFoundError:  # pragma: no cover
        version = "unknown"
    bundle.write(out, tables, papers=sorted({p.slug for p, _ in resolved}), schema_revision=HEAD,
                 repro_version=version, code_version=_code_version(), artifacts=files,
                 artifact_rows=[{k: a[k] for k in ("job_id", "run_id", "kind", "sha256", "size")} for a in artifact_rows
                                if files and a["sha256"] in files])
    console.print(f"exported {len(tables['jobs'])} job(s), {len(tables['runs'])} run(s), "
                  f"{len(tables['metrics'])} metric(s), {len(tables['curve_points'])} curve point(s)"
                  + (f", {len(files)} artifact(s)" if files else "") + f" -> {out}")


@app.command("import",
             epilog=_examples("repro import lab-a.zip --label lab-a",
                              "repro import lab-a.zip --db postgresql+psycopg://host/db"))
def import_(bundle_file: Path = typer.Argument(..., metavar="FILE", help="a bundle written by repro export"),
            label: Optional[str] = typer.Option(None, "--label", metavar="LABEL",
                                                help="name this origin (a lab, a cluster)"),
            artifact_dir: Optional[str] = typer.Option(None, "--artifact-dir", metavar="DIR",
                                                       help="where the bundle's artifacts go "
                                                            "(default <repo>/artifacts)"),
            db: Optional[str] = DbOpt):
    """Merge a bundle into the database: checked whole before anything is written, in one transaction;
    importing it again adds nothing. Job ids are recomputed from their definitions; runs keep their origin."""
    from .. import bundle
    from ..db import Database
    from ..db.imports import merge, write_artifacts
    from ..paths import resolve

    if label is not None and (not label.strip() or len(label) > 128 or not label.isprintable()):
        _fail("--label must be 1-128 printable characters")
    url = _check_db(db, write=True, must_exist=False)
    try:
        checked = bundle.read(bundle_file)  # before the database is opened: a bad bundle writes nothing
    except bundle.BundleError as e:
        _fail(f"{bundle_file}: {e}")
    database = Database(url)
    try:
        merged = merge(database, checked, label=label)
    finally:
        database.dispose()
    if merged.already:
        console.print(f"{bundle_file}: imported before (bundle {checked.sha256[:12]}): nothing added")
        return
    written = write_artifacts(checked, resolve("artifacts", artifact_dir)) if checked.artifacts else 0
    console.print(f"imported {bundle_file} as origin {label or checked.manifest.get('host')} "
                  f"(bundle {checked.sha256[:12]}): {merged.jobs_added} job(s), {merged.runs_added} run(s) added, "
                  f"{merged.replicas_added} replica metric(s) of jobs held already, {merged.skipped_runs} run(s) "
                  f"held already" + (f", {written} artifact file(s)" if written else ""))
