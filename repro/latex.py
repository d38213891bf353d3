"""``repro diff --format latex``: each table in the paper's layout (its rows, columns and sections, as the
spec has them) with booktabs rules: the published value, ours as mean ± std (n), and a marker per status,
explained in a footnote line under the table. Every string from a spec or the database is escaped."""
from __future__ import annotations

from .compare import Comparison
from .specs import METRICS, Printed
from .states import CellStatus

MARK = {CellStatus.REPRODUCED: r"\checkmark", CellStatus.DIFFERS: r"$\times$", CellStatus.INCONCLUSIVE: "?",
        CellStatus.DIVERGED: r"$\dagger$", CellStatus.NOT_REPRODUCIBLE: r"$\ddagger$", CellStatus.NOT_COMPARABLE: "nc",
        CellStatus.PENDING: "--", CellStatus.CITED: "c", CellStatus.NO_NUMBER: "nn"}
_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "×": r"$\times$",
            "⚠": "(!)"}


def escape(text) -> str:
    return "".join(_SPECIAL.get(ch, ch) for ch in str(text))


def _ours(r: Comparison) -> str:
    if r.status == CellStatus.DIVERGED:
        return "diverged"
    if r.ours is None:
        return "pending" if r.status == CellStatus.PENDING else ""
    if METRICS[r.metric][2]:
        return escape(Printed.parse(r.printed).show(r.ours))
    std = f" $\\pm$ {r.std:.2f}" if r.std is not None else ""
    return f"{r.ours:.2f}{std} ({r.n})"


def _cell(r: Comparison | None) -> str:
    if r is None:
        return ""
    published = escape(r.printed) + ("$^{(!)}$" if r.uncertain else "")
    ours = _ours(r)
    return f"{published} / {ours} {MARK.get(r.status, '')}".strip() if ours else f"{published} {MARK.get(r.status, '')}"


def table(title: str, rows: list[Comparison]) -> str:
    """One table: rows and sections in the order the comparisons come (the spec's), columns likewise."""
    columns: list[str] = []
    for r in rows:
        if r.column not in columns:
            columns.append(r.column)
    by_row: dict[tuple, dict[str, Comparison]] = {}
    for r in rows:
        by_row.setdefault((r.section, r.row), {})[r.column] = r
    lines = [r"\begin{table}[ht]", r"\centering", f"\\caption{{{escape(title)}: published / ours}}",
             r"\begin{tabular}{l" + "c" * len(columns) + "}", r"\toprule",
             " & ".join(["Model"] + [escape(c) for c in columns]) + r" \\", r"\midrule"]
    first, section = True, None
    for (sec, row), cells in by_row.items():
        if sec != section and sec:
            if not first:
                lines.append(r"\midrule")
            lines.append(f"\\multicolumn{{{len(columns) + 1}}}{{l}}{{\\textit{{{escape(sec)}}}}} \\\\")
        section, first = sec, False
        lines.append(" & ".join([escape(row)] + [_cell(cells.get(c)) for c in columns]) + r" \\")
    used = [s for s in MARK if any(r.status == s for r in rows)]
    legend = "; ".join(f"{MARK[s]} {escape(s.value if hasattr(s, 'value') else s)}" for s in used)
    lines += [r"\bottomrule", r"\end{tabular}",
              r"\par\smallskip\footnotesize Each cell: published / ours, ours as mean $\pm$ std (seeds); "
              + legend + ".",
              r"\end{table}"]
    return "\n".join(lines)


def document(tables: list[tuple[str, list[Comparison]]]) -> str:
    """A standalone document of the tables (booktabs, amssymb for the markers)."""
    body = "\n\n".join(table(t, rows) for t, rows in tables)
    return ("\\documentclass{article}\n\\usepackage[utf8]{inputenc}\n\\usepackage{booktabs}\n\\usepackage{amssymb}\n"
            "\\begin{document}\n" + body + "\n\\end{document}\n")
