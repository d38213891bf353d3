"""Ours vs published as records: the rows ``repro diff`` prints (table, json, csv) and ``repro.api.cells``
frames, so the command and the API give the same numbers from one implementation (``compare.compare_paper``
over each paper's one expansion, which ``repro report`` renders too).

``--against`` compares two databases cell by cell, and also what each recorded as published: a database
keeps the numbers as they were transcribed when it was run (``published_cells``), so a transcription fixed
since shows as a finding, and a cell whose configuration changed since (a model fix) is said as such.
"""
from __future__ import annotations

from .compare import Comparison, compare_paper
from .db import Database
from .specs import METRICS, Paper
from .states import CellStatus

DIFF_FIELDS = ["paper", "table", "section", "row", "column", "metric", "printed", "published", "ours", "ours_exact",
               "std", "n", "delta", "budget", "status", "detail", "uncertain", "reason", "also", "sem", "ci_low",
               "ci_high", "tolerance", "values", "verdict_note", "report_epoch", "init_from", "unit_off"]


def compared(targets: list[tuple[Paper, str]], db: Database) -> list[Comparison]:
    """The printed cells of the targets, in target order: one comparison per paper of consecutive targets
    (two queries each), never one per table."""
    groups: list[tuple[Paper, list[str]]] = []
    for paper, table in targets:
        if groups and groups[-1][0] is paper:
            groups[-1][1].append(table)
        else:
            groups.append((paper, [table]))
    return [r for paper, tables in groups for r in compare_paper(paper, db, tables)
            if r.status != CellStatus.NOT_PRINTED]


def number(x, count: bool = False):
    """A number as a reader writes it: counts as integers, other floats at 12 significant digits (a mean of
    seeds prints 28.1, not 28.099999999999998; 21.655 stays 21.655); lists and dicts element by element."""
    if isinstance(x, dict):
        return {k: number(v, count) for k, v in x.items()}
    if isinstance(x, list):
        return [number(v, count) for v in x]
    if not isinstance(x, float):
        return x
    if count and x.is_integer():
        return int(x)
    return float(f"{x:.12g}")


def record(r: Comparison) -> dict:
    """One cell as ``repro diff --format json`` prints it."""
    rec = {k: number(getattr(r, k)) for k in DIFF_FIELDS}
    rec["ours_exact"] = number(r.ours_exact, count=METRICS[r.metric][2])
    return rec


def cell_id(r: Comparison) -> tuple:
    return r.paper, r.table, r.section, r.row, r.column


def against_records(ours: list[Comparison], theirs: list[Comparison], published: dict[tuple, dict] | None = None,
                    recorded: set[tuple[str, str]] | None = None) -> list[dict]:
    """Cell by cell, ours (--db) beside the other database's ours; ``change`` is ours minus theirs in the
    printed unit, unrounded (so a count that moved by one parameter shows). ``published`` and ``recorded``
    are what the other database recorded (``queries.published_cells``, ``queries.recorded_tables``):
    ``against_printed`` is its transcription of the cell (None: not recorded), ``transcription_changed``
    whether ours differs, ``configuration_changed`` whether the cell pointed at another configuration there."""
    published, recorded = published or {}, recorded or set()
    other = {cell_id(r): r for r in theirs}
    out = []
    for r in ours:
        o = other.get(cell_id(r))
        scale = r.scale if r.published is not None else 1
        mine = r.ours_exact / scale if r.ours_exact is not None else None
        them = o.ours_exact / scale if o is not None and o.ours_exact is not None else None
        change = round(mine - them, 9) if mine is not None and them is not None else None
        then = published.get(cell_id(r))
        out.append({"paper": r.paper, "table": r.table, "section": r.section, "row": r.row, "column": r.column,
                    "metric": r.metric, "printed": r.printed, "published": r.published, "ours": number(r.ours),
                    "against": number(o.ours) if o else None, "change": number(change), "budget": r.budget,
                    "against_budget": o.budget if o else None, "n": r.n, "against_n": o.n if o else 0,
                    "status": r.status, "against_status": o.status if o else CellStatus.PENDING,
                    "against_printed": then["printed"] if then else None,
                    "transcription_changed": bool(then) and then["printed"] != r.printed,
                    "new_cell": then is None and (r.paper, r.table) in recorded,
                    "configuration_changed": bool(then and then["config_key"] and r.config_key
                                                  and then["config_key"] != r.config_key)})
    return out
