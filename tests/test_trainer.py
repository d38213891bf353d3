"""The schedule against the papers' sentences; loss helpers; exact resume on CPU."""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from repro.train.checkpoints import CheckpointStore
from repro.data.loaders import TorchLoader
from repro.train.schedule import lr_of_epoch
from repro.train.mix import mixup_batch
from repro.train.step import aux_loss
from repro.train.trainer import fit, topk_errors
from repro.catalog import load_catalog

from conftest import SPECS


def test_se_r_schedule_reads_like_the_paper():
    # "init lr = 0.1 divide by 5 at 60th, 120th, 160th epochs ... warm up in the first epoch"
    r = load_catalog(SPECS).papers["se-r"].spec.recipes["cifar100"]

    def lr_at(recipe, epoch, fraction, steps=390):  # the update ``fraction`` of the way through the epoch
        return lr_of_epoch(recipe, epoch, fraction, steps)

    assert lr_at(r, 0, 0.5) == pytest.approx(0.05)  # half-way through the warm-up epoch
    assert lr_at(r, 0, 1.0) == pytest.approx(0.1)
    assert lr_at(r, 59, 0.5) == pytest.approx(0.1)
    # issue 14.8: the last step of the 60th epoch still runs at 0.1 (MultiStepLR steps once per epoch,
    # after it); the 61st epoch (0-based 60) starts at 0.02
    assert lr_at(r, 59, 1.0) == pytest.approx(0.1)
    assert lr_at(r, 60, 1 / 390) == pytest.approx(0.02)
    assert lr_at(r, 130, 0.5) == pytest.approx(0.004)
    assert lr_at(r, 199, 1.0) == pytest.approx(0.1 * 0.2 ** 3)


@pytest.mark.parametrize("paper,recipe",
                         [("se-r", "cifar100"), ("cra", "imagenet"), ("cmpe-se", "preact_cifar10_mixup")])
def test_schedule_equals_torch_schedulers_over_a_whole_recipe(paper, recipe):
    """Every step of a paper's recipe (few steps per epoch) against the code bases' scheduling: a per-step
    LinearLR warm-up (step i of W at (i + 1) / W) and a MultiStepLR stepped once after each epoch."""
    r = load_catalog(SPECS).papers[paper].spec.recipes[recipe]
    steps = 7  # per epoch
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=r.lr)
    warm_steps = round(r.warmup_epochs * steps)
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / warm_steps, total_iters=warm_steps - 1) \
        if warm_steps else None
    decay = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=r.milestones, gamma=r.gamma)
    ours, theirs = [], []
    for epoch in range(r.total_epochs):
        for step in range(steps):
            theirs.append(opt.param_groups[0]["lr"])
            ours.append(lr_of_epoch(r, epoch, (step + 1) / steps, steps))
            opt.step()
            if warm is not None and epoch * steps + step + 1 < warm_steps:
                warm.step()
        decay.step()
    assert ours == pytest.approx(theirs, rel=1e-12)
    assert len(ours) == r.total_epochs * steps and ours[-1] == pytest.approx(r.lr * r.gamma ** len(r.milestones))


def test_aux_loss_and_topk():
    logits = torch.tensor([[0.0, 5.0, 1.0], [3.0, 0.0, 1.0]])
    y = torch.tensor([1, 2])
    assert topk_errors(logits, y) == (1, 0)
    assert aux_loss([], y, y, 1.0, []) == 0.0
    one = torch.nn.functional.cross_entropy(logits, y)
    assert float(aux_loss([logits, logits], y, y, 1.0, [0.3, 0.2])) == pytest.approx(0.5 * float(one))
    with pytest.raises(ValueError, match="2 auxiliary outputs but 1 loss weights"):
        aux_loss([logits, logits], y, y, 1.0, [0.3])


def test_mixup_is_a_no_op_when_off():
    x, y = torch.randn(4, 3), torch.arange(4)
    g = torch.Generator().manual_seed(0)
    before = g.get_state()
    xm, ya, yb, lam = mixup_batch(x, y, 0.0, g)
    # off: the batch itself, one target, lambda 1, and no draw from the epoch's generator (a resumed run
    # must see the same random stream whether mixup is off or absent)
    assert xm is x and ya is y and yb is y and lam == 1.0
    assert torch.equal(g.get_state(), before)
    # on: a real mix. y is arange, so yb is the pairing itself: a permutation other than the identity
    xm, ya, yb, lam = mixup_batch(x, y, 1.0, g)
    assert 0.0 < lam < 1.0
    assert torch.equal(ya, y) and sorted(yb.tolist()) == y.tolist() and not torch.equal(yb, y)
    assert torch.allclose(xm, lam * x + (1 - lam) * x[yb])


def _data(n=48):
    g = torch.Generator().manual_seed(1)
    return TensorDataset(torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g))


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 4))


RECIPE = {"name": "tiny", "dataset": "cifar10", "epochs": 4, "batch_size": 16, "lr": 0.1, "momentum": 0.9,
          "nesterov": True, "weight_decay": 5e-4,
          "milestones": [2, 3], "gamma": 0.2, "warmup_epochs": 1, "mixup_alpha": 0.0}


CPU = torch.device("cpu")


def _loaders(train, test, batch_size=16):
    return (TorchLoader(train, batch_size=batch_size, shuffle=True, device=CPU),
            TorchLoader(test, batch_size=256, shuffle=False, device=CPU))


def test_resume_equals_uninterrupted(tmp_path):
    train, test = _loaders(_data(), _data(16))
    points = []
    full = fit(_model(), train, test, RECIPE, {}, seed=3, device=CPU, store=CheckpointStore(tmp_path / "a"),
               on_epoch=points.append)
    assert len(points) == 4 and points[-1].lr == pytest.approx(0.1 * 0.2 ** 2)
    # stop after 2 epochs (as a kill would), then resume to 4 from the checkpoint
    store = CheckpointStore(tmp_path / "b")
    fit(_model(), train, test, {**RECIPE, "epochs": 2, "milestones": [2]}, {}, seed=3, device=CPU, store=store,
        on_epoch=lambda r: None)
    resumed_from = []
    again = fit(_model(), train, test, RECIPE, {}, seed=3, device=CPU, store=store, on_epoch=lambda r: None,
                on_resume=resumed_from.append)
    assert resumed_from == [2]
    timing = {"train_seconds"}
    assert {k: v for k, v in again.items() if k not in timing} == {k: v for k, v in full.items() if k not in timing}
    assert all(math.isfinite(v) for v in full.values())
