"""Specs, commands and queries shared by the integration tests (any SQLAlchemy URL)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from conftest import REPO, TINY_TRAIN, write_toy

# A static table (two profile jobs) and a training table small enough to train in seconds on a CPU:
# a depth-8 CIFAR ResNet, two seeds = two training jobs.
STATIC = """\
table: table1
title: "Static table"
columns:
  - {label: Params, metric: params}
  - {label: FLOPs, metric: macs}
defaults:
  recipe: tiny
rows:
  - {label: ResNet-56, model: resnet56_cifar, values: {Params: "858.87K", FLOPs: "126.57M"}}
  - {label: CRA-ResNet-56, model: cra_resnet56_cifar, values: {Params: "924.39K", FLOPs: "126.63M"}}
"""


def env() -> dict:
    """The environment of CLI subprocesses, read when called (the Slurm fixture sets SLURM_CONF)."""
    out = {**os.environ, "OMP_NUM_THREADS": "1", "REPRO_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    out.pop("REPRO_DB", None)
    return out


def specs(root: Path) -> Path:
    write_toy(root, paper="stat", table=STATIC)
    write_toy(root, paper="toy", table=TINY_TRAIN)
    return root


def run_args(targets: list[str], specs_dir: Path, url: str, data: Path, ckpt: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "repro.cli", "run", *targets, "--specs-dir", str(specs_dir), "--db", url,
            "--data-dir", str(data), "--checkpoint-dir", str(ckpt), *extra]


def start(args: list[str], cwd: Path = REPO) -> subprocess.Popen:
    return subprocess.Popen(args, env=env(), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def rows(url: str, sql: str, **params) -> list[tuple]:
    engine = create_engine(url)
    try:
        with engine.connect() as con:
            return [tuple(r) for r in con.execute(text(sql), params)]
    finally:
        engine.dispose()


def wait_for(url: str, sql: str, timeout: float = 240, **params) -> list[tuple]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            found = rows(url, sql, **params)
        except Exception:  # schema not created yet
            found = []
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for: {sql}")


CURVE = "select j.model, j.seed, c.epoch, c.train_loss, c.test_top1_err from curve_points c " \
        "join jobs j on j.id = c.job_id order by j.model, j.seed, c.epoch"
