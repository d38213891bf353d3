"""Figures for reports (matplotlib, Agg): training curves in the papers' layout and ours vs published.

Every figure is a PNG file (the Markdown links it, the HTML report inlines it as base64). A figure with
nothing to draw returns None and removes a stale file of the same name, so a report never shows curves
the database no longer holds. Each PNG carries the hash of what it was drawn from (the numbers, labels,
statuses and this module's source) in a text chunk: a report redraws only the figures whose inputs
changed, since drawing is most of a report's time.
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .compare import Comparison, group_by_budget, pick_budget
from .db import Database
from .expanded import ExpandedPaper, expand
from .specs import METRICS, Paper, TableSpec
from .states import CellStatus


def _pyplot():
    """matplotlib on the Agg backend, imported only when a figure is drawn (a report whose figures are all
    up to date never pays its second of import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# Known statuses; anything else (a status added later) is drawn in a neutral colour, never dropped.
STATUS_COLORS = {CellStatus.REPRODUCED: "tab:green", CellStatus.DIFFERS: "tab:red",
                 CellStatus.NOT_REPRODUCIBLE: "tab:orange", CellStatus.NOT_COMPARABLE: "tab:gray",
                 CellStatus.INCONCLUSIVE: "tab:purple", CellStatus.NO_NUMBER: "tab:blue"}
NEUTRAL = "#555555"
METRIC_LABELS = {"test_top1_err": "test top-1 error (%)", "train_top1_err": "training top-1 error (%)",
                 "train_loss": "training loss"}


@dataclass(frozen=True)
class Layout:
    """How a paper draws a curve figure: one panel per metric, the paper's colour per curve."""

    panels: tuple[str, ...] = ("test_top1_err",)
    colors: tuple[str, ...] | None = None


# From the captions in shared/papers: se-r Figs. 3-5 are one panel of test error per epoch, the colours
# named in each caption (Fig. 3/4: SE-ResNet orange, SE-R-ResNet blue; Fig. 5: red, green); cra Figs. 3
# and 6 are "training and test error curves" of three models: a training and a test panel side by side.
LAYOUTS = {
    ("se-r", "figure3"): Layout(colors=("tab:orange", "tab:blue")),
    ("se-r", "figure4"): Layout(colors=("tab:orange", "tab:blue")),
    ("se-r", "figure5"): Layout(colors=("tab:red", "tab:green")),
    ("cra", "figure3"): Layout(panels=("train_top1_err", "test_top1_err")),
    ("cra", "figure6"): Layout(panels=("train_top1_err", "test_top1_err")),
}


def layout_for(paper: Paper, spec: TableSpec) -> Layout:
    return LAYOUTS.get((paper.slug, spec.table), Layout(panels=(spec.plot_metric or "test_top1_err",)))


_KEY = "repro-key"  # a PNG text chunk: the hash of everything the figure was drawn from


@functools.lru_cache(maxsize=1)
def _code_version() -> str:
    from importlib.metadata import version

    return hashlib.sha256(Path(__file__).read_bytes() + version("matplotlib").encode()).hexdigest()


def figure_key(*inputs) -> str:
    """Hash of a figure's inputs (the numbers, labels and statuses it draws) and of the code that draws it."""
    blob = json.dumps([_code_version(), *inputs], sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _up_to_date(path: Path, key: str) -> bool:
    """The PNG on disk was drawn from exactly these inputs (drawing is most of a report's time)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.info.get(_KEY) == key  # the text chunks before the image data: nothing decoded
    except (OSError, ValueError, SyntaxError):  # missing, truncated or not a PNG: draw it again
        return False


def _save(fig, path: Path, key: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={_KEY: key})
    _pyplot().close(fig)
    return path


def _nothing(path: Path) -> None:
    path.unlink(missing_ok=True)
    return None


@dataclass(frozen=True)
class Curve:
    """One model's curve over its seeds: per epoch that every seed reached, the mean, min and max of
    each metric (``<metric>_mean/_min/_max``), and how many seeds (``n``) it summarises."""

    n: int
    points: list[dict]


def curve_series(paper: Paper | ExpandedPaper, spec: TableSpec, db: Database
                 ) -> list[tuple[str, str | None, Curve | None]]:
    """(label, budget, curve) per curve of a figure: one query for the jobs, one aggregate per curve (the
    database averages the seeds per epoch), and only the curves of the budget shown are read."""
    keys = [expand(paper).ref(c.cell).config_key for c in spec.curves]
    by_key: dict[str, list[dict]] = {}
    for r in db.results_for(keys):
        if r["kind"] == "train":
            by_key.setdefault(r["config_key"], []).append(r)
    metrics = layout_for(paper, spec).panels
    out = []
    for curve, key in zip(spec.curves, keys):
        by_budget = group_by_budget(by_key.get(key, []))
        budget = pick_budget(by_budget)
        jobs = [r["job"] for r in by_budget[budget]] if budget else []
        points = db.curve_summary(jobs, metrics) if jobs else []
        out.append((curve.label, budget, Curve(len(jobs), points) if points else None))
    return out


def curves(paper: Paper, spec: TableSpec, db: Database, out: Path) -> Path | None:
    """The figure's PNG, or None (and no stale file) when none of its models has a curve yet."""
    path = out / f"{spec.table}.png"
    series = curve_series(paper, spec, db)
    drawn = [(label, budget, c and (c.n, c.points)) for label, budget, c in series]
    key = figure_key("curves", paper.slug, spec.table, spec.title, drawn)
    if _up_to_date(path, key):
        return path
    fig = curve_figure(paper, spec, series)
    return _save(fig, path, key) if fig is not None else _nothing(path)


def curve_figure(paper: Paper, spec: TableSpec, series_in: list[tuple[str, str | None, Curve | None]]):
    """The paper's panels; one line per model (mean over seeds), the seeds' min-max as a band."""
    layout = layout_for(paper, spec)
    series = [(i, label, budget, c) for i, (label, budget, c) in enumerate(series_in) if c is not None and c.points]
    if not series:
        return None
    from matplotlib.ticker import MaxNLocator

    fig, axes = _pyplot().subplots(1, len(layout.panels), figsize=(6.4 * len(layout.panels), 4.2), squeeze=False)
    budgets = {budget for _, _, budget, _ in series}
    for ax, metric in zip(axes[0], layout.panels):
        for i, label, budget, c in series:
            epochs = [p["epoch"] for p in c.points]  # seeds still running are cut to the common epochs
            color = layout.colors[i] if layout.colors and i < len(layout.colors) else f"C{i}"
            ax.plot(epochs, [p[f"{metric}_mean"] for p in c.points], color=color, label=f"{label} ({budget}, n={c.n})")
            if c.n > 1:
                ax.fill_between(epochs, [p[f"{metric}_min"] for p in c.points], [p[f"{metric}_max"] for p in c.points],
                                color=color, alpha=0.2, lw=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.set_xlabel("epoch")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    short = budgets - {"full"}
    fig.suptitle(f"{paper.slug} {spec.title}: ours" + (f" ({'/'.join(sorted(short))} budget, not a reproduction)"
                                                        if short else ""))
    fig.tight_layout()
    return fig


def cell_name(r: Comparison, paper: Paper | None = None, width: int = 72) -> str:
    """A point's name on the axis: table, row (with its section), column. A long name loses the middle of
    its row label, never the table or the column that tell two cells of one row apart. A sweep point's
    row label is only the swept value, so the sweep's header is put before it."""
    sweep = paper.tables[r.table].sweep if paper else None
    row = f"{sweep.label} {r.row}" if sweep and any(p.label == r.row for p in sweep.points) else r.row
    row = f"{r.section} / {row}" if r.section else row
    table, column = r.table.replace("table", "T"), r.column
    room = width - len(table) - len(column) - 4
    if len(row) > room:
        row = row[:max(room, 8) // 2] + "…" + row[-(max(room, 8) - max(room, 8) // 2 - 1):]
    return f"{table} {row} · {column}"


def _dot_panel(ax, paper: Paper, rows: list[Comparison], values: list[float], errors: list[float | None],
               xlabel: str) -> None:
    """One named tick per cell (never overprints: the figure grows with the cells); hollow = short budget."""
    import numpy as np

    ys = np.arange(len(rows))[::-1]
    groups: dict[tuple[str, bool], list[int]] = {}  # one artist per (status, budget kind): fast to draw
    for i, r in enumerate(rows):
        groups.setdefault((r.status, r.budget in ("full", "static")), []).append(i)
    for (status, full), idx in groups.items():
        color = STATUS_COLORS.get(status, NEUTRAL)
        err = [errors[i] or 0.0 for i in idx]
        ax.errorbar([values[i] for i in idx], ys[idx], xerr=err if any(err) else None, fmt="o", ms=5, color=color,
                    mfc=color if full else "white", mec=color, elinewidth=1, capsize=2)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(ys, [cell_name(r, paper) for r in rows], fontsize=7)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    lo, hi = min(values + [0]), max(values + [0])
    pad = 0.08 * (hi - lo or 1)
    ax.set_xlim(lo - pad, hi + pad)


def ours_vs_published(paper: Paper, rows: list[Comparison], out: Path) -> Path | None:
    """The overview PNG, or None (and no stale file) when no cell with a printed number is measured."""
    path = out / "ours_vs_published.png"
    drawn = [(cell_name(r, paper), r.metric, r.status, r.budget, r.ours, r.published, r.std) for r in rows
             if r.ours is not None and r.published is not None]
    key = figure_key("ours_vs_published", paper.slug, drawn)
    if drawn and _up_to_date(path, key):
        return path
    fig = ours_vs_published_figure(paper, rows)
    return _save(fig, path, key) if fig is not None else _nothing(path)


def ours_vs_published_figure(paper: Paper, rows: list[Comparison]):
    """Each measured cell by name: counts as % off the printed value, accuracies as points off (± std)."""
    measured = [r for r in rows if r.ours is not None and r.published is not None]
    if not measured:
        return None
    counts = [r for r in measured if METRICS[r.metric][2]]
    # a short budget (smoke: 2 epochs) lands tens of points away: on a panel of its own, never on the axis of
    # the full results it would squash
    accs = [r for r in measured if not METRICS[r.metric][2] and r.budget in ("full", "static")]
    short = [r for r in measured if not METRICS[r.metric][2] and r.budget not in ("full", "static")]
    panels = [p for p in (counts, accs, short) if p]
    from matplotlib.lines import Line2D

    fig, axes = _pyplot().subplots(len(panels), 1, squeeze=False,
                                   gridspec_kw={"height_ratios": [len(p) + 3 for p in panels]},
                             figsize=(9, 1.2 + 0.2 * sum(len(p) + 3 for p in panels)))
    axes = list(axes[:, 0])
    if counts:
        ax = axes.pop(0)
        _dot_panel(ax, paper, counts, [100 * (r.ours - r.published) / r.published for r in counts],
                   [None] * len(counts),
                   "ours − published, % of the printed count (rounded as printed)")
        ax.set_title("parameters and MACs/FLOPs", fontsize=10)
    if accs:
        ax = axes.pop(0)
        _dot_panel(ax, paper, accs, [r.ours - r.published for r in accs], [r.std for r in accs],
                   "ours − published, points (bar: ± std over seeds)")
        ax.set_title("accuracy / error / mAP", fontsize=10)
    if short:
        ax = axes.pop(0)
        _dot_panel(ax, paper, short, [r.ours - r.published for r in short], [r.std for r in short],
                   "ours − published, points: short budgets, never compared with the paper")
        ax.set_title("accuracy / error / mAP at short budgets (smoke, epochs-N): own axis", fontsize=10)
    shown = sorted({r.status for r in measured}, key=lambda s: (s not in STATUS_COLORS, s))
    handles = [Line2D([], [], ls="", marker="o", color=STATUS_COLORS.get(s, NEUTRAL), label=s) for s in shown]
    if any(r.budget not in ("full", "static") for r in measured):
        handles.append(Line2D([], [], ls="", marker="o", color="k", mfc="white", label="short budget (hollow)"))
    fig.legend(handles=handles, loc="upper right", fontsize=8, ncols=min(len(handles), 4))
    fig.suptitle(f"{paper.slug}: ours vs published, by cell", x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    return fig
