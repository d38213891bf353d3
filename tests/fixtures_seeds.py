"""A SYNTHETIC results database with several seeds per cell, written through the real ``Database`` API.

Nothing here was measured: the values are chosen so that every cell verdict (reproduced, differs,
inconclusive, diverged, pending) and every claim verdict (holds, holds smaller, not significant,
reversed, pending) occurs, on se-r Table 3 and on a toy paper. Used by tests/test_compare.py and
tests/test_claims.py, and reusable by any renderer's tests (``write_seed_fixture``). Never point it at
results.db.
"""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from repro.states import Divergence

REPO = Path(__file__).resolve().parent.parent

# The toy paper of conftest.py with more rows and two claims (error: lower is better; tolerance 0.5).
SEED_TOY_TABLE = """\
table: table1
title: "Table 1"
columns:
  - {label: Params, metric: params}
  - {label: Error, metric: top1_err, also: [top5_err]}
defaults:
  recipe: tiny
rows:
  - {label: ResNet-56, model: resnet56_cifar, values: {Params: "858.87K", Error: "27.25"}}
  - {label: CRA-ResNet-56, model: cra_resnet56_cifar, values: {Params: "924.39K", Error: "26.36"}}
  - {label: SE-ResNet-56, model: se_resnet56_cifar, values: {Error: "26.90"}}
  - {label: ResNet-110, model: resnet110_cifar, values: {Error: "30.00"}}
claims:
  - {text: "CRA lowers the error of ResNet-56", column: Error, better: CRA-ResNet-56, worse: ResNet-56}
  - {text: "SE lowers the error of ResNet-56", column: Error, better: SE-ResNet-56, worse: ResNet-56}
"""

# cell key -> per-seed value (a float, or "diverged:E" for a seed whose loss became nan at epoch E)
SE_R_TABLE3 = {
    "se-r/table3/SE-ResNet34/Accuracy": [78.0, 78.3, 78.2],  # mean 78.17 vs 78.12: reproduced
    "se-r/table3/SE-R-ResNet34/Accuracy": [79.1, 78.9, 79.0],  # 79.00 vs 78.98: reproduced; pair holds
    "se-r/table3/SE-ResNet50/Accuracy": [76.0, 76.2, 76.1],  # 76.10 vs 78.22: differs
    "se-r/table3/SE-R-ResNet50/Accuracy": [76.3, 76.5, 76.4],  # differs; pair: +0.30 vs +1.74: holds, smaller
    "se-r/table3/SE-ResNet101/Accuracy": [77.2, 78.8, 77.6],  # 77.87 vs 78.54, wide interval: inconclusive
    "se-r/table3/SE-R-ResNet101/Accuracy": [80.5, 80.4, "diverged:37"],  # diverged; pair pending
}
TOY_TABLE1 = {
    "toy/table1/ResNet-56/Error": [27.3, 27.1, 27.2],  # reproduced
    "toy/table1/CRA-ResNet-56/Error": [28.0, 28.2, 28.1],  # differs; claim reversed
    "toy/table1/SE-ResNet-56/Error": [26.9, 27.1, 26.8],  # reproduced; claim not significant
    "toy/table1/ResNet-110/Error": [31.5],  # n = 1, 1.5 away: inconclusive
    "toy/table1/ResNet-56/Params": [858_870],  # a static count: exact, printed 858.87K (CRA's stays pending)
}
EXPECTED_STATUS = {
    "se-r/table3/SE-ResNet34/Accuracy": "reproduced", "se-r/table3/SE-R-ResNet34/Accuracy": "reproduced",
    "se-r/table3/SE-ResNet50/Accuracy": "differs", "se-r/table3/SE-R-ResNet50/Accuracy": "differs",
    "se-r/table3/SE-ResNet101/Accuracy": "inconclusive", "se-r/table3/SE-R-ResNet101/Accuracy": "diverged",
    "toy/table1/ResNet-56/Error": "reproduced", "toy/table1/CRA-ResNet-56/Error": "differs",
    "toy/table1/SE-ResNet-56/Error": "reproduced", "toy/table1/ResNet-110/Error": "inconclusive",
    "toy/table1/ResNet-56/Params": "reproduced", "toy/table1/CRA-ResNet-56/Params": "pending",
}
EXPECTED_PAIRS = {  # (table, better row) -> verdict of its pair
    ("table3", "SE-R-ResNet34"): "holds", ("table3", "SE-R-ResNet50"): "holds, smaller",
    ("table3", "SE-R-ResNet101"): "pending",
    ("table1", "CRA-ResNet-56"): "reversed", ("table1", "SE-ResNet-56"): "not significant",
}


def write_seed_specs(root: Path) -> Path:
    """A specs directory holding the seed toy paper and se-r (its paper.yaml and Table 3 only)."""
    from conftest import write_toy

    write_toy(root, table=SEED_TOY_TABLE)
    (root / "se-r").mkdir()
    for name in ("paper.yaml", "table3.yaml"):
        shutil.copy(REPO / "specs" / "se-r" / name, root / "se-r" / name)
    return root


def write_seed_fixture(db_url: str, specs_dir=None) -> dict:
    """Write the synthetic seeds into ``db_url`` for the papers of ``specs_dir`` that it knows (se-r
    Table 3; the toy paper of ``write_seed_specs``). Returns what it wrote and the verdicts expected."""
    from repro.catalog import load_catalog
    from repro.db import Database
    from repro.plan import plan, published_rows

    if "results.db" in db_url:
        raise ValueError("the synthetic seed fixture never writes results.db")
    catalog = load_catalog(specs_dir)
    values = {**(SE_R_TABLE3 if "se-r" in catalog.papers else {}), **(TOY_TABLE1 if "toy" in catalog.papers else {})}
    targets = [(catalog.papers[slug], table) for slug, table in (("se-r", "table3"), ("toy", "table1"))
               if slug in catalog.papers]
    jobs = plan(catalog, targets, budget="full", seeds=3)
    db = Database(db_url)
    db.sync_published(*published_rows(catalog, targets))
    written = []
    for job in jobs:
        seeds = next((values[c] for c in job.cells if c in values), [])
        if (job.seed or 0) >= len(seeds):
            continue  # a cell with fewer seeds (or none): the job is never written
        db.add_jobs([job.row()])
        owner = "synthetic-fixture"
        assert db.claim(job.id, owner, dt.datetime(2000, 1, 1))
        trained = job.kind != "profile"
        run = db.start_run(job.id, owner, host="synthetic", pid=0, device="synthetic (no training ran)",
                           versions={"fixture": "synthetic_seeds"},
                           **({"engine": "fast", "precision": "bf16", "compiled": False} if trained else {}))
        value = seeds[job.seed or 0]
        if job.kind == "profile":
            db.complete(job.id, run, owner, {"params": (float(value), "synthetic")})
        elif isinstance(value, str):  # "diverged:E"
            db.complete(job.id, run, owner, {}, divergence=Divergence("nan", "epoch", int(value.split(":")[1])))
        else:
            metric = "top1_acc" if job.cells[0].startswith("se-r/") else "top1_err"
            metrics = {metric: (value, None)}
            if metric == "top1_err":
                metrics["top5_err"] = (round(value - 20.0, 6), None)
            else:  # se-r is judged on its best epoch (report_epoch: best): these synthetic runs peak at the end
                metrics["best_top1_err"] = (round(100.0 - value, 6), None)
            db.complete(job.id, run, owner, metrics)
        written.append({"job": job.id, "cells": job.cells, "seed": job.seed, "value": value})
    db.dispose()
    return {"url": db_url, "jobs": written, "values": values,
            "expected_status": {k: v for k, v in EXPECTED_STATUS.items() if k.split("/")[0] in catalog.papers},
            "expected_pairs": EXPECTED_PAIRS}
