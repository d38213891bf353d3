"""`repro specs check`, `repro models list/show/count`, `repro data fake`: the catalog and the models (only
`models count` writes, into the database)."""
from __future__ import annotations


import json
import sys
from pathlib import Path
from typing import Optional

import typer

from ..specs import DEFAULT_COUNTER_PROFILE, SpecError
from .common import (app, _catalog, _check_db, console, data_app, DbOpt, _emit, _examples, _fail, Format, FormatOpt,
                     models_app, _plain, specs_app, SpecsOpt, PluginsOpt, recipe_app)


@specs_app.command("check",
                   epilog=_examples("repro specs check", "repro specs check --specs-dir my-specs --format json"))
def specs_check(specs_dir: Optional[list[str]] = SpecsOpt, plugins: Optional[list[str]] = PluginsOpt,
                fmt: Format = FormatOpt()):
    """Validate every spec; one line per paper, or the first error and exit code 2.

    A cell is what reports/README.md counts in its "cells" column: an entry of a table spec that
    the paper prints as a number (or a '?' shown only graphically) or cites; a '-' the paper prints
    is not a cell, and numbers read off figure specs are counted apart."""
    from ..catalog import recipe_silences
    from ..specs import table_cells

    try:
        catalog = _catalog(specs_dir, plugins)
    except SpecError as e:
        _fail(str(e))
    for p in catalog.papers.values():
        for line in recipe_silences(p):
            print(f"warning: {line}", file=sys.stderr)
    rows = []
    for slug, p in catalog.papers.items():
        tables = [t for t in p.tables.values() if t.kind == "table"]
        entries = [c for t in tables for c in table_cells(p, t)]
        cells = [c for c in entries if _is_cell(c)]
        rows.append({"paper": slug, "spec_files": len(p.tables), "tables": len(tables),
                     "figures": len(p.tables) - len(tables), "cells": len(cells), "dashes": len(entries) - len(cells),
                     "figure_numbers": sum(len(table_cells(p, t)) for t in p.tables.values() if t.kind != "table"),
                     "uncertain": sum(1 for c in cells if c.published.uncertain), "status": "ok"})
    if fmt != Format.table:
        _emit(rows, fmt, list(rows[0]) if rows else ["paper"])
        return
    for r in rows:
        extra = "".join([f", {r['dashes']} printed as '-' (not cells)" if r["dashes"] else "",
                         f", {r['figure_numbers']} more in figures" if r["figure_numbers"] else "",
                         f", {r['uncertain']} flagged uncertain" if r["uncertain"] else ""])
        files = f"{r['spec_files']} spec file(s)" + (f" ({r['figures']} figure(s))" if r["figures"] else "")
        console.print(f"{r['paper']}: {files}, {r['cells']} published cells{extra}: ok")
    console.print(f"{len(rows)} paper(s), {sum(r['cells'] for r in rows)} cells: ok")


def _is_cell(cell) -> bool:
    """compare.py's rule: a '-' is `not-printed` unless the cell is cited (the report skips those)."""
    return bool(cell.cited) or cell.published.value != "-"


@models_app.command("list", epilog=_examples("repro models list --paper cra", "repro models list --format csv"))
def models_list(paper: Optional[str] = typer.Option(None, "--paper", metavar="PAPER",
                                                    help="only models this paper's specs use"),
                search: Optional[str] = typer.Option(None, "--search", metavar="PATTERN",
                                                     help="names matching PATTERN (a glob like '*sk*', else a "
                                                          "substring): built-ins, plugins', timm's and torchvision's"),
                specs_dir: Optional[list[str]] = SpecsOpt, plugins: Optional[list[str]] = PluginsOpt,
                fmt: Format = FormatOpt()):
    """Registered models, with the papers whose specs use each (named models first, then backbones)."""
    import repro_models as models
    from ..modelcheck import facts
    from ..specs import table_cells

    try:
        catalog = _catalog(specs_dir, plugins)
    except SpecError as e:
        _fail(str(e))
    if paper and paper not in catalog.papers:
        _fail(f"unknown paper {paper!r}; known: {', '.join(catalog.papers)}")
    used: dict[str, set[str]] = {}
    for slug, p in catalog.papers.items():
        for spec in p.tables.values():
            for cell in table_cells(p, spec):
                if "model" in cell.production:
                    used.setdefault(cell.production["model"], set()).add(slug)
    rows = []
    ecosystem = sorted(n for n in used if "/" in n)  # timm/<name>, torchvision/<name>: the ones specs use
    names = models.available() + ecosystem
    if search is not None:
        from repro_models import ecosystem as eco

        every = list(dict.fromkeys(names + [f"{lib}/{n}" for lib in eco.LIBRARIES for n in eco.names(lib)]))
        names = _matching(every, search)
        if not names:
            _fail(f"no model name matches {search!r} (built-ins, plugins, timm, torchvision)")
    for name in names:
        info = models.MODEL_INFO.get(name, {"backbone": name if "/" not in name else "", "attention": "(any)"})
        papers = sorted(used.get(name, set()))
        if paper and paper not in papers:
            continue
        rows.append({"model": name, "origin": facts().origin(name), "used by": papers,
                     "backbone": info.get("backbone") or "", "attention": info.get("attention") or ""})
    if fmt == Format.table:
        for r in rows:
            r["used by"] = ", ".join(r["used by"])
    _emit(rows, fmt, ["model", "origin", "used by", "backbone", "attention"])
    if fmt == Format.table and not paper and search is None:
        from repro_models import ecosystem as eco

        console.print(f"also by name: timm/<name> ({len(eco.names('timm'))} models), torchvision/<name> "
                      f"({len(eco.names('torchvision'))} models), never with downloaded weights")


def _matching(names: list[str], pattern: str) -> list[str]:
    """Names matching a glob (``*sk*``), or containing ``pattern`` when it has no wildcard; case-insensitive."""
    import fnmatch

    p = pattern.lower()
    if not any(ch in p for ch in "*?["):
        return [n for n in names if p in n.lower()]
    return [n for n in names if fnmatch.fnmatch(n.lower(), p) or fnmatch.fnmatch(n.lower().split("/")[-1], p)]


@models_app.command("show", epilog=_examples("repro models show se_resnet50 --input-size 1,3,224,224 --format json"))
def models_show(name: str = typer.Argument(..., metavar="MODEL", help="a name from `repro models list`"),
                num_classes: Optional[int] = typer.Option(None, "--num-classes", min=1, metavar="N",
                                                   help="classes of the last layer (a bare backbone needs it)"),
                input_size: str = typer.Option("1,3,32,32", "--input-size", metavar="N,C,H,W", help="e.g. 1,3,224,224"),
                profile: str = typer.Option(DEFAULT_COUNTER_PROFILE, "--profile", metavar="PROFILE",
                                            help="thop-2001 | thop-2004 | thop-0.1 | all (every profile and "
                                                 "parameter convention, one build)"),
                fmt: Format = FormatOpt(),
                as_json: bool = typer.Option(False, "--json", help="the same as --format json"),
                specs_dir: Optional[list[str]] = SpecsOpt, plugins: Optional[list[str]] = PluginsOpt):
    """Parameters and MACs of one model (the default profile is a paper's default, today's thop)."""
    import repro_models as models
    from ..counting import measure
    from ..plugin_loader import load_all
    from ..specs import SpecError

    try:  # with --specs-dir, the papers' own plugins too (a model a paper registers)
        _catalog(specs_dir, plugins) if specs_dir else load_all(tuple(plugins or ()))
    except SpecError as e:
        _fail(str(e))

    if not models.is_known(name):
        _fail(f"{models.registry.unknown_message(name)}; see `repro models list`")
    try:
        size = tuple(int(x) for x in input_size.split(","))
    except ValueError:
        _fail(f"--input-size {input_size!r}: expected integers like 1,3,32,32")
    from ..counting import PROFILES

    if profile != "all" and profile not in PROFILES:
        _fail(f"--profile {profile!r}: use one of {', '.join(PROFILES)} or all")
    try:
        model = models.create(name, num_classes=num_classes)
        if profile == "all":
            _show_all(name, model, size, Format.json if as_json else fmt)
            return
        c = measure(model, size, profile)
    except ValueError as e:
        _fail(str(e))
    except TypeError as e:  # a bare backbone has no default class count
        _fail(f"{name}: {e} (pass --num-classes N)" if "num_classes" in str(e) else str(e))
    d = {"model": name, "params": c.params, "params_mxnet": c.params_mxnet, "macs": c.macs, "profile": c.profile,
         "input_size": list(c.input_size), **{k: v for k, v in models.MODEL_INFO.get(name, {}).items() if v}}
    fmt = Format.json if as_json else fmt
    if fmt == Format.json:  # one object, not a list of one
        print(json.dumps({k: _plain(v) for k, v in d.items()}, indent=1))
    elif fmt == Format.csv:
        _emit([d], fmt, list(d))
    else:
        console.print(f"{name}: {c.params:,} parameters ({c.params / 1e6:.3f}M; {c.params_mxnet:,} counting BN "
                      f"running stats), {c.macs:,} MACs ({c.macs / 1e9:.3f}G) at {list(size)} [{profile}]")


def _show_all(name: str, model, size: tuple[int, ...], fmt: Format) -> None:
    """``models show --profile all``: one build, every profile's MACs and every parameter convention."""
    from ..explain import count_all

    c = count_all(model, size)
    rows = [{"model": name, "count": "macs", "way": p, "value": n} for p, n in c.macs.items()]
    rows += [{"model": name, "count": "params", "way": {"torch": "plain", "mxnet": "BN running stats counted"}[k],
              "value": n} for k, n in c.params.items()]
    if fmt != Format.table:
        _emit(rows, fmt, ["model", "count", "way", "value"])
        return
    for r in rows:
        unit = (r["value"] / 1e9, "G") if r["count"] == "macs" else (r["value"] / 1e6, "M")
        console.print(f"{name}: {r['count']:6} {r['way']:24} {r['value']:>15,}  "
                      f"({unit[0]:.3f}{unit[1]}) at {list(size)}")


@specs_app.command("explain", epilog=_examples("repro specs explain cra/table2"))
def specs_explain(target: str = typer.Argument(..., metavar="PAPER/TABLE"),
                  fmt: Format = FormatOpt(),
                  specs_dir: Optional[list[str]] = SpecsOpt, plugins: Optional[list[str]] = PluginsOpt):
    """Which counter profile and parameter convention give each printed count of a table (one build per model).

    Each MAC and parameter cell is counted every way repro knows (thop profiles; parameters plain or with BN
    running statistics, as MXNet lists them); a way matches when it rounds to the printed number."""
    from ..explain import explain_table
    from ..plan import PlanError, resolve_targets

    try:
        catalog = _catalog(specs_dir, plugins)
        (paper, table), = resolve_targets(catalog, [target])
    except (SpecError, PlanError) as e:
        _fail(str(e))
    except ValueError:
        _fail(f"{target!r}: name one table, as <paper>/<table>")
    ex = explain_table(paper, table)
    rows = [{"row": f"{c.section} / {c.row}" if c.section else c.row, "column": c.column, "metric": c.metric,
             "printed": c.printed, "model": c.model, "spec uses": c.used, "matches": c.matches,
             "spec reproduces": c.used in c.matches, **{k: v for k, v in c.counts.items()}} for c in ex.cells]
    if fmt != Format.table:
        _emit(rows, fmt, list(rows[0]) if rows else ["row"])
        return
    if not rows:
        console.print(f"{paper.slug}/{table}: no count cells (params, macs) to explain")
        return
    for r in rows:
        r["matches"] = ", ".join(r["matches"]) or "none"
        r["spec reproduces"] = "yes" if r["spec reproduces"] else "no"
    _emit(rows, fmt, ["row", "column", "printed", "model", "spec uses", "matches", "spec reproduces"])
    best = ex.suggested_profile()
    lines = []
    if best is not None:
        where = "paper.yaml" if best == ex.spec_profile else f"{table}.yaml defaults (or paper.yaml)"
        lines.append(f"counter_profile: {best}    # {where}; matches {sum(best in c.matches for c in ex.cells)} "
                     f"of {sum(c.metric == 'macs' for c in ex.cells)} MAC cell(s)")
    also = ex.suggested_also()
    if also:
        lines.append(f"also: [{', '.join(also)}]    # on the parameter column: the printed numbers count BN "
                     f"running statistics")
    for line in lines:
        console.print(f"suggested: {line}")
    console.print(f"{len(ex.cells)} count cell(s), {ex.builds} model build(s)")


@models_app.command("count", epilog=_examples("repro models count se-r cra", "repro models count table3 --paper se-r"))
def models_count(targets: list[str] = typer.Argument(..., metavar="TARGET...",
                                                     help="<paper>, <paper>/<table>, or <table> with --paper"),
                 paper: Optional[str] = typer.Option(None, "--paper", metavar="PAPER",
                                                     help="paper of bare table names"),
                 db: Optional[str] = DbOpt, specs_dir: Optional[list[str]] = SpecsOpt,
                 plugins: Optional[list[str]] = PluginsOpt):
    """Count the forward MACs of the targets' training configurations into the database (model_counts).

    `repro report` estimates the GPU-hours still needed from these counts (or from the static cells' profile
    jobs) and never builds a model itself: a configuration counted by neither is shown as unknown. Counts are
    kept per version of the model code; those already stored are not counted again."""
    from .. import estimate
    from ..db import Database, safe_url
    from ..plan import PlanError, resolve_targets

    url = _check_db(db, write=True, must_exist=False, specs_dir=specs_dir)
    try:
        catalog = _catalog(specs_dir, plugins)
        resolved = resolve_targets(catalog, targets, paper)
    except (SpecError, PlanError) as e:
        _fail(str(e))
    configs: dict[str, dict] = {}
    for p, t in resolved:
        configs.update(estimate.count_configs(p, [t]))
    database = Database(url)
    try:
        counted = estimate.store_counts(database, configs, progress=lambda i, n, model: console.print(
            f"counting {i + 1}/{n}: {model}"))
    finally:
        database.dispose()
    console.print(f"{len(configs)} training configuration(s): {counted} counted, {len(configs) - counted} "
                  f"already stored -> {safe_url(url)}")


@data_app.command("fake", epilog=_examples("repro data fake cifar100 /tmp/tiny && "
                                           "repro run se-r/table3 --budget smoke --data-dir /tmp/tiny",
                                           "repro data fake digits-png /tmp/tiny --specs-dir my-specs"))
def data_fake(dataset: str = typer.Argument(..., metavar="DATASET", help="a name from `repro data list`"),
              directory: Path = typer.Argument(..., metavar="DIRECTORY"),
              paper: Optional[str] = typer.Option(None, "--paper", metavar="PAPER",
                                                  help="the paper whose declaration to use (when several declare it)"),
              specs_dir: Optional[list[str]] = SpecsOpt, plugins: Optional[list[str]] = PluginsOpt):
    """Write a tiny dataset in the real on-disk format under DIRECTORY (any built-in, plugin or declared one)."""
    from ..data.datasets import DataError
    from ..data.fakes import write

    info = _dataset(dataset, paper, specs_dir, plugins)
    try:
        path = write(info, directory)
    except DataError as e:
        _fail(str(e))
    console.print(f"wrote a tiny {dataset} to {path} (use --data-dir {directory})")


@data_app.command("list", epilog=_examples("repro data list", "repro data list --paper toy --format json"))
def data_list(paper: Optional[str] = typer.Option(None, "--paper", metavar="PAPER",
                                                  help="the datasets this paper can name"),
              specs_dir: Optional[list[str]] = SpecsOpt, plugins: Optional[list[str]] = PluginsOpt,
              fmt: Format = FormatOpt()):
    """Datasets recipes can name: built-ins, plugins' and papers' own, with what a run needs of each."""
    from ..data import datasets

    catalog = _data_catalog(specs_dir, plugins)
    if paper and paper not in catalog.papers:
        _fail(f"unknown paper {paper!r}; known: {', '.join(catalog.papers)}")
    infos = list(datasets.registered().values())
    for slug, p in catalog.papers.items():
        if not paper or slug == paper:
            infos += [datasets.declared(name, spec, slug) for name, spec in p.spec.datasets.items()]
    rows = []
    for info in infos:
        d = info.describe()
        d["mean_std"] = ("published" if info.origin == "built-in" else "declared") if info.mean else \
            "the detector's own" if info.kind == "coco" else "computed from the training set"
        if fmt == Format.table:
            d = {**d, "image_size": "x".join(map(str, d["image_size"])) if d["image_size"] else "from files",
                 "mean": _short(d["mean"]), "std": _short(d["std"]), "train_images": d["train_images"] or "from files"}
        rows.append(d)
    _emit(rows, fmt, ["dataset", "origin", "kind", "num_classes", "image_size", "channels", "model_channels",
                      "mean_std", "mean", "std", "train_images"])


def _short(values) -> str:
    return ", ".join(f"{v:.4f}" for v in values) if values else ""


def _data_catalog(specs_dir, plugins=None):
    try:
        return _catalog(specs_dir, plugins)
    except SpecError as e:
        _fail(str(e))


def _dataset(name: str, paper: str | None, specs_dir, plugins=None):
    """A dataset by name: a built-in as is; otherwise after the catalog (its plugins, the papers' declarations)."""
    from ..data import datasets

    if name in datasets.registered() and paper is None and not plugins:
        return datasets.get(name)
    catalog = _data_catalog(specs_dir, plugins)
    if paper is not None:
        if paper not in catalog.papers:
            _fail(f"unknown paper {paper!r}; known: {', '.join(catalog.papers)}")
        try:
            return datasets.lookup(name, catalog.papers[paper].spec.datasets, paper)
        except datasets.DataError as e:
            _fail(f"{paper}: {e}")
    if name in datasets.registered():
        return datasets.get(name)
    found = {slug: p.spec.datasets[name] for slug, p in catalog.papers.items() if name in p.spec.datasets}
    if not found:
        _fail(f"unknown dataset {name!r}; see `repro data list` (declared datasets need --specs-dir of their paper)")
    if len({spec.model_dump_json() for spec in found.values()}) > 1:
        _fail(f"dataset {name!r} is declared differently by {', '.join(found)}: name one with --paper")
    slug, spec = next(iter(found.items()))
    return datasets.declared(name, spec, slug)


@app.command("new", epilog=_examples("repro new eca-net --dir ~/papers && repro specs check --specs-dir ~/papers"))
def new(paper: str = typer.Argument(..., metavar="PAPER", help="the paper's slug (its folder's name)"),
        directory: Path = typer.Option(Path("."), "--dir", metavar="DIR", help="specs folder to write into")):
    """Write a commented paper.yaml, a first table1.yaml and an empty plugin file for a new paper."""
    from ..scaffold import new_paper

    try:
        written = new_paper(paper, directory)
    except (ValueError, FileExistsError) as e:
        _fail(str(e))
    for path in written:
        console.print(f"wrote {path}")
    console.print(f"next: repro specs check --specs-dir {directory} (guide: docs/adding-a-paper.md)")


@recipe_app.command("from-timm", epilog=_examples(
    "repro recipe from-timm output/train/20240101-resnet50/args.yaml --dataset imagenet --devices 8"))
def recipe_from_timm(args_file: Path = typer.Argument(..., metavar="ARGS_YAML",
                                                      help="the args.yaml timm's train.py wrote"),
                     dataset: str = typer.Option(..., "--dataset", help="the dataset name the recipe trains on"),
                     devices: int = typer.Option(1, "--devices", min=1, help="processes of the run: timm's batch_size "
                                                 "is per process, a recipe's the global batch"),
                     name: str = typer.Option("timm", "--name", help="the recipe's name in the printed block")):
    """Print the recipe block (YAML, for paper.yaml's recipes) that a timm run's args.yaml trains with.

    Each argument maps to a field, is how the run ran (amp, workers, ...), or has no field: then one line
    names it, exit 2. timm's silent defaults are written out as values (label_smoothing 0.1, ...)."""
    import yaml

    from ..specs import Recipe
    from ..train.from_timm import TimmArgsError, recipe_from_timm as convert

    try:
        args = yaml.safe_load(args_file.read_text())
    except (OSError, yaml.YAMLError) as e:
        _fail(f"{args_file}: {str(e).splitlines()[0]}")
    if not isinstance(args, dict):
        _fail(f"{args_file}: not a timm args.yaml (expected a mapping of argument names to values)")
    try:
        recipe = convert(args, dataset, devices)
        Recipe.model_validate(recipe)
    except TimmArgsError as e:
        _fail(f"{args_file}: {e}")
    except ValueError as e:
        _fail(f"{args_file}: the converted recipe is invalid: {str(e).splitlines()[-1].strip()}")
    print(yaml.safe_dump({"recipes": {name: {"source": f"timm args.yaml: {args_file.name}", **recipe}}},
                         sort_keys=False, default_flow_style=None), end="")
