"""Loading specs from disk: find the specs directory, read YAML, validate, and check that every
name a spec uses exists (models and their options, recipes, datasets, counter profiles, cells).

Every problem is one ``SpecError`` line naming the file and the field.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import ValidationError

from .modelcheck import facts
from .data import datasets
from .specs import (METRICS, PLAUSIBLE_COUNT, TRAIN_OPTIONS, Catalog, FieldValueError, Paper, PaperSpec, SpecError,
                    TableSpec, table_cells,
                    table_rows)


class SpecsDirMissing(SpecError):
    """The specs folder itself is not there (a caller may say which option or variable points at it)."""


BUILTIN = "@builtin"  # in a list of specs folders: the four papers that ship with repro


def specs_roots(explicit=None) -> list[Path]:
    """The specs folders: ``--specs-dir`` (one or several) beats ``$REPRO_SPECS`` (a list separated like
    PATH) beats the repo's ``specs/``. The entry ``@builtin`` stands for the repo's ``specs/``, so a user's
    papers can sit beside ours: ``--specs-dir @builtin --specs-dir ~/papers``."""
    if isinstance(explicit, (str, os.PathLike)):
        explicit = [explicit]
    entries = list(explicit or []) or [e for e in os.environ.get("REPRO_SPECS", "").split(os.pathsep) if e]
    from .paths import CHECKOUT

    builtin = CHECKOUT / "specs"
    roots = [builtin if str(e) == BUILTIN else Path(e) for e in entries] or [builtin]
    unique: list[Path] = []
    for r in roots:
        if r.resolve() not in [u.resolve() for u in unique]:
            unique.append(r)
    return unique


def _field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# Limits that keep a hostile or mistyped spec file cheap to reject. Our largest spec is 15 KB with
# ~1,500 nodes and nests 6 deep; anchors are used (csm/table3.yaml), so aliases stay, bounded.
MAX_SPEC_BYTES = 1_000_000
MAX_DEPTH = 50
MAX_NODES = 200_000  # counted with aliases expanded: a billion-laughs file stops here

try:  # libyaml's parser is ~20x faster than PyYAML's pure-Python one and limits nesting itself
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader


def _short(where: str) -> str:
    """A field path fit for one line (a 50-deep path is mostly repetition)."""
    return where if len(where) <= 80 else f"{where[:38]}...{where[-38:]}"


def _check_nodes(root: yaml.Node, path: Path) -> None:
    """Walk the composed node graph before constructing anything: duplicate keys (which PyYAML
    accepts silently, the last one winning), nesting depth, and size with aliases expanded."""
    stack = [(root, "", 0)]
    visited = 0
    while stack:
        node, where, depth = stack.pop()
        visited += 1
        if visited > MAX_NODES:
            raise SpecError(f"{path}: {_short(where) or '(top level)'}: more than {MAX_NODES:,} YAML nodes "
                            f"once aliases are expanded (an alias bomb?)")
        if depth > MAX_DEPTH:
            raise SpecError(f"{path}: {_short(where)}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in node.value:
                name = str(key.value) if isinstance(key, yaml.ScalarNode) else "(complex key)"
                child = f"{where}.{name}" if where else name
                if name in seen:
                    raise SpecError(f"{path}: {_short(child)}: duplicate key (lines {seen[name]} and "
                                    f"{key.start_mark.line + 1})")
                seen[name] = key.start_mark.line + 1
                stack.append((key, child, depth + 1))
                stack.append((value, child, depth + 1))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(node.value))


def _load_yaml(path: Path) -> Any:
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:  # checked before reading: a 50 MB file is rejected in microseconds
            raise SpecError(f"{path}: (file): {size:,} bytes; a spec file may hold at most {MAX_SPEC_BYTES:,}")
        raw = path.read_bytes()
    except OSError as e:
        raise SpecError(f"{path}: (file): cannot read: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise SpecError(f"{path}: line {line}: not UTF-8 text "
                         f"(byte 0x{raw[e.start]:02x} at offset {e.start})") from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, path)
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())
        raise SpecError(f"{path}:{where}: YAML syntax error: {problem}") from None
    except ValueError as e:  # a scalar the constructor refuses, e.g. an int past Python's 4,300-digit limit
        raise SpecError(f"{path}: (file): unreadable value: {' '.join(str(e).split())}") from None
    except RecursionError:  # the pure-Python composer recurses per nesting level
        raise SpecError(f"{path}: (file): nested deeper than Python's recursion limit") from None
    finally:
        loader.dispose()


def _validate(cls, data, path: Path):
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping at the top level")
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "missing required field"
        blamed = (err.get("ctx") or {}).get("error")
        loc = (*err["loc"], blamed.field) if isinstance(blamed, FieldValueError) else err["loc"]
        where = _field_path(loc) or "(top level)"
        raise SpecError(f"{path}: {where}: {msg}") from None


def _natural(path: Path) -> tuple:
    """table2 before table10; tables before figures."""
    parts = re.split(r"(\d+)", path.stem)
    return (not path.stem.startswith("table"),) + tuple(int(p) if p.isdigit() else p for p in parts)


def load_paper(paper_dir: Path, plugin_files: list[str] | None = None) -> Paper:
    """One paper's specs, after importing the plugins its paper.yaml lists (added to ``plugin_files``)."""
    from .plugin_loader import PluginError, load_file

    meta_path = paper_dir / "paper.yaml"
    if not meta_path.exists():
        raise SpecError(f"{meta_path}: missing (every paper directory needs a paper.yaml)")
    meta = _validate(PaperSpec, _load_yaml(meta_path), meta_path)
    if meta.paper != paper_dir.name:
        raise SpecError(f"{meta_path}: paper: {meta.paper!r} does not match its directory {paper_dir.name!r}")
    for i, name in enumerate(meta.plugins):
        try:
            plugin = load_file(paper_dir / name, label=str(paper_dir / name))
        except PluginError as e:
            raise SpecError(f"{meta_path}: plugins[{i}]: {e}") from None
        if plugin_files is not None and plugin.path not in plugin_files:
            plugin_files.append(plugin.path)
    tables = {}
    for path in sorted(paper_dir.glob("*.yaml"), key=_natural):
        if path.name == "paper.yaml":
            continue
        spec = _validate(TableSpec, _load_yaml(path), path)
        if spec.table != path.stem:
            raise SpecError(f"{path}: table: {spec.table!r} does not match the file name {path.stem!r}")
        tables[spec.table] = spec
    paper = Paper(meta, tables, paper_dir)
    _check_references(paper)
    return paper


def paper_folders(roots: list[Path]) -> dict[str, Path]:
    """Every paper's folder in the specs folders, by slug (a slug defined twice is an error naming both)."""
    folders: dict[str, Path] = {}
    for root in roots:
        if not root.is_dir():
            raise SpecsDirMissing(f"{root}: specs directory not found")
        for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
            if d.name in folders:
                raise SpecError(f"{d / 'paper.yaml'}: paper: {d.name!r} is defined twice (also in {folders[d.name]})")
            folders[d.name] = d
    return folders


def load_catalog(roots=None, plugins: list[str] | tuple[str, ...] = (), only: Iterable[str] | None = None
                 ) -> Catalog:
    """Every paper of the specs folders (see ``specs_roots``), after the plugins they need: installed
    entry points, ``$REPRO_PLUGINS``, ``plugins`` and each paper's own ``plugins:``. ``only``: the slugs to
    load (a campaign loads the papers its targets name; ``catalog.folders`` still lists them all)."""
    from .plugin_loader import load_all

    catalog = Catalog(specs_roots(roots))
    catalog.plugins = [p.path for p in load_all(plugins) if p.path]
    catalog.folders = paper_folders(catalog.roots)
    wanted = set(catalog.folders if only is None else only)
    try:
        for slug, d in catalog.folders.items():
            if slug in wanted:
                catalog.papers[slug] = load_paper(d, catalog.plugins)
    finally:
        facts().save()  # what was learnt about the models, good or bad, even when a spec failed
    return catalog


def _check_datasets(paper: Paper, meta: Path) -> dict:
    """The paper's declared datasets as descriptions: each name its own (not a registered one), each
    declaration one that can be read."""
    out = {}
    for name, spec in paper.spec.datasets.items():
        where = f"{meta}: datasets.{name}"
        if name in datasets.registered():
            raise SpecError(f"{where}: {name!r} is already a dataset ({datasets.get(name).origin}); a paper declares "
                            f"a dataset under a name of its own")
        if not datasets.NAME.match(name):
            raise SpecError(f"{where}: a dataset name is letters, digits, '.', '_' and '-'")
        if spec.path is not None and (Path(spec.path).is_absolute() or ".." in Path(spec.path).parts):
            raise SpecError(f"{where}.path: {spec.path!r} must be a folder under the data dir (relative, no '..')")
        try:
            out[name] = datasets.declared(name, spec, paper.slug)
        except ValueError as e:
            raise SpecError(f"{where}: {e}") from None
    return out


def recipe_silences(paper: Paper) -> list[str]:
    """Warnings for what a paper's recipes leave unsaid where it changes the numbers: how often a schedule
    moves (``lr_step``) and how often the warm-up moves (``warmup_step``). The defaults (per epoch, per
    iteration) are today's meaning, but a reader cannot tell a stated choice from an inherited one."""
    out = []
    for name, r in paper.spec.recipes.items():
        if r.iterations:
            continue  # an iteration-based recipe moves per iteration: nothing to say
        moves = r.schedule != "constant" and (r.schedule != "step" or r.milestones)
        if moves and "lr_step" not in r.model_fields_set and "lr_step" not in r.assumed:
            out.append(f"{paper.path / 'paper.yaml'}: recipes.{name}: schedule {r.schedule} is silent on lr_step "
                       f"(epoch or iteration); the default, per epoch, is used")
        if r.warmup_epochs and "warmup_step" not in r.model_fields_set and "warmup_step" not in r.assumed:
            out.append(f"{paper.path / 'paper.yaml'}: recipes.{name}: the warm-up is silent on warmup_step "
                       f"(epoch or iteration); the default, per iteration, is used")
    return out


def _check_references(paper: Paper) -> None:
    """Names a spec refers to must exist: models, recipes, datasets, counter profiles, cells; and
    each model must accept its options (checked by building it on the meta device, cached)."""
    registry = facts()
    profiles = registry.profile_names()
    meta = paper.path / "paper.yaml"
    if paper.spec.counter_profile not in profiles:
        raise SpecError(f"{meta}: counter_profile: unknown profile {paper.spec.counter_profile!r}")
    declared = _check_datasets(paper, meta)
    for name, r in paper.spec.recipes.items():
        if r.dataset not in declared and r.dataset not in datasets.registered():
            raise SpecError(f"{meta}: recipes.{name}.dataset: unknown dataset {r.dataset!r}")
    keys = set()
    for spec in paper.tables.values():
        path = paper.path / f"{spec.table}.yaml"
        seen = set()
        try:
            rows = table_rows(spec)
        except ValidationError as e:
            err = e.errors()[0]
            raise SpecError(f"{path}: sweep: {_field_path(err['loc'])}: {err['msg']}") from None
        for row in rows:
            ident = (row.section, row.label)
            if ident in seen:
                raise SpecError(f"{path}: rows: duplicate row label {row.label!r}")
            seen.add(ident)
        for cell in table_cells(paper, spec):
            keys.add(f"{spec.table}/{cell.row}/{cell.column}")
            where = f"{path}: {cell.row!r} / {cell.column!r}"
            if cell.published.value == "-" or cell.cited:
                continue
            if cell.published.value == "?" and cell.published.not_reproducible:
                raise SpecError(f"{where}: not_reproducible: a cell with no printed number cannot be not reproducible")
            printed = cell.printed
            if METRICS[cell.metric][2] and printed is not None and printed.base < PLAUSIBLE_COUNT:
                raise SpecError(f"{where}: {cell.published.value!r} reads as {printed.base:g} {cell.metric}, no "
                                f"network's count: did you mean a unit on the column? (unit: G, M or K)")
            prod = cell.production
            if "model" not in prod:
                raise SpecError(f"{where}: model: missing (no model produces this cell)")
            if not registry.is_known(prod["model"]):
                raise SpecError(f"{where}: model: unknown model {prod['model']!r}")
            unknown_train = set(prod.get("train") or {}) - TRAIN_OPTIONS
            if unknown_train:
                raise SpecError(f"{where}: train: unknown option(s) {sorted(unknown_train)}")
            kind = METRICS[cell.metric][0]
            if kind != "profile":
                if "recipe" not in prod:
                    raise SpecError(f"{where}: recipe: missing (a trained cell needs a recipe)")
                if prod["recipe"] not in paper.spec.recipes:
                    raise SpecError(f"{where}: recipe: unknown recipe {prod['recipe']!r} "
                                    f"(recipes of {paper.slug}: {', '.join(paper.spec.recipes) or 'none'})")
            if kind != "profile" and prod.get("dataset") not in (None, paper.spec.recipes[prod["recipe"]].dataset):
                raise SpecError(f"{where}: dataset: {prod['dataset']!r} differs from recipe {prod['recipe']!r}'s "
                                f"dataset {paper.spec.recipes[prod['recipe']].dataset!r} "
                                f"(a trained cell uses its recipe's)")
            dataset = prod.get("dataset") or (paper.spec.recipes[prod["recipe"]].dataset if "recipe" in prod else None)
            if dataset is None:
                raise SpecError(f"{where}: dataset: missing")
            info = declared.get(dataset) or datasets.registered().get(dataset)
            if info is None:
                raise SpecError(f"{where}: dataset: unknown dataset {dataset!r}")
            if kind == "profile" and "input_size" not in prod and info.input_size is None:
                raise SpecError(f"{where}: input_size: missing: {dataset} declares no image_size, so its images' "
                                f"size is known only from its files (declare image_size, or give input_size)")
            try:  # the same options plan.cell_config resolves, so that it finds them cached
                resolved = registry.resolve(prod["model"], {"num_classes": info.num_classes,
                                                            **prod.get("model_kwargs", {})})
            except ValueError as e:
                raise SpecError(f"{where}: model_kwargs: {e}") from None
            recipe = paper.spec.recipes[prod["recipe"]] if kind == "train" else None
            if recipe is not None and (recipe.drop_path or recipe.dropout):
                from .train.regularise import model_kwargs

                try:  # a model without stochastic depth or dropout must not silently ignore the rate
                    model_kwargs(prod["model"], resolved, recipe)
                except ValueError as e:
                    raise SpecError(f"{meta}: recipes.{prod['recipe']}.{e} "
                                    f"(cell {cell.row!r} / {cell.column!r})") from None
            if kind != "profile" and paper.spec.recipes[prod["recipe"]].bn_batch is not None:
                why = registry.no_ghost_form(prod["model"], {"num_classes": info.num_classes,
                                                             **prod.get("model_kwargs", {})})
                if why:
                    raise SpecError(f"{where}: bn_batch: model {prod['model']!r}: {why}")
            if prod.get("counter_profile", paper.spec.counter_profile) not in profiles:
                raise SpecError(f"{where}: counter_profile: unknown profile {prod.get('counter_profile')!r}")
            init = prod.get("init_from")
            if init is not None and kind == "profile":
                raise SpecError(f"{where}: init_from: a count starts from no weights (only trained cells take it)")
            if init is not None and init.table is not None:
                from .plan import PlanError, upstream_cell

                try:
                    upstream_cell(paper, cell)
                except PlanError as e:
                    raise SpecError(str(e)) from None
    for spec in paper.tables.values():
        labels = {(r.section, r.label) for r in table_rows(spec)}
        for claim in spec.claims:
            for pair in claim.all_pairs():
                for section, row in zip(pair.sections, (pair.better, pair.worse)):
                    if (section, row) not in labels:
                        raise SpecError(f"{paper.path / (spec.table + '.yaml')}: claims: unknown row {row!r}"
                                        + (f" in section {section!r}" if section else ""))
        for curve in spec.curves:
            if curve.cell not in keys:
                raise SpecError(f"{paper.path / (spec.table + '.yaml')}: curves: unknown cell {curve.cell!r}")
