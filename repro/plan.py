"""Expand table specs into jobs.

A job is the fully resolved description of one unit of work (sorted JSON). Its identity is
the SHA-256 of that JSON, so a cell that several tables share (SE-ResNet50 is in se-r Tables
3, 4, 8, 10 and 11) is one job, and a finished job is never run twice. ``config_key`` is the
hash without budget and seed: the configuration a published cell points at.

Budgets are part of the job: ``full`` is the paper's recipe; ``smoke`` trains for 2 epochs on
a few hundred images to exercise the pipeline on a CPU; ``epochs-N`` shortens the schedule to
N epochs, scaling its milestones. Only ``full`` results are ever compared to the paper.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from dataclasses import dataclass, field

from .modelcheck import facts
from .data import datasets
from .specs import METRICS, Catalog, CellSpec, JobRecipe, Paper, recipe_identity, table_cells

TRAIN_DEFAULTS = {"aux_loss_weights": []}
SMOKE = {"epochs": 2, "train_images": 256, "test_images": 256, "iterations": 4}
# All four papers at full budget plan ~300 jobs; a plan 15x that is a typo (--seeds 10000) or a runaway
# sweep, and writing it to the database would take minutes. ``repro run --max-jobs N`` raises it.
from .options import MAX_JOBS  # noqa: E402, F401  (re-exported here, next to its reason; defined with the options)


class PlanError(Exception):
    """A target or option that does not name anything; reported as one line. ``option`` names the
    campaign option at fault (a caller names it its own way: the CLI as its flag)."""

    def __init__(self, message: str, option: str | None = None):
        super().__init__(f"{option} {message}" if option else message)
        self.option, self.message = option, message


def job_hash(obj: dict) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def parse_budget(budget: str, epochs: int | None) -> str:
    if epochs is not None:
        if epochs < 1:
            raise PlanError("must be >= 1", "epochs")
        return f"epochs-{epochs}"
    if budget not in ("full", "smoke") and not re.fullmatch(r"epochs-\d+", budget):
        raise PlanError(f"{budget!r} is unknown: use full, smoke or epochs-N", "budget")
    return budget


def apply_budget(recipe: JobRecipe, budget: str) -> JobRecipe:
    """The recipe a budget actually runs: schedule lengths scaled, data subset for smoke."""
    if budget == "full":
        return recipe
    n = int(budget.split("-")[1]) if budget.startswith("epochs-") else None
    if recipe.iterations:
        n = n or SMOKE["iterations"]
        scale = n / recipe.iterations
        changes = {"iterations": n, "warmup_iterations": min(recipe.warmup_iterations, max(n // 4, 0))}
        if budget == "smoke":  # small images and batches; CRA's <7,7> needs 7x7 stage-4 maps (>= 224 px)
            changes.update(min_size=224, batch_size=min(recipe.batch_size, 2))
    else:
        n = n or SMOKE["epochs"]
        scale = n / recipe.total_epochs
        cooldown = min(round(recipe.cooldown_epochs * scale), max(n - 1, 0))
        epochs = max(n - cooldown - round(recipe.mixup_extra_epochs * scale), 1)
        changes = {"epochs": epochs, "mixup_extra_epochs": n - cooldown - epochs, "cooldown_epochs": cooldown,
                   "warmup_epochs": min(recipe.warmup_epochs, 1.0 if n > 1 else 0.0)}
        if recipe.decay_every is not None:  # exponential decay keeps its number of decays
            changes["decay_every"] = recipe.decay_every * scale
    changes["milestones"] = sorted({max(1, round(m * scale)) for m in recipe.milestones})
    if budget == "smoke":
        changes.update(train_images=SMOKE["train_images"], test_images=SMOKE["test_images"])
    return JobRecipe.model_validate({**recipe.model_dump(), **changes})


@dataclass
class PlannedJob:
    id: str
    config_key: str
    kind: str
    model: str
    budget: str
    seed: int | None
    spec: dict
    cells: list[str] = field(default_factory=list)
    upstream: list[str] = field(default_factory=list)  # jobs whose weights this one starts from

    def row(self) -> dict:
        return {"id": self.id, "config_key": self.config_key, "kind": self.kind, "model": self.model,
                "budget": self.budget, "seed": self.seed, "spec": self.spec}


def cell_config(paper: Paper, cell: CellSpec) -> dict | None:
    """The budget- and seed-free configuration that produces ``cell`` (None: nothing to run)."""
    if cell.cited or cell.published.value == "-":
        return None
    prod = cell.production
    kind = METRICS[cell.metric][0]
    recipe = paper.spec.recipes[prod["recipe"]] if "recipe" in prod else None
    dataset = prod.get("dataset") or recipe.dataset
    info = datasets.lookup(dataset, paper.spec.datasets, paper.slug)  # the paper's declaration, else the registry
    kwargs = facts().resolve(prod["model"], {"num_classes": info.num_classes, **prod.get("model_kwargs", {})})
    # code from outside this repository is part of the job: an edited plugin or another timm is a new job
    source = model_source(prod["model"], kwargs)
    if kind == "profile":
        profile = prod.get("counter_profile", paper.spec.counter_profile)
        input_size = prod.get("input_size") or info.input_size  # the catalog checked that one is known
        return {"kind": "profile", "model": prod["model"], "model_kwargs": kwargs,
                "input_size": list(input_size), "counter_profile": profile, **source}
    if info.origin.startswith("plugin "):  # a plugin's dataset code is part of the job as its model code is
        from .plugin_loader import fingerprint_of

        source = {"source": {**source.get("source", {}), "dataset": f"{info.origin} {fingerprint_of(info.origin)}"}}
    config = {"kind": kind, "model": prod["model"], "model_kwargs": kwargs,
              **datasets.job_fields(dataset, paper.spec.datasets),
              "recipe": {"name": prod["recipe"], **recipe_identity(recipe)},
              "train": {**TRAIN_DEFAULTS, **(prod.get("train") or {})}, **source}
    init = prod.get("init_from")
    if init is not None:  # what the weights start from is part of the configuration
        config["init_from"] = ({"sha256": init.sha256, "into": init.into} if init.file else
                               {"config": config_key(cell_config(paper, upstream_cell(paper, cell))),
                                "into": init.into})
    return config


def upstream_cell(paper: Paper, cell: CellSpec, _seen: tuple = ()) -> CellSpec:
    """The trained cell of the same paper whose job's final weights ``cell`` starts from (its
    ``init_from: {table, row}``); every trained column of that row must share one configuration, else the
    spec names the column."""
    init = cell.production["init_from"]
    target = (init.table, init.section, init.row, init.column)  # many cells of a row name one upstream
    if target in paper._upstream:
        return paper._upstream[target]
    where = f"{paper.path / (cell.table + '.yaml')}: {cell.row!r} / {cell.column!r}: init_from"
    if (cell.table, cell.row, cell.column) in _seen:
        raise PlanError(f"{where}: a cycle of init_from")
    if init.table not in paper.tables:
        raise PlanError(f"{where}: no table {init.table!r} in {paper.slug}")
    cells = [c for c in table_cells(paper, paper.tables[init.table])
             if c.row == init.row and c.section == init.section and (init.column in (None, c.column))
             and METRICS[c.metric][0] != "profile" and not c.cited and c.published.value != "-"]
    if not cells:
        raise PlanError(f"{where}: no trained cell in {init.table} row {init.row!r}"
                        + (f" column {init.column!r}" if init.column else ""))
    for c in cells:
        if c.production.get("init_from") is not None and c.production["init_from"].table:
            upstream_cell(paper, c, (*_seen, (cell.table, cell.row, cell.column)))  # cycles fail here
    if len({config_key(cell_config(paper, c)) for c in cells}) > 1:
        raise PlanError(f"{where}: row {init.row!r} of {init.table} trains several configurations; name the "
                        f"column")
    paper._upstream[target] = cells[0]  # kept on the loaded paper (read-only once loaded)
    return cells[0]


def model_source(model: str, kwargs: dict) -> dict:
    """``{"source": {...}}`` naming the code a model comes from when it is not this repository's: the
    library and its version (timm/torchvision), the plugin file's SHA-256 (a plugin model, backbone or
    attention); ``{}`` for built-in code, so built-in jobs keep their identity."""
    from .plugin_loader import fingerprint_of

    f = facts()
    origin, parts = f.origin(model), {}
    if origin in ("timm", "torchvision"):
        from importlib import metadata

        parts["library"] = f"{origin}=={metadata.version(origin)}"
    elif origin.startswith("plugin "):
        parts["model"] = f"{origin} {fingerprint_of(origin)}"
    # an attention named for a backbone of ours (attention: x) or plugged into a library's (repro_attention: x)
    names = [kwargs.get("attention")] + _plugged_attentions(kwargs)
    for attention in names:
        if isinstance(attention, str) and (a := f.attention_origin(attention)).startswith("plugin "):
            parts["attention"] = f"{a} {fingerprint_of(a)}"
    return {"source": parts} if parts else {}


def config_key(config: dict) -> str:
    return job_hash(config)


def upstream_configs(catalog: Catalog) -> dict[str, str]:
    """The configurations whose weights a cell of the catalog starts from (``init_from: {table, row}``):
    config key -> the first such cell."""
    out: dict[str, str] = {}
    for paper in catalog.papers.values():
        for spec in paper.tables.values():
            for cell in table_cells(paper, spec):
                init = cell.production.get("init_from")
                if init is not None and init.table is not None:
                    key = config_key(cell_config(paper, upstream_cell(paper, cell)))
                    out.setdefault(key, cell.key)
    return out


def _plugged_attentions(value) -> list[str]:
    """Attentions a library model's options plug in (``{repro_attention: x}`` at any depth)."""
    if isinstance(value, dict):
        if "repro_attention" in value:
            return [value["repro_attention"]]
        return [a for v in value.values() for a in _plugged_attentions(v)]
    return []


def target_papers(targets: list[str], paper: str | None, folders: dict[str, Path]) -> set[str]:
    """The papers whose specs ``resolve_targets`` will read (a bare table name: every paper with a spec file
    of that name), found from folder and file names (``catalog.paper_folders``) without parsing a spec."""
    out = {paper} if paper else set()
    for t in targets:
        if "/" in t or t in folders:
            out.add(t.split("/", 1)[0])
        elif not paper:
            out |= {slug for slug, d in folders.items() if (d / f"{t}.yaml").is_file()}
    return out


@dataclass(frozen=True)
class Selection:
    """What a command's targets select: whole tables, and within them the cells of the rows and model asked
    for (``cells`` None: every cell of the tables)."""

    tables: list[tuple[Paper, str]]
    cells: frozenset[str] | None = None  # ``CellSpec.key`` of each selected cell

    def keeps(self, key: str) -> bool:
        return self.cells is None or key in self.cells


def row_label(cell: CellSpec) -> str:
    """A row as a target names it: its label, or ``section / label`` in a table whose labels repeat."""
    return f"{cell.section} / {cell.row}" if cell.section else cell.row


def select(catalog: Catalog, targets: list[str], paper: str | None = None, model: str | None = None) -> Selection:
    """``resolve_targets`` plus rows and a model: ``se-r/table3/SE-ResNet-110`` (a row label, or ``section /
    label``; several rows of one label across sections are all selected) and ``model`` (the cells whose
    production names it). An unknown row or model is a ``PlanError`` listing the known ones."""
    rows: dict[tuple[str, str], set[str]] = {}  # (paper, table) -> the rows named
    plain = []
    for t in targets:
        parts = t.split("/", 2)
        if len(parts) == 3:
            rows.setdefault((parts[0], parts[1]), set()).add(parts[2])
        plain.append("/".join(parts[:2]))
    tables = resolve_targets(catalog, plain, paper)
    if not rows and model is None:
        return Selection(tables)
    whole = {(p.slug, tbl) for t in targets if t.count("/") < 2 for p, tbl in resolve_targets(catalog, [t], paper)}
    if not targets:
        whole = {(p.slug, tbl) for p, tbl in tables}
    keys, models = set(), set()
    for p, table in tables:
        wanted = None if (p.slug, table) in whole else rows.get((p.slug, table))
        cells = table_cells(p, p.tables[table])
        if wanted:
            unknown = sorted(wanted - ({row_label(c) for c in cells} | {c.row for c in cells}))
            if unknown:
                listed = list(dict.fromkeys(row_label(c) for c in cells))
                raise PlanError(f"unknown row {unknown[0]!r} in {p.slug}/{table}; known: {', '.join(listed)}")
        for c in cells:
            if wanted and c.row not in wanted and row_label(c) not in wanted:
                continue
            models.add(c.production.get("model"))
            if model is None or c.production.get("model") == model:
                keys.add(c.key)
    if model is not None and not keys:
        raise PlanError(f"--model {model!r}: no selected cell uses it; models there: "
                        f"{', '.join(sorted(m for m in models if m))}")
    return Selection(tables, frozenset(keys))


def resolve_targets(catalog: Catalog, targets: list[str], paper: str | None = None) -> list[tuple[Paper, str]]:
    """``se-r/table3``, ``se-r`` (every table), or ``table3 --paper se-r``."""
    out: list[tuple[Paper, str]] = []
    if not targets and paper:
        targets = [paper]
        paper = None
    if not targets:
        raise PlanError("name at least one target: <paper>, <paper>/<table>, or a table of the given paper")
    for t in targets:
        if t.count("/") > 1:
            raise PlanError(f"{t!r}: a row target selects cells; name <paper>/<table> here")
        if "/" in t:
            p, tbl = t.split("/", 1)
            if p not in catalog.papers:
                raise PlanError(f"unknown paper {p!r}; known: {', '.join(catalog.folders or catalog.papers)}")
            if tbl not in catalog.papers[p].tables:
                raise PlanError(f"unknown table {tbl!r} in {p}; known: {', '.join(catalog.papers[p].tables)}")
            out.append((catalog.papers[p], tbl))
        elif t in catalog.papers and paper is None:
            out.extend((catalog.papers[t], tbl) for tbl in catalog.papers[t].tables)
        else:
            if paper is not None:
                if paper not in catalog.papers:
                    raise PlanError(f"unknown paper {paper!r}; known: {', '.join(catalog.folders or catalog.papers)}")
                if t not in catalog.papers[paper].tables:
                    raise PlanError(f"unknown table {t!r} in {paper}")
                out.append((catalog.papers[paper], t))
                continue
            hits = [p for p in catalog.papers.values() if t in p.tables]
            if not hits:
                raise PlanError(f"unknown target {t!r}: not a paper, and no paper has a table of that name")
            if len(hits) > 1:
                cands = ", ".join(f"{p.slug}/{t}" for p in hits)
                raise PlanError(f"table {t!r} exists in several papers: {cands} (name it <paper>/<table>)")
            out.append((hits[0], t))
    seen, unique = set(), []
    for p, t in out:
        if (p.slug, t) not in seen:
            seen.add((p.slug, t))
            unique.append((p, t))
    return unique


def plan(catalog: Catalog, targets: list[tuple[Paper, str]], budget: str = "full", seeds: int = 1,
         kinds: set[str] | None = None, max_jobs: int = MAX_JOBS, cells: frozenset[str] | None = None,
         cell_seeds: dict[str, int] | None = None) -> list[PlannedJob]:
    """Distinct jobs for the targets, in a stable order (profiles first, then by model); ``cells``: only
    these cells' jobs (``Selection.cells``), with the upstream jobs they start from. ``cell_seeds``: cell
    key -> seeds of that cell, where it needs more than ``seeds`` (adaptive seeds).

    Stops as soon as the plan would exceed ``max_jobs`` distinct jobs, so ``--seeds 10**9`` answers at once."""
    if seeds < 1:
        raise PlanError("must be >= 1", "seeds")
    if max_jobs < 1:
        raise PlanError("must be >= 1", "max_jobs")
    jobs: dict[str, PlannedJob] = {}

    def add(paper: Paper, table: str, cell: CellSpec, config: dict, seed: int | None) -> PlannedJob:
        """The job of ``cell`` at this budget and seed (its upstream job first: seed s starts from the
        upstream's seed s, at the same budget)."""
        resolved, b = (config, "static") if config["kind"] == "profile" else (
            {**config, "recipe": recipe_for(config), "budget": budget, "seed": seed}, budget)
        upstream = []
        init = config.get("init_from")
        if init is not None and "config" in init:
            up_cell = upstream_cell(paper, cell)
            up = add(paper, up_cell.table, up_cell, cell_config(paper, up_cell), seed)
            if up_cell.key not in up.cells:
                up.cells.append(up_cell.key)
            resolved = {**resolved, "init_from": {**init, "job": up.id}}
            upstream = [up.id]
        elif init is not None:  # local weights: the file's path travels with the job, its hash is identity
            file = Path(cell.production["init_from"].file).expanduser()
            resolved = {**resolved,
                        "init_from": {**init, "file": str(file if file.is_absolute() else paper.path / file)}}
        jid = job_hash(resolved)
        job = jobs.get(jid)
        if job is None:
            if len(jobs) >= max_jobs:
                raise PlanError(f"{paper.path / (table + '.yaml')}: (plan): more than {max_jobs:,} jobs "
                                f"planned by this invocation ({seeds} seed(s) per cell)", "max_jobs")
            job = jobs[jid] = PlannedJob(jid, config_key(config), config["kind"], config["model"], b, seed,
                                         resolved, upstream=upstream)
        return job

    recipes: dict[str, dict] = {}

    def recipe_for(config: dict) -> dict:
        key = json.dumps(config["recipe"], sort_keys=True)
        if key not in recipes:
            recipes[key] = apply_budget(JobRecipe.of(config["recipe"]), budget).job_dict()
        return dict(recipes[key])

    for paper, table in targets:
        for cell in table_cells(paper, paper.tables[table]):
            if cells is not None and cell.key not in cells:
                continue
            config = cell_config(paper, cell)
            if config is None or (kinds and config["kind"] not in kinds):
                continue
            # range(): --seeds 10**9 meets the cap lazily
            n = max(seeds, (cell_seeds or {}).get(cell.key, 0))
            for seed in [None] if config["kind"] == "profile" else range(n):
                job = add(paper, table, cell, config, seed)
                if cell.key not in job.cells:
                    job.cells.append(cell.key)
    order = {"profile": 0, "train": 1, "detect": 2}
    depth: dict[str, int] = {}

    def hops(j: PlannedJob) -> int:  # upstream jobs first: a job's weights exist before the jobs they start
        if j.id not in depth:
            depth[j.id] = 1 + max((hops(jobs[u]) for u in j.upstream), default=-1)
        return depth[j.id]

    return sorted(jobs.values(), key=lambda j: (hops(j), order[j.kind], j.model, json.dumps(j.spec, sort_keys=True)))


def published_rows(catalog: Catalog, targets: list[tuple[Paper, str]]) -> tuple[list, list, list]:
    """Rows for the papers / spec_tables / published_cells tables of the database."""
    papers, tables, cells = {}, [], []
    for paper, table in targets:
        s = paper.spec
        papers[s.paper] = {"slug": s.paper, "title": s.title, "authors": s.authors, "source": s.source}
        spec = paper.tables[table]
        tables.append({"paper": s.paper, "name": table, "kind": spec.kind, "title": spec.title,
                       "caption": spec.caption})
        for cell in table_cells(paper, spec):
            config = cell_config(paper, cell)
            printed = cell.printed
            cells.append({"paper": s.paper, "table_name": table, "section": cell.section or "", "row": cell.row,
                          "column": cell.column, "metric": cell.metric, "printed": cell.published.value,
                          "value": printed.value if printed else None, "uncertain": cell.published.uncertain,
                          "not_reproducible": cell.published.not_reproducible, "cited": cell.cited,
                          "config_key": config_key(config) if config else None})
    return list(papers.values()), tables, cells


def split_missing_data(jobs: list[PlannedJob], data_dir) -> tuple[list[PlannedJob], dict[str, tuple[str, int]]]:
    """Jobs whose dataset files are present (or that need none), and per missing dataset the
    error saying how to fix it with the number of jobs it holds back."""
    runnable, held, errors = [], {}, {}
    for j in jobs:
        if j.kind == "profile":
            runnable.append(j)
            continue
        from .data.readers import missing  # torch and torchvision: only when a job reads a dataset

        declaration = json.dumps(j.spec.get("dataset_spec"), sort_keys=True)
        key = (j.spec["dataset"], tuple(JobRecipe.of(j.spec["recipe"]).train_split), declaration)
        if key not in errors:
            errors[key] = missing(datasets.for_job(j.spec), data_dir, list(key[1]))
        if errors[key] is None:
            runnable.append(j)
        else:
            msg, n = held.get(key[0], (str(errors[key]), 0))
            held[key[0]] = (msg, n + 1)
    return runnable, held
