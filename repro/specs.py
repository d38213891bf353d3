"""Declarative table specs: the published numbers exactly as printed, and how each cell is made.

Layout: ``specs/<paper>/paper.yaml`` (paper metadata, named recipes, paper-wide assumptions)
and one ``specs/<paper>/<table>.yaml`` per table or figure. See ``specs/README.md`` for the
format. Everything is validated by pydantic with unknown keys forbidden; errors become one
``SpecError`` line naming the file and the field (loading and reference checks: ``catalog.py``).

A cell's production is merged flat, in this order: table ``defaults`` < ``column`` < ``row``
(a sweep point is a row). One level, no inheritance chains. A recipe is referenced by name
from ``paper.yaml``: one level of reference.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from .citation import Citation
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

METRICS = {
    # name: (kind of job that measures it, higher_is_better, is_count)
    "params": ("profile", None, True),
    "params_mxnet": ("profile", None, True),
    "macs": ("profile", None, True),
    "top1_acc": ("train", True, False),
    "top5_acc": ("train", True, False),
    "top1_err": ("train", False, False),
    "top5_err": ("train", False, False),
    "map": ("detect", True, False),
    "map50": ("detect", True, False),
    "map75": ("detect", True, False),
}
PRINTED = re.compile(r"^(?P<num>[+-]?\d+(?:\.(?P<dec>\d+))?)\s*(?P<suffix>[KMG%]?)$")
TRAIN_OPTIONS = {"aux_loss_weights"}
SCALE = {"": 1, "%": 1, "K": 1e3, "M": 1e6, "G": 1e9}
# The augmentation names a recipe may list; repro/data.py builds exactly these (one list for both).
AUGMENTATIONS = ("random_crop_pad4", "hflip", "rotate15", "random_resized_crop", "normalize", "to_unit")
MAX_EPOCHS = 10_000  # no paper trains longer; a typo like 1e24 must not reach the planner
MAX_ITERATIONS = 10_000_000
MAX_ROWS = 1_000  # rows per table and points per sweep: the largest paper table has ~30


class SpecError(Exception):
    """A spec problem, reported as one line: ``file: field: message``."""


class Strict(BaseModel):
    # allow_inf_nan=False: a string like "inf" must not slip past the range checks below as a float
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _range_check(lo: float, hi: float, lo_open: bool):
    interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"

    def check(v):
        if isinstance(v, str):  # YAML 1.1 reads 1e24 (no dot) as a string; YAML 1.2 and users mean a number
            try:
                v = float(v)
            except ValueError:
                return v  # not a number: pydantic's type check says so
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return v
        bad = (isinstance(v, float) and not math.isfinite(v)) or v < lo or v > hi or (lo_open and v == lo)
        if bad:
            shown = (f"an integer of ~{int(v.bit_length() * 0.30103)} digits" if isinstance(v, int) and v.bit_length() > 64
                     else repr(v))
            raise ValueError(f"{shown} is out of range: allowed {interval}")
        return v

    return check


def Bounded(kind: type, lo: float, hi: float, *, lo_open: bool = False):
    """``kind`` limited to a finite range. Checked before conversion (so ``epochs: 1e24`` is reported
    as written) and after it (numbers given as strings)."""
    check = _range_check(lo, hi, lo_open)
    return Annotated[kind, BeforeValidator(check), AfterValidator(check)]


Tolerance = Bounded(float, 0, 100)


@dataclass(frozen=True)
class Printed:
    """A number as the paper prints it: '21.655M', '78.12', '33.7%', '853.02K'."""

    text: str
    value: float  # in the printed unit (21.655 for '21.655M')
    decimals: int
    suffix: str

    @property
    def base(self) -> float:
        """The value in base units (21_655_000.0 for '21.655M')."""
        return self.value * SCALE[self.suffix]

    @classmethod
    def parse(cls, raw: Any) -> "Printed":
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise ValueError(f"expected a number as printed (e.g. '78.12' or '21.655M'), got {raw!r}")
        text = str(raw).strip()
        m = PRINTED.match(text)
        if not m:
            raise ValueError(f"{text!r} is not a printed number (digits with an optional K/M/G/% suffix)")
        return cls(text, float(m["num"]), len(m["dec"] or ""), m["suffix"])

    def show(self, value: float) -> str:
        """``value`` (in this number's printed unit) written as the paper writes this number: the same
        decimals and K/M/G suffix ('21.655M')."""
        return f"{value:.{self.decimals}f}{self.suffix if self.suffix != '%' else ''}"

    def rounds_to(self, base_value: float) -> float:
        """``base_value`` expressed in this number's printed unit, rounded half up as printed."""
        from decimal import ROUND_HALF_UP, Decimal

        scaled = Decimal(repr(float(base_value))) / Decimal(repr(SCALE[self.suffix]))
        return float(scaled.quantize(Decimal(1).scaleb(-self.decimals), rounding=ROUND_HALF_UP))


class Cell(Strict):
    """A published value with flags. A bare string in YAML is shorthand for ``{value: ...}``."""

    value: str
    uncertain: str | None = None  # why the transcription is uncertain
    not_reproducible: str | None = None  # why no natural construction gives it (a finding)
    note: str | None = None

    @field_validator("value", mode="before")
    @classmethod
    def _printed(cls, v):
        if v is None:
            raise ValueError("missing published value")
        if v in ("-", "?"):  # '-': the paper prints a dash (nothing to run); '?': shown only
            return v        # graphically or in a claim: no number, but the cell is run
        return Printed.parse(v).text


class InitFrom(Strict):
    """Where a job's initial weights come from (a pretrain-then-transfer table): another cell's job of this
    paper (``table`` + ``row``, optionally ``section``/``column`` when a row has several trained configurations),
    or a local file checked by its SHA-256 (``file`` + ``sha256``; a relative path is relative to the paper's
    folder). ``into``: ``model`` loads the whole state dict; ``backbone`` loads a classifier's weights into a
    detector's body (``backbone.body``), dropping its classification head."""

    table: str | None = None
    row: str | None = None
    section: str | None = None
    column: str | None = None
    file: str | None = None
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    into: Literal["model", "backbone"] = "model"

    @model_validator(mode="after")
    def _one_source(self):
        cell = self.table is not None or self.row is not None
        local = self.file is not None or self.sha256 is not None
        if cell == local:
            raise ValueError("give either table and row (another cell's job) or file and sha256 (local weights)")
        if cell and (self.table is None or self.row is None):
            raise ValueError("an upstream cell needs both table and row")
        if local and (self.file is None or self.sha256 is None):
            raise ValueError("local weights need both file and sha256 (checked before use)")
        return self


class Production(Strict):
    """How a cell is produced. Every field is optional at each level and merged flat."""

    model: str | None = None
    model_kwargs: dict[str, Any] | None = None
    dataset: str | None = None
    recipe: str | None = None
    train: dict[str, Any] | None = None  # training-time options: aux_loss_weights, ...
    input_size: list[Bounded(int, 1, 4096)] | None = Field(None, min_length=3, max_length=4)
    counter_profile: str | None = None
    tolerance: Tolerance | None = None
    init_from: InitFrom | None = None  # start from another job's weights, or a local file's


class Column(Production):
    label: str
    metric: str
    also: list[str] = Field(default_factory=list)  # more measured metrics to show beside ours (e.g. top5_acc)

    @field_validator("metric")
    @classmethod
    def _metric(cls, v):
        if v not in METRICS:
            raise ValueError(f"unknown metric {v!r}; known: {', '.join(METRICS)}")
        return v

    @field_validator("also")
    @classmethod
    def _also(cls, v):
        unknown = [m for m in v if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; known: {', '.join(METRICS)}")
        return v


class Row(Production):
    label: str
    section: str | None = None
    cited: str | None = None  # the paper quotes this row from other work: no run
    settings: dict[str, str] | None = None  # printed configuration columns (e.g. lossW1)
    note: str | None = None
    values: dict[str, Cell]

    @field_validator("values", mode="before")
    @classmethod
    def _cells(cls, v):
        if not isinstance(v, dict):
            raise ValueError("values must map column labels to printed numbers")
        return {k: (x if isinstance(x, (dict, Cell)) else {"value": x}) for k, x in v.items()}


class SweepPoint(Strict):
    label: str
    value: Any = None
    published: Cell
    row: Production | None = None  # a point that is a different model (e.g. the baseline)
    note: str | None = None

    @field_validator("published", mode="before")
    @classmethod
    def _cell(cls, v):
        return v if isinstance(v, (dict, Cell)) else {"value": v}


class Sweep(Strict):
    """A one-parameter sweep: each point becomes one row whose cell in ``column`` is published."""

    label: str  # the paper's header for the swept quantity, e.g. "Dropout ratio"
    column: str
    set: str  # dotted path into the production: "model_kwargs.aux_dropout", "train.aux_loss_weights"
    points: list[SweepPoint] = Field(max_length=MAX_ROWS)

    @field_validator("set")
    @classmethod
    def _path(cls, v):
        head = v.split(".")[0]
        if head not in ("model_kwargs", "train") or v.count(".") != 1:
            raise ValueError("sweep.set must be 'model_kwargs.<name>' or 'train.<name>'")
        return v


class Assumption(Strict):
    id: str
    text: str


class ClaimPair(Strict):
    """One row pair of a claim: ``better`` beats ``worse`` (row labels, in ``section`` when labels repeat)."""

    better: str
    worse: str
    section: str | None = None  # the row group of both rows
    better_section: str | None = None  # the row groups of each, when they differ (CMPE-SE-WRN-22-10 vs SE-WRN-22-10)
    worse_section: str | None = None

    @property
    def sections(self) -> tuple[str | None, str | None]:
        return self.better_section or self.section, self.worse_section or self.section


class Claim(Strict):
    """A claim of the paper the report can check: ``better`` beats ``worse`` on ``column``, for one row
    pair (``better``/``worse``/``section``) or several (``pairs``: "at every depth" is one claim).

    ``text`` quotes the paper's sentence. ``published_gain`` is the improvement the paper's text prints
    (e.g. "1.94" for "at most 1.94%"), and ``gain_of`` says what it is of: every pair (``each``), the best
    pair (``max``), or the pairs' average (``mean``). Each pair's verdict compares our gain with the gain
    derived from the pair's two published cells; the printed gain is used only where a cell has no number.
    """

    text: str
    column: str
    better: str | None = None  # row label
    worse: str | None = None  # row label
    section: str | None = None  # the row group both rows are in, when labels repeat across groups
    pairs: list[ClaimPair] = Field(default_factory=list)
    published_gain: str | None = None  # as printed in the text, in the column's unit
    gain_of: Literal["each", "max", "mean"] = "each"

    @field_validator("published_gain", mode="before")
    @classmethod
    def _gain(cls, v):
        return None if v is None else Printed.parse(v).text

    @model_validator(mode="after")
    def _one_form(self):
        single = self.better is not None or self.worse is not None
        if single == bool(self.pairs):
            raise ValueError("a claim gives either better/worse (one pair) or pairs (several), not both or neither")
        if single and (self.better is None or self.worse is None):
            raise ValueError("a one-pair claim needs both better and worse")
        return self

    def all_pairs(self) -> list[ClaimPair]:
        if self.pairs:
            return list(self.pairs)
        return [ClaimPair(better=self.better, worse=self.worse, section=self.section)]


class Curve(Strict):
    label: str
    cell: str  # "<table>/<row label>/<column label>"


class TableSpec(Strict):
    table: str
    kind: Literal["table", "figure"] = "table"
    title: str
    caption: str | None = None
    metric_note: str | None = None
    columns: list[Column] = Field(default_factory=list)
    defaults: Production = Production()
    rows: list[Row] = Field(default_factory=list, max_length=MAX_ROWS)
    sweep: Sweep | None = None
    curves: list[Curve] = Field(default_factory=list)  # figures: which cells' curves to draw
    plot_metric: str | None = None
    claims: list[Claim] = Field(default_factory=list)
    assumptions: list[Assumption] = Field(default_factory=list)
    findings: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self):
        labels = [c.label for c in self.columns]
        if len(set(labels)) != len(labels):
            raise ValueError("duplicate column labels")
        if self.sweep is not None and self.sweep.column not in labels:
            raise ValueError(f"sweep.column {self.sweep.column!r} is not one of the columns {labels}")
        for row in self.rows:
            for col in row.values:
                if col not in labels:
                    raise ValueError(f"row {row.label!r} has a value for unknown column {col!r}")
        if self.kind == "figure" and self.claims:
            raise ValueError("claims are judged on tables (kind: table), not on figures: a figure's cells are "
                             "drawn as curves")
        for claim in self.claims:
            if claim.column not in labels:
                raise ValueError(f"claim column {claim.column!r} is not one of the columns {labels}")
        return self


class Recipe(Strict):
    """A paper's training section, declared once per paper and referenced by name.

    Every number is range-checked (finite, and within what any paper could mean) so that a typo
    fails here, with the allowed range, rather than as a job that never ends or never learns.
    """

    # Field order matters: the schedule checks below read epochs/iterations, validated first.
    dataset: str
    epochs: Bounded(int, 0, MAX_EPOCHS) = 0  # 0 for iteration-based recipes
    iterations: Bounded(int, 1, MAX_ITERATIONS) | None = None  # detection recipes count iterations, not epochs
    mixup_extra_epochs: Bounded(int, 0, MAX_EPOCHS) = 0  # epochs of plain training appended after mixup (cmpe-se)
    batch_size: Bounded(int, 1, 65_536)
    lr: Bounded(float, 0, 1e6, lo_open=True)  # 1e6 still allowed: a divergence test needs an absurd lr
    momentum: Bounded(float, 0, 1) = 0.9
    nesterov: bool = False
    weight_decay: Bounded(float, 0, 1)
    milestones: list[int] = Field(default_factory=list)  # epochs (or iterations when per_iteration)
    gamma: Bounded(float, 0, 1, lo_open=True) = 0.1
    warmup_epochs: Bounded(float, 0, MAX_EPOCHS) = 0
    warmup_iterations: Bounded(int, 0, MAX_ITERATIONS) = 0
    augment: list[str] = Field(default_factory=list)
    train_split: list[str] = Field(default_factory=lambda: ["train"])
    mixup_alpha: Bounded(float, 0, 100) = 0.0
    min_size: Bounded(int, 1, 4096) | None = None  # detection: shorter image side (RetinaNet's default 800 when unset)
    backbone_checkpoint: str | None = None  # detection: ImageNet-trained backbone weights to start from
    # The images one BatchNorm saw on the paper's devices (e.g. 32 of a batch of 64 over 2 GPUs without
    # synchronised BN): ghost batch normalisation over groups of this size (repro_models.ghost_bn)
    bn_batch: Bounded(int, 2, 65_536) | None = None
    report_epoch: Literal["final", "best"] | None = None  # which epoch's numbers the paper reports (paper-wide default)
    source: str | None = None  # where the paper says it
    assumed: list[str] = Field(default_factory=list)  # which fields the paper leaves open

    @field_validator("augment")
    @classmethod
    def _augment(cls, v):
        unknown = [a for a in v if a not in AUGMENTATIONS]
        if unknown:
            raise ValueError(f"unknown augmentation(s) {unknown}; known: {', '.join(AUGMENTATIONS)}")
        return v

    @field_validator("milestones")
    @classmethod
    def _milestones(cls, v, info):
        if any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError(f"{v} must be strictly increasing")
        d = info.data
        if v and "epochs" in d and "iterations" in d and "mixup_extra_epochs" in d:
            # milestones count epochs of the whole run (mixup's extra epochs included) or iterations
            unit, length = ("iterations", d["iterations"]) if d["iterations"] else (
                "epochs", d["epochs"] + d["mixup_extra_epochs"])
            if v[0] < 1 or v[-1] > length:
                raise ValueError(f"{v} must lie within the schedule: allowed [1, {length}] ({unit})")
        return v

    @field_validator("warmup_epochs")
    @classmethod
    def _warmup_epochs(cls, v, info):
        epochs = info.data.get("epochs")
        if epochs and v > epochs:
            raise ValueError(f"{v:g} is out of range: allowed [0, {epochs}] (the recipe's epochs)")
        return v

    @field_validator("warmup_iterations")
    @classmethod
    def _warmup_iterations(cls, v, info):
        iterations = info.data.get("iterations")
        if iterations and v > iterations:
            raise ValueError(f"{v} is out of range: allowed [0, {iterations}] (the recipe's iterations)")
        return v

    @model_validator(mode="after")
    def _length(self):
        if (self.epochs > 0) == bool(self.iterations):
            raise ValueError("give exactly one of epochs (> 0) and iterations")
        unknown = set(self.assumed) - set(type(self).model_fields)
        if unknown:
            raise ValueError(f"assumed names unknown recipe field(s) {sorted(unknown)}")
        return self

    # The schedule's length, computed here and nowhere else.
    @property
    def total_epochs(self) -> int:
        """Epochs trained in all: the schedule's plus the plain epochs after mixup (cmpe-se)."""
        return self.epochs + self.mixup_extra_epochs

    @property
    def unit(self) -> Literal["epoch", "iteration"]:
        return "iteration" if self.iterations else "epoch"

    @property
    def length(self) -> int:
        """Units the recipe runs: iterations (detection) or epochs."""
        return self.iterations or self.total_epochs


# Recipe fields that say how to read or cite a run, not how it trains: never part of a job's identity
NOT_IDENTITY = frozenset({"source", "assumed", "report_epoch"})


class JobRecipe(Recipe):
    """A recipe as one job runs it: the paper's, shortened by the budget, with its name and the smoke
    budget's image subsets. The trainer, the detector, the loaders and the bench receive this object; the
    job's JSON holds ``job_dict()`` (what the job's identity hashes)."""

    name: str
    train_images: Bounded(int, 1, 10**9) | None = None  # smoke: train on these many images (a fixed subset)
    test_images: Bounded(int, 1, 10**9) | None = None

    @classmethod
    def of(cls, recipe: "JobRecipe | dict") -> "JobRecipe":
        return recipe if isinstance(recipe, cls) else cls.model_validate(recipe)

    def job_dict(self) -> dict[str, Any]:
        """The recipe in a job's JSON: no provenance fields (source, assumed), subsets only when set, so
        that a full-budget job's identity is what it was before the subsets existed."""
        return self.model_dump(exclude=NOT_IDENTITY | {k for k in ("train_images", "test_images", "bn_batch")
                                                       if getattr(self, k) is None})


class DatasetSpec(Strict):
    """A dataset a paper declares in its paper.yaml, referenced by recipes like the built-ins.

    ``imagefolder``: ``<data dir>/<path>/{train,test}/<class>/*`` image files; ``torchvision``: one of
    torchvision's classification datasets whose constructor is ``(root, train, download)`` (MNIST,
    FashionMNIST, KMNIST, QMNIST, USPS, ...) by class ``name``. ``mean``/``std`` per channel in [0, 1]:
    computed from the training set and recorded when absent."""

    kind: Literal["imagefolder", "torchvision"]
    path: str | None = None  # imagefolder: folder under the data dir (default: the dataset's name); torchvision:
    # a folder under the data dir used as the class's root (default: the data dir itself)
    name: str | None = None  # torchvision: the class name
    num_classes: Bounded(int, 1, 1_000_000)
    image_size: Bounded(int, 1, 4096) | None = None  # side the model sees; None: the stored images' side
    mean: list[Bounded(float, 0, 1)] | None = None
    std: list[Bounded(float, 0, 1, lo_open=True)] | None = None

    @model_validator(mode="after")
    def _complete(self):
        if self.kind == "torchvision" and not self.name:
            raise ValueError("a torchvision dataset needs name (the class, e.g. MNIST)")
        if self.kind == "imagefolder" and self.name:
            raise ValueError("name is for kind torchvision; an imagefolder dataset takes path")
        if (self.mean is None) != (self.std is None) or (self.mean and len(self.mean) != len(self.std)):
            raise ValueError("give mean and std together, one value per channel each")
        return self


class PaperSpec(Strict):
    paper: str
    title: str
    authors: str
    source: str
    counter_profile: str = "thop-0.1"
    tolerance: Tolerance = 0.5  # accuracy points within which a full-budget result counts as reproduced
    # The numbers a trained cell is judged on: the final epoch's, or the best test epoch's (a code base that
    # keeps the best checkpoint); a recipe may override it. Never part of a job: both are stored.
    report_epoch: Literal["final", "best"] = "final"
    recipes: dict[str, Recipe] = Field(default_factory=dict)
    assumptions: list[Assumption] = Field(default_factory=list)
    findings: list[str] = Field(default_factory=list)
    plugins: list[str] = Field(default_factory=list)  # Python files, relative to the paper's folder
    datasets: dict[str, DatasetSpec] = Field(default_factory=dict)
    citation: Citation | None = None  # how to cite it (repro cite, the reports' link): repro.citation


def cell_key(paper: str, table: str, section: str | None, row: str, column: str) -> str:
    """A cell's name across the project: ``paper/table/[section / ]row/column`` (plans, reports, the API)."""
    return f"{paper}/{table}/{f'{section} / {row}' if section else row}/{column}"


@dataclass(frozen=True)
class CellSpec:
    """One published number and its fully merged production."""

    paper: str
    table: str
    row: str
    section: str | None
    column: str
    metric: str
    published: Cell
    production: dict[str, Any]
    cited: str | None

    @property
    def key(self) -> str:
        return cell_key(self.paper, self.table, self.section, self.row, self.column)

    @property
    def printed(self) -> Printed | None:
        return None if self.published.value in ("-", "?") else Printed.parse(self.published.value)


@dataclass
class Paper:
    """A loaded paper; read-only once loaded (its expansion, ``repro.expanded.expand``, is kept on it)."""

    spec: PaperSpec
    tables: dict[str, TableSpec]
    path: Path
    _expanded: Any = field(default=None, init=False, repr=False, compare=False)
    _upstream: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # init_from -> its cell
    _cells: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # table -> table_cells

    @property
    def slug(self) -> str:
        return self.spec.paper


@dataclass
class Catalog:
    roots: list[Path]  # the specs folders, in the order given
    papers: dict[str, Paper] = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)  # plugin files every worker must import (absolute paths)
    folders: dict[str, Path] = field(default_factory=dict)  # every paper's folder, loaded or not (``load_catalog(only=)``)

    @property
    def root(self) -> Path:
        return self.roots[0]


def _set_path(prod: dict, dotted: str, value: Any) -> None:
    head, name = dotted.split(".")
    prod[head] = {**(prod.get(head) or {}), name: value}


def _merge(*levels: Production | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for level in levels:
        if level is None:
            continue
        for name in Production.model_fields:
            v = getattr(level, name)
            if v is None:
                continue
            if name in ("model_kwargs", "train"):
                out[name] = {**out.get(name, {}), **v}
            else:
                out[name] = v
    return out


def table_rows(spec: TableSpec) -> list[Row]:
    """Explicit rows followed by the rows a sweep expands to."""
    rows = list(spec.rows)
    if spec.sweep is not None:
        sw = spec.sweep
        for p in sw.points:
            base = p.row.model_dump(exclude_none=True) if p.row else {}
            if p.row is None or p.value is not None:
                _set_path(base, sw.set, p.value)
            rows.append(Row(label=p.label, values={sw.column: p.published}, note=p.note, **base))
    return rows


def table_cells(paper: Paper, spec: TableSpec, rows: list[Row] | None = None) -> list[CellSpec]:
    """Every published cell of a table, production merged; ``rows``: ``table_rows(spec)`` when the caller
    has them already (a sweep is expanded once). A paper's own table's cells are built once and kept on it."""
    mine = rows is None and paper.tables.get(spec.table) is spec
    if mine and spec.table in paper._cells:
        return paper._cells[spec.table]
    cells = []
    cols = {c.label: c for c in spec.columns}
    for row in table_rows(spec) if rows is None else rows:
        for label, published in row.values.items():
            col = cols[label]
            prod = _merge(spec.defaults, col, row)
            prod.pop("tolerance", None)
            cells.append(CellSpec(paper.slug, spec.table, row.label, row.section, label, col.metric,
                                  published, prod, row.cited))
    if mine:
        paper._cells[spec.table] = cells
    return cells


def level_tolerance(paper: Paper, spec: TableSpec, row: Row | None, col: Column) -> float:
    """The accuracy tolerance of a cell: its row's, else its column's, else the table's, else the paper's."""
    for level in (row, col, spec.defaults):
        if level is not None and level.tolerance is not None:
            return level.tolerance
    return paper.spec.tolerance
