"""Figures for reports (matplotlib, Agg): training curves and ours-vs-published scatter."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .compare import Comparison, group_by_budget, pick_budget  # noqa: E402
from .db import Database  # noqa: E402
from .plan import cell_config, config_key  # noqa: E402
from .specs import METRICS, Paper, TableSpec, table_cells  # noqa: E402


def _cell(paper: Paper, ref: str):
    table, row, column = ref.split("/")
    return next(c for c in table_cells(paper, paper.tables[table]) if c.row == row and c.column == column)


def curves(paper: Paper, spec: TableSpec, db: Database, out: Path) -> Path | None:
    """One line per model (mean over seeds), seeds as a min-max band; budget in the legend."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    drew, budgets = False, set()
    for curve in spec.curves:
        key = config_key(cell_config(paper, _cell(paper, curve.cell)))
        by_budget = group_by_budget([r for r in db.results_for([key]) if r["kind"] == "train"])
        budget = pick_budget(by_budget)
        if budget is None:
            continue
        runs = [c for c in db.curves_for(r["job"] for r in by_budget[budget]).values() if c]
        if not runs:
            continue
        n = min(len(c) for c in runs)
        y = np.array([[p[spec.plot_metric or "test_top1_err"] for p in c[:n]] for c in runs])
        epochs = np.arange(1, n + 1)
        budgets.add(budget)
        (line,) = ax.plot(epochs, y.mean(0), label=f"{curve.label} ({budget}, n={len(runs)})")
        if len(runs) > 1:
            ax.fill_between(epochs, y.min(0), y.max(0), color=line.get_color(), alpha=0.2)
        drew = True
    if not drew:
        plt.close(fig)
        return None
    ax.set_xlabel("epoch")
    ax.set_ylabel({"test_top1_err": "test top-1 error (%)", "train_top1_err": "train top-1 error (%)",
                   "train_loss": "train loss"}.get(spec.plot_metric or "test_top1_err", spec.plot_metric))
    short = budgets - {"full"}
    ax.set_title(f"{paper.slug} {spec.title}: ours" + (f" — {'/'.join(sorted(short))} budget, not a reproduction"
                                                        if short else ""))
    ax.legend()
    ax.grid(alpha=0.3)
    path = out / f"{spec.table}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def ours_vs_published(paper: Paper, rows: list[Comparison], out: Path) -> Path | None:
    """Left: counts as ratio ours/published. Right: accuracy-type cells, ours vs published."""
    measured = [r for r in rows if r.ours is not None and r.published is not None]
    if not measured:
        return None
    counts = [r for r in measured if METRICS[r.metric][2]]
    accs = [r for r in measured if not METRICS[r.metric][2]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    colors = {"reproduced": "tab:green", "differs": "tab:red", "not-reproducible": "tab:orange",
              "not-comparable": "tab:gray"}
    ax = axes[0]
    for i, r in enumerate(counts):
        ratio = r.ours / r.published
        ax.scatter(i, ratio, color=colors.get(r.status, "k"), s=18)
        if r.status != "reproduced" and abs(ratio - 1) > 0.005:  # name the visible misses
            ax.annotate(f"{r.table} {r.row[:28]} {r.column}", (i, ratio), fontsize=6, xytext=(3, 2),
                        textcoords="offset points")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_title("params / MACs: ours ÷ published (rounded as printed)")
    ax.set_xlabel("cell")
    ax.set_ylabel("ratio")
    ax = axes[1]
    for r in accs:
        full = r.budget == "full"
        ax.scatter(r.published, r.ours, facecolors=colors.get(r.status, "k") if full else "none",
                   edgecolors=colors.get(r.status, "k"), s=22)
    if accs:
        lo = min(min(r.published for r in accs), min(r.ours for r in accs))
        hi = max(max(r.published for r in accs), max(r.ours for r in accs))
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
    else:
        ax.text(0.5, 0.5, "no accuracy cell measured yet\n(all pending)", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title("accuracy / error (hollow: short budget)")
    ax.set_xlabel("published")
    ax.set_ylabel("ours")
    for status, c in colors.items():
        axes[1].scatter([], [], color=c, label=status)
    axes[1].legend(fontsize=8)
    fig.suptitle(f"{paper.slug}: ours vs published")
    fig.tight_layout()
    path = out / "ours_vs_published.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
