"""The counter finder: which counter profile and parameter convention give the numbers a paper printed.

A paper's MAC and parameter counts depend on the tool that counted them (``repro.counting``: the thop builds
as profiles, parameters plain or with BatchNorm running statistics as MXNet Gluon lists them). ``count_all``
builds a model once and counts it every way repro knows; ``explain_table`` does that for every count cell of a
table, building each distinct configuration once, and says per cell which ways reproduce the printed number
(rounded as printed, the rule ``compare`` judges by) and which ``counter_profile`` the spec uses.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from .plan import cell_config
from .specs import DEFAULT_COUNTER_PROFILE, METRICS, Paper, table_cells

# the parameter conventions, by the metric that stores each (repro.counting.PARAM_CONVENTIONS)
CONVENTIONS = {"params": "torch", "params_mxnet": "mxnet"}


@dataclass(frozen=True)
class AllCounts:
    """One model counted every way: MACs per profile, parameters per convention."""

    macs: dict[str, int]
    params: dict[str, int]  # convention -> count (torch: model.parameters(); mxnet: + BN running statistics)
    input_size: tuple[int, ...]


def count_all(model, input_size: tuple[int, ...]) -> AllCounts:
    """``model`` (built once) counted under every profile and parameter convention."""
    from .counting import PARAM_CONVENTIONS, PROFILES, count_macs, count_params

    return AllCounts({p: count_macs(model, input_size, p) for p in PROFILES},
                     {c: count_params(model, c) for c in PARAM_CONVENTIONS}, tuple(input_size))


def build(model: str, kwargs: dict):
    """A model as a profile job builds it (no weight init: no count depends on a weight's value)."""
    import repro_models as models
    from .counting import skip_init

    with skip_init():
        return models.create(model, **kwargs)


@dataclass
class CellExplanation:
    row: str
    section: str | None
    column: str
    metric: str
    printed: str
    model: str
    used: str  # the profile (macs) or convention (params) the spec uses now
    counts: dict[str, int]  # profile or convention -> our exact count
    matches: list[str]  # the profiles or conventions whose count rounds to the printed number

    @property
    def kind(self) -> str:
        return "profile" if self.metric == "macs" else "convention"


@dataclass
class TableExplanation:
    paper: str
    table: str
    cells: list[CellExplanation] = field(default_factory=list)
    builds: int = 0  # models built (one per distinct configuration)
    spec_profile: str = DEFAULT_COUNTER_PROFILE  # the paper's counter_profile

    def suggested_profile(self) -> str | None:
        """The profile that reproduces the most MAC cells (the paper's own on a tie); None without MAC cells."""
        macs = [c for c in self.cells if c.metric == "macs"]
        if not macs:
            return None
        votes = Counter(p for c in macs for p in c.matches)
        if not votes:
            return None
        best = max(votes.values())
        tied = [p for p, n in votes.items() if n == best]
        return self.spec_profile if self.spec_profile in tied else sorted(tied)[0]

    def suggested_also(self) -> list[str]:
        """Parameter metrics to show beside a params column: the convention cells match only that way."""
        out = []
        for c in self.cells:
            if c.kind == "convention" and c.matches and CONVENTIONS[c.metric] not in c.matches:
                metric = next(m for m, conv in CONVENTIONS.items() if conv == c.matches[0])
                if metric not in out:
                    out.append(metric)
        return out


def explain_table(paper: Paper, table: str, builder=build) -> TableExplanation:
    """Every count cell of ``paper``'s ``table`` counted every way; each configuration built once."""
    from .specs import Printed

    out = TableExplanation(paper.slug, table, spec_profile=paper.spec.counter_profile)
    counted: dict[str, AllCounts] = {}
    for cell in table_cells(paper, paper.tables[table]):
        if not METRICS[cell.metric][2] or cell.printed is None or cell.cited:
            continue
        config = cell_config(paper, cell)
        if config is None:
            continue
        key = json.dumps([config["model"], config["model_kwargs"], config["input_size"]], sort_keys=True)
        if key not in counted:
            counted[key] = count_all(builder(config["model"], config["model_kwargs"]), tuple(config["input_size"]))
            out.builds += 1
        counts = counted[key]
        printed: Printed = cell.printed
        if cell.metric == "macs":
            ways, used = counts.macs, config["counter_profile"]
        else:
            ways, used = counts.params, CONVENTIONS[cell.metric]
        matches = [w for w, n in ways.items() if printed.rounds_to(n) == printed.value]
        out.cells.append(CellExplanation(cell.row, cell.section, cell.column, cell.metric, cell.published.value,
                                         config["model"], used, dict(ways), matches))
    return out
