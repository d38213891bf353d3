"""A DeiT-style recipe end to end (issue 17): AdamW, cosine with warm-up from warmup_lr to min_lr, label
smoothing, mixup + CutMix, RandAugment, random erasing, EMA, drop path on a timm model, gradient clipping.
It passes ``specs check``, trains at smoke size and at full size on digits (real 8x8 digits at 32x32), its
curve's lr follows the schedule, and a run SIGKILLed after its first checkpoint ends identical."""
from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO

PAPER = """
paper: deit-toy
title: A DeiT-style recipe on digits
authors: repro tests
source: tests/test_deit_recipe.py
recipes:
  deit:
    dataset: digits
    epochs: 2
    batch_size: 64
    optimizer: adamw
    lr: 0.002
    betas: [0.9, 0.999]
    eps: 1.0e-8
    weight_decay: 0.05
    weight_decay_skip: [norm, bias]
    schedule: cosine
    min_lr: 1.0e-5
    lr_step: iteration
    warmup_epochs: 1
    warmup_lr: 1.0e-6
    warmup_step: iteration
    label_smoothing: 0.1
    mixup_alpha: 0.8
    cutmix_alpha: 1.0
    mix_prob: 1.0
    mix_switch_prob: 0.5
    augment: [hflip, {randaugment: {num_ops: 2, magnitude: 9}}, normalize, {random_erasing: {p: 0.25}}]
    ema_decay: 0.9
    drop_path: 0.1
    grad_clip_norm: 1.0
"""
TABLE = """
table: table1
title: A tiny ViT
columns:
  - {label: "Top-1 (%)", metric: top1_acc}
defaults: {recipe: deit}
rows:
  - label: ViT-tiny
    model: timm/vit_tiny_patch16_224
    model_kwargs: {img_size: 32, patch_size: 8, embed_dim: 32, depth: 2, num_heads: 2}
    values: {"Top-1 (%)": "50.0"}
"""
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "REPRO_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def deit_specs(tmp_path) -> Path:
    folder = tmp_path / "specs" / "deit-toy"
    folder.mkdir(parents=True)
    (folder / "paper.yaml").write_text(PAPER)
    (folder / "table1.yaml").write_text(TABLE)
    return tmp_path / "specs"


def _args(specs, db, ckpt, *extra):
    return [sys.executable, "-m", "repro", "run", "deit-toy/table1", "--specs-dir", str(specs), "--db",
            f"sqlite:///{db}", "--checkpoint-dir", str(ckpt), "--data-dir", str(specs.parent / "data"), *extra]


def _rows(db, sql):
    with sqlite3.connect(db) as c:
        return c.execute(sql).fetchall()


@pytest.mark.long
def test_deit_recipe_checks_trains_and_resumes_identically(deit_specs, tmp_path):
    check = subprocess.run([sys.executable, "-m", "repro", "specs", "check", "--specs-dir", str(deit_specs)],
                           env=ENV, cwd=REPO, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert "deit-toy: 1 spec file(s), 1 published cells: ok" in check.stdout and "warning" not in check.stderr

    smoke = subprocess.run(_args(deit_specs, tmp_path / "smoke.db", tmp_path / "c0", "--budget", "smoke"), env=ENV,
                           cwd=REPO, capture_output=True, text=True, timeout=600)
    assert smoke.returncode == 0, smoke.stderr[-2000:]
    assert _rows(tmp_path / "smoke.db", "select count(*) from jobs where state = 'done'") == [(1,)]

    # full size (2 epochs of the 1,347 training digits), killed once its first epoch is recorded
    db, ckpt = tmp_path / "killed.db", tmp_path / "c1"
    proc = subprocess.Popen(_args(deit_specs, db, ckpt), env=ENV, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline, recorded = time.time() + 300, 0
    while time.time() < deadline and proc.poll() is None and not recorded:
        try:
            recorded = db.exists() and _rows(db, "select count(*) from checkpoints")[0][0]
        except sqlite3.OperationalError:
            pass
        time.sleep(0.05)
    assert recorded, "no checkpoint was written"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = subprocess.run(_args(deit_specs, db, ckpt), env=ENV, cwd=REPO, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    clean = tmp_path / "clean.db"
    subprocess.run(_args(deit_specs, clean, tmp_path / "c2"), env=ENV, cwd=REPO, check=True, capture_output=True,
                   timeout=600)
    q = "select name, value from metrics where name != 'train_seconds' order by name"
    ours = dict(_rows(db, q))
    assert ours == dict(_rows(clean, q)) and {"top1_acc", "raw_top1_acc"} <= set(ours)
    curve = "select epoch, lr, train_loss, test_top1_err from curve_points order by epoch"
    assert _rows(db, curve) == _rows(clean, curve)
    assert _rows(db, "select count(*) from runs where resumed_from_epoch >= 1") == [(1,)]

    # the curve's lr is the schedule's: the last update of each epoch (21 updates of 64 digits per epoch)
    from repro.specs import JobRecipe
    from repro.train.schedule import lr_at

    import json
    spec = json.loads(_rows(clean, "select spec from jobs")[0][0])
    recipe = JobRecipe.of(spec["recipe"])
    per_epoch = 1347 // 64 + (1347 % 64 > 0)
    lrs = [lr for _, lr, _, _ in _rows(clean, curve)]
    assert lrs == pytest.approx([lr_at(recipe, (e + 1) * per_epoch - 1, per_epoch) for e in range(2)], rel=1e-12)
    # the warm-up ends at lr after epoch 1 (from warmup_lr), then the cosine falls to min_lr at the last update
    assert lrs[0] == pytest.approx(0.002) and lrs[1] == pytest.approx(1e-5 + (0.002 - 1e-5) * (1 + math.cos(
        math.pi * (2 * per_epoch - 1) / (2 * per_epoch))) / 2)
