"""A paper's specs expanded once: every cell with its table, tolerance, configuration and configuration key.

Every reader of a paper (compare, the GPU-hour estimate, the Markdown and HTML reports, figures, diff, the
Python API) needs the same expansion: the table's rows (a sweep unrolled), its cells with their merged
production (``specs.table_cells``), each cell's budget- and seed-free configuration (``plan.cell_config``)
and that configuration's key. ``expand(paper)`` builds it on first use, one table at a time, and keeps it
on the ``Paper``, so a report expands each table once however many readers it has. Functions that take a
``Paper`` accept an ``ExpandedPaper`` too: ``expand`` returns one as it is.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from .specs import METRICS, CellSpec, Paper, Row, TableSpec, level_tolerance, table_cells, table_rows


@dataclass(frozen=True)
class ExpandedCell:
    """One published cell and what produces it."""

    cell: CellSpec
    spec: TableSpec  # the cell's table
    config: dict | None  # plan.cell_config: None when nothing runs (cited, or printed '-')
    config_key: str | None
    tolerance: float  # accuracy points (row, else column, else table, else paper)
    also: tuple[str, ...]  # more metrics of the same runs the column asks to show
    report_epoch: str = "final"  # the epoch whose numbers the paper reports: the recipe's, else the paper's

    @property
    def key(self) -> str:
        return self.cell.key

    @property
    def kind(self) -> str:
        """profile | train | detect: the kind of job that measures the cell's metric."""
        return METRICS[self.cell.metric][0]

    @property
    def recipe(self) -> str | None:
        return self.cell.production.get("recipe")


@dataclass(frozen=True)
class ExpandedTable:
    spec: TableSpec
    rows: list[Row]  # explicit rows, then the sweep's
    cells: list[ExpandedCell]
    settings: list[str]  # the printed configuration columns (e.g. lossW1), sorted

    def find(self, row: str, column: str, section: str | None = None, *, any_section: bool = False
             ) -> ExpandedCell | None:
        for c in self.cells:
            if c.cell.row == row and c.cell.column == column and (any_section or c.cell.section == section):
                return c
        return None


@dataclass
class ExpandedPaper:
    paper: Paper
    _tables: dict[str, ExpandedTable] = field(default_factory=dict, repr=False)

    # what callers read from a Paper, so an ExpandedPaper can stand in for one
    @property
    def slug(self) -> str:
        return self.paper.slug

    @property
    def spec(self):
        return self.paper.spec

    @property
    def tables(self) -> dict[str, TableSpec]:
        return self.paper.tables

    @property
    def path(self):
        return self.paper.path

    def table(self, name: str) -> ExpandedTable:
        hit = self._tables.get(name)
        if hit is None:
            hit = self._tables[name] = _expand_table(self.paper, self.paper.tables[name])
        return hit

    def cells(self, tables: Iterable[str] | None = None, kind: str | None = "table") -> list[ExpandedCell]:
        """The cells of ``tables`` (default every table, in spec order) whose spec is of ``kind`` (``table``:
        what reports compare; ``figure``: numbers read off figures; None: both)."""
        names = self.paper.tables if tables is None else tables
        return [c for name in names if kind in (None, self.paper.tables[name].kind) for c in self.table(name).cells]

    def ref(self, ref: str) -> ExpandedCell:
        """A figure's curve reference ``<table>/<row label>/<column label>`` (the first row of that label)."""
        table, row, column = ref.split("/")
        hit = self.table(table).find(row, column, any_section=True)
        if hit is None:
            raise KeyError(f"{self.slug}: no cell {ref!r}")
        return hit

    def configs(self, kinds: Iterable[str] = ("train", "detect"), tables: Iterable[str] | None = None
                ) -> dict[str, dict]:
        """The distinct configurations of the cells of ``tables`` (default all) of these kinds, by key."""
        kinds = set(kinds)
        return {c.config_key: c.config for c in self.cells(tables, kind=None)
                if c.config is not None and c.config["kind"] in kinds}


def _expand_table(paper: Paper, spec: TableSpec) -> ExpandedTable:
    from .plan import cell_config, config_key  # plan imports the specs; imported here, never at load

    rows = table_rows(spec)
    by_row = {(r.section, r.label): r for r in rows}
    cols = {c.label: c for c in spec.columns}
    cells = []
    for cell in table_cells(paper, spec):  # the catalog's check built them
        config = cell_config(paper, cell)
        col = cols[cell.column]
        recipe = paper.spec.recipes.get(cell.production.get("recipe") or "")
        epoch = (recipe.report_epoch if recipe is not None and recipe.report_epoch else paper.spec.report_epoch)
        cells.append(ExpandedCell(cell, spec, config, config_key(config) if config else None,
                                  level_tolerance(paper, spec, by_row.get((cell.section, cell.row)), col),
                                  tuple(col.also), epoch))
    settings = sorted({k for row in rows for k in (row.settings or {})})
    return ExpandedTable(spec, rows, cells, settings)


def expand(paper: Paper | ExpandedPaper) -> ExpandedPaper:
    """The paper's expansion, built once per loaded ``Paper`` (tables expanded as they are first read)."""
    if isinstance(paper, ExpandedPaper):
        return paper
    if paper._expanded is None:
        paper._expanded = ExpandedPaper(paper)
    return paper._expanded
