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
from typing import Annotated, Any, ClassVar, Literal

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
# The recipe's vocabulary (optimizers, schedules, augmentations): one torch-free list, repro.train.names
from .train import names as vocab  # noqa: E402
from .train.names import AUGMENTATIONS  # noqa: F401,E402  (re-exported: the names a recipe may list)
# A count under this, in base units, is no MAC or parameter count of a network: a unit left off the column
# (SKNet prints "4.24" under the header "GFLOPs")
PLAUSIBLE_COUNT = 1_000
# The counter profile (repro/counting.py) of a paper that names none: today's thop. Stated here only; `repro new`,
# `repro models show` and the docs read it from here.
DEFAULT_COUNTER_PROFILE = "thop-0.1"
MAX_EPOCHS = 10_000  # no paper trains longer; a typo like 1e24 must not reach the planner
MAX_ITERATIONS = 10_000_000
MAX_ROWS = 1_000  # rows per table and points per sweep: the largest paper table has ~30


class SpecError(Exception):
    """A spec problem, reported as one line: ``file: field: message``."""


class FieldValueError(ValueError):
    """A whole-model check that blames one field (``field``): the catalog reports it at that field's path."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


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
            shown = (f"an integer of ~{int(v.bit_length() * 0.30103)} digits" if isinstance(v,
                                                                                            int) and v.bit_length() > 64
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
    value: float  # in the printed unit (21.655 for '21.655M', 4.24 for '4.24' under a column of unit G)
    decimals: int
    suffix: str  # as written in the cell ('' when the column's unit says it)
    scale: float = 1.0  # base units per printed unit: the suffix's, else the column's unit's

    @property
    def base(self) -> float:
        """The value in base units (21_655_000.0 for '21.655M')."""
        return self.value * self.scale

    @classmethod
    def parse(cls, raw: Any, unit: "str | float | None" = None) -> "Printed":
        """``raw`` as printed; ``unit``: the column's (``Column.unit``), applied to a number written without
        a suffix. A suffix that disagrees with the column's unit is an error."""
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise ValueError(f"expected a number as printed (e.g. '78.12' or '21.655M'), got {raw!r}")
        text = str(raw).strip()
        m = PRINTED.match(text)
        if not m:
            raise ValueError(f"{text!r} is not a printed number (digits with an optional K/M/G/% suffix)")
        scale = SCALE[m["suffix"]]
        if unit is not None:
            if m["suffix"] and scale != unit_scale(unit) or m["suffix"] == "%" and unit != "%":
                raise ValueError(f"{text!r} carries its own unit {m['suffix']!r}, which disagrees with the "
                                 f"column's unit {unit!r}")
            scale = unit_scale(unit)
        return cls(text, float(m["num"]), len(m["dec"] or ""), m["suffix"], scale)

    def show(self, value: float) -> str:
        """``value`` (in this number's printed unit) written as the paper writes this number: the same
        decimals and K/M/G suffix ('21.655M')."""
        return f"{value:.{self.decimals}f}{self.suffix if self.suffix != '%' else ''}"

    def rounds_to(self, base_value: float) -> float:
        """``base_value`` expressed in this number's printed unit, rounded half up as printed."""
        from decimal import ROUND_HALF_UP, Decimal

        scaled = Decimal(repr(float(base_value))) / Decimal(repr(float(self.scale)))
        return float(scaled.quantize(Decimal(1).scaleb(-self.decimals), rounding=ROUND_HALF_UP))


def unit_scale(unit: "str | float") -> float:
    """Base units per printed unit of a column's ``unit``: K, M, G, % or a positive scale factor."""
    return SCALE[unit] if isinstance(unit, str) else float(unit)


def _unit(v):
    if v is None or v in ("K", "M", "G", "%"):
        return v
    if isinstance(v, str):  # YAML 1.1 reads 1e6 (no dot) as a string
        try:
            v = float(v)
        except ValueError:
            raise ValueError(f"unknown unit {v!r}: use K, M, G, % or a positive scale factor (e.g. 1e6)") from None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"unknown unit {v!r}: use K, M, G, % or a positive scale factor (e.g. 1e6)")
    return float(v)


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
    # The unit the column's numbers are printed in (its header's "GFLOPs", "Params (M)"): the cells stay as
    # printed ("4.24") and are read in it
    unit: Annotated[str | float | None, BeforeValidator(_unit)] = None

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
        units = {c.label: c.unit for c in self.columns}
        points = [(p.label, self.sweep.column, p.published) for p in self.sweep.points] if self.sweep else []
        for row in self.rows:
            for col in row.values:
                if col not in labels:
                    raise ValueError(f"row {row.label!r} has a value for unknown column {col!r}")
        for label, col, cell in points + [(r.label, c, v) for r in self.rows for c, v in r.values.items()]:
            if units[col] is not None and cell.value not in ("-", "?"):
                try:
                    Printed.parse(cell.value, units[col])
                except ValueError as e:
                    raise ValueError(f"row {label!r}, column {col!r}: {e}") from None
        if self.kind == "figure" and self.claims:
            raise ValueError("claims are judged on tables (kind: table), not on figures: a figure's cells are "
                             "drawn as curves")
        for claim in self.claims:
            if claim.column not in labels:
                raise ValueError(f"claim column {claim.column!r} is not one of the columns {labels}")
        return self


Unit = Literal["epoch", "iteration"]
# How a spec names an augmentation: a name, or a one-key mapping of a name to its parameters
AugmentEntry = str | dict[str, dict[str, Any] | None]


class Recipe(Strict):
    """A paper's training section, declared once per paper and referenced by name.

    Every number is range-checked (finite, and within what any paper could mean) so that a typo
    fails here, with the allowed range, rather than as a job that never ends or never learns. Fields
    that do not belong to the chosen optimizer or schedule are errors, never silently ignored. The
    reference of every field, its default and the library behaviour it mirrors: docs/adding-a-paper.md.
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
    augment: list[AugmentEntry] = Field(default_factory=list)
    train_split: list[str] = Field(default_factory=lambda: ["train"])
    mixup_alpha: Bounded(float, 0, 100) = 0.0
    min_size: Bounded(int, 1, 4096) | None = None  # detection: shorter image side (RetinaNet's default 800 when unset)
    backbone_checkpoint: str | None = None  # detection: ImageNet-trained backbone weights to start from
    # The images one BatchNorm saw on the paper's devices (e.g. 32 of a batch of 64 over 2 GPUs without
    # synchronised BN): ghost batch normalisation over groups of this size (repro_models.ghost_bn)
    bn_batch: Bounded(int, 2, 65_536) | None = None
    # --- issue 17's vocabulary: every field below is left out of a job's identity at its default ---------
    optimizer: Literal["sgd", "adamw", "adam", "rmsprop"] = "sgd"
    betas: tuple[Bounded(float, 0, 1), Bounded(float, 0, 1)] = (0.9, 0.999)  # adam, adamw (torch's defaults)
    eps: Bounded(float, 0, 10, lo_open=True) = 1e-8  # adam, adamw, rmsprop (torch's default)
    alpha: Bounded(float, 0, 1, lo_open=True) = 0.99  # rmsprop's smoothing constant (torch's default)
    weight_decay_skip: list[Literal["norm", "bias"]] = Field(default_factory=list)  # groups without decay
    schedule: Literal["step", "cosine", "linear", "poly", "exponential", "constant"] = "step"
    min_lr: Bounded(float, 0, 1e6) = 0.0  # cosine, linear, poly: the rate at the schedule's end
    power: Bounded(float, 0, 100, lo_open=True) = 1.0  # poly
    decay_every: Bounded(float, 0, MAX_EPOCHS, lo_open=True) | None = None  # exponential: epochs between decays
    cooldown_epochs: Bounded(int, 0, MAX_EPOCHS) = 0  # epochs at min_lr after the schedule (timm)
    lr_step: Unit = "epoch"  # how often the schedule moves (per epoch like MultiStepLR, or per update)
    step_before_epoch: bool = False  # code that steps its scheduler before each epoch: epoch e runs at e + 1
    warmup_lr: Bounded(float, 0, 1e6) = 0.0  # where the linear warm-up starts
    warmup_step: Unit = "iteration"  # how often the warm-up moves
    # a unit runs at the rate its end (papers' WarmUpLR) or start (timm) reaches
    warmup_at: Literal["end", "start"] = "end"
    label_smoothing: Bounded(float, 0, 1) = 0.0  # CrossEntropyLoss(label_smoothing)
    cutmix_alpha: Bounded(float, 0, 100) = 0.0
    mix_prob: Bounded(float, 0, 1) = 1.0  # probability that a batch is mixed at all (timm mixup_prob)
    mix_switch_prob: Bounded(float, 0, 1) = 0.5  # with both on: probability of CutMix over mixup (timm)
    ema_decay: Bounded(float, 0, 1) = 0.0  # 0: no EMA; else metrics are the EMA weights' (raw stored beside)
    drop_path: Bounded(float, 0, 1) = 0.0  # stochastic depth rate, passed to models that have it
    dropout: Bounded(float, 0, 1) = 0.0  # classifier dropout, passed to models that have it
    grad_clip_norm: Bounded(float, 0, 1e6, lo_open=True) | None = None  # clip_grad_norm_ (L2, all parameters)
    accumulate_steps: Bounded(int, 1, 1024) = 1  # batch_size split into this many micro-batches per update
    eval_resize: Bounded(int, 1, 4096) | None = None  # test input: shorter side resized to this
    eval_crop: Bounded(int, 1, 4096) | None = None  # test input: centre crop of this side
    eval_interpolation: Literal["bilinear", "bicubic", "nearest"] = "bilinear"
    report_epoch: Literal["final", "best"] | None = None  # which epoch's numbers the paper reports (paper-wide default)
    source: str | None = None  # where the paper says it
    assumed: list[str] = Field(default_factory=list)  # which fields the paper leaves open

    # a recipe read from a spec is checked against the vocabulary's rows; a job's (built by repro) is not
    _spec_checks: ClassVar[bool] = True

    @field_validator("augment")
    @classmethod
    def _augment(cls, v):
        for entry in v:
            problem = vocab.check_augment(entry)
            if problem:
                raise ValueError(problem)
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
        if self._spec_checks:
            self._belongs()
        return self

    def _belongs(self) -> None:
        """Values that the chosen optimizer, schedule or recipe kind would ignore are errors (raised as
        ``field: message``; the catalog adds the file)."""
        given = self.model_fields_set

        def fail(name: str, message: str):
            raise FieldValueError(name, message)

        own = vocab.OPTIMIZERS[self.optimizer][1]
        for name in sorted((vocab.OPTIMIZER_FIELDS - own) & given):
            if name == "nesterov" and not self.nesterov or name == "momentum" and self.momentum == 0:
                continue  # 'nesterov: false' or 'momentum: 0' states what adam/adamw do anyway
            fail(name, f"does not belong to optimizer {self.optimizer} (it takes {', '.join(sorted(own)) or 'none'})")
        if self.optimizer == "rmsprop" and "momentum" not in given:
            fail("momentum", "rmsprop needs momentum stated (torch's default is 0, the sgd recipes' 0.9)")
        own = vocab.SCHEDULES[self.schedule]
        for name in sorted((vocab.SCHEDULE_FIELDS - own) & given):
            if name == "milestones" and not self.milestones:
                continue  # 'milestones: []' states what a non-step schedule does anyway
            fail(name, f"does not belong to schedule {self.schedule} (it takes {', '.join(sorted(own)) or 'none'})")
        if self.schedule == "exponential" and self.decay_every is None:
            fail("decay_every", "an exponential schedule needs decay_every (epochs between two decays)")
        if self.min_lr > self.lr:
            fail("min_lr", f"{self.min_lr:g} is above lr {self.lr:g}")
        if self.warmup_lr > self.lr:
            fail("warmup_lr", f"{self.warmup_lr:g} is above lr {self.lr:g}")
        if self.step_before_epoch and self.lr_step != "epoch":
            fail("step_before_epoch", "applies to a schedule that moves per epoch (lr_step: epoch)")
        if not (self.mixup_alpha or self.cutmix_alpha):
            for name in ("mix_prob", "mix_switch_prob"):
                if name in given:
                    fail(name, "applies only with mixup_alpha or cutmix_alpha > 0")
        elif "mix_switch_prob" in given and not (self.mixup_alpha and self.cutmix_alpha):
            fail("mix_switch_prob", "chooses between mixup and CutMix: it needs both alphas > 0")
        if self.batch_size % self.accumulate_steps:
            fail("accumulate_steps", f"{self.accumulate_steps} does not divide batch_size {self.batch_size}")
        if self.iterations:  # detection: what its loop implements
            for name in ("label_smoothing", "cutmix_alpha", "mixup_alpha", "ema_decay", "drop_path", "dropout",
                         "accumulate_steps", "eval_resize", "eval_crop", "cooldown_epochs", "step_before_epoch"):
                if name in given and getattr(self, name) != type(self).model_fields[name].default:
                    fail(name, "is not supported by iteration-based (detection) recipes")
            for name in ("lr_step", "warmup_step"):
                if name in given and getattr(self, name) != "iteration":
                    fail(name, "an iteration-based recipe moves per iteration")

    # The schedule's length, computed here and nowhere else.
    @property
    def total_epochs(self) -> int:
        """Epochs trained in all: the schedule's, the plain epochs after mixup (cmpe-se), and the cool-down."""
        return self.epochs + self.mixup_extra_epochs + self.cooldown_epochs

    @property
    def schedule_epochs(self) -> int:
        """Epochs the lr schedule spans (milestones, a cosine's half period); a cool-down follows it."""
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
# Fields that exist since before issue 17: a job's identity always held them (defaults included). Every
# later field is held only when it differs from its default, so old jobs keep their ids.
LEGACY_FIELDS = ("dataset", "epochs", "iterations", "mixup_extra_epochs", "batch_size", "lr", "momentum", "nesterov",
                 "weight_decay", "milestones", "gamma", "warmup_epochs", "warmup_iterations", "augment",
                 "train_split", "mixup_alpha", "min_size", "backbone_checkpoint")
OPTIONAL_LEGACY = ("bn_batch", "train_images", "test_images")  # held only when set


def recipe_identity(recipe: "Recipe") -> dict[str, Any]:
    """The recipe as a job's identity holds it: follows meaning, not spelling. Every pre-issue-17 field
    as it always was, ``bn_batch`` and the smoke subsets only when set, every newer field only when it
    differs from its default (an iteration-based recipe's step units are moot: always per iteration).
    Both the planner's configuration and a job's JSON use this one function."""
    out = recipe.model_dump(include=set(LEGACY_FIELDS) | {"name"})  # python mode: 0 stays 0, as it always hashed
    fields = type(recipe).model_fields
    for name in OPTIONAL_LEGACY:
        if name in fields and getattr(recipe, name) is not None:
            out[name] = getattr(recipe, name)
    dumped = recipe.model_dump()
    for name, info in fields.items():
        if name in out or name in NOT_IDENTITY or name in OPTIONAL_LEGACY or name == "name":
            continue
        default = info.get_default(call_default_factory=True)
        default = list(default) if isinstance(default, tuple) else default
        if recipe.iterations and name in ("lr_step", "warmup_step"):
            continue
        value = list(dumped[name]) if isinstance(dumped[name], tuple) else dumped[name]
        if value != default:
            out[name] = value
    return out


class JobRecipe(Recipe):
    """A recipe as one job runs it: the paper's, shortened by the budget, with its name and the smoke
    budget's image subsets. The trainer, the detector, the loaders and the bench receive this object; the
    job's JSON holds ``job_dict()`` (what the job's identity hashes)."""

    _spec_checks: ClassVar[bool] = False
    name: str
    train_images: Bounded(int, 1, 10**9) | None = None  # smoke: train on these many images (a fixed subset)
    test_images: Bounded(int, 1, 10**9) | None = None

    @classmethod
    def of(cls, recipe: "JobRecipe | dict") -> "JobRecipe":
        return recipe if isinstance(recipe, cls) else cls.model_validate(recipe)

    def job_dict(self) -> dict[str, Any]:
        """The recipe in a job's JSON: ``recipe_identity`` (what the job's identity hashes)."""
        return recipe_identity(self)


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
    counter_profile: str = DEFAULT_COUNTER_PROFILE
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
    unit: str | float | None = None  # the column's (``Column.unit``)

    @property
    def key(self) -> str:
        return cell_key(self.paper, self.table, self.section, self.row, self.column)

    @property
    def printed(self) -> Printed | None:
        return None if self.published.value in ("-", "?") else Printed.parse(self.published.value, self.unit)


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
    # every paper's folder, loaded or not (``load_catalog(only=)``)
    folders: dict[str, Path] = field(default_factory=dict)

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
                                  published, prod, row.cited, col.unit))
    if mine:
        paper._cells[spec.table] = cells
    return cells


def level_tolerance(paper: Paper, spec: TableSpec, row: Row | None, col: Column) -> float:
    """The accuracy tolerance of a cell: its row's, else its column's, else the table's, else the paper's."""
    for level in (row, col, spec.defaults):
        if level is not None and level.tolerance is not None:
            return level.tolerance
    return paper.spec.tolerance
