"""The classification training loop. No database code here: results leave through callbacks.

The loop in ``fit`` reads top to bottom. Optional features are functions that do nothing when
off: ``mixup_batch`` (alpha 0 or the plain epochs after mixup), ``aux_loss`` (no aux heads),
the warm-up inside ``lr_at``.

Resuming is exact on CPU: every epoch ends with an atomic checkpoint holding the model,
optimizer and RNG states, and each epoch's data order comes from a generator seeded by
(seed, epoch), so a run killed at any point and resumed ends with the same numbers as an
uninterrupted run with the same seed.
"""
from __future__ import annotations

import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset


@dataclass
class EpochResult:
    epoch: int  # 1-based
    train_loss: float
    train_top1_err: float
    train_top5_err: float
    test_top1_err: float
    test_top5_err: float
    lr: float
    seconds: float


def lr_at(recipe: dict, epoch: float) -> float:
    """Learning rate at a (fractional) epoch: linear warm-up, then x gamma at each milestone.

    se-r: "init lr = 0.1 divide by 5 at 60th, 120th, 160th epochs ... warm up in the first epoch,
    linearly increasing the learning rate to 0.1" = lr 0.1, gamma 0.2, milestones [60, 120, 160],
    warmup_epochs 1. Epochs past the schedule (cmpe-se's plain epochs after mixup) keep the last lr.
    """
    base, warm = recipe["lr"], recipe.get("warmup_epochs", 0)
    if warm and epoch < warm:
        return base * epoch / warm
    passed = sum(1 for m in recipe.get("milestones", []) if epoch >= m)
    return base * recipe.get("gamma", 0.1) ** passed


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def split_outputs(out) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Models return logits, or ``(logits, [aux_logits, ...])`` in training mode."""
    if isinstance(out, tuple):
        return out[0], list(out[1])
    return out, []


def mixup_batch(x, y, alpha: float, gen: torch.Generator):
    """mixup (Zhang et al., 2018); returns inputs, both targets and lambda. Off when alpha == 0."""
    if alpha <= 0:
        return x, y, y, 1.0
    lam = float(np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=gen))).beta(alpha, alpha))
    perm = torch.randperm(x.shape[0], generator=gen).to(x.device)
    return lam * x + (1 - lam) * x[perm], y, y[perm], lam


def mixed_ce(logits, ya, yb, lam: float) -> torch.Tensor:
    if lam == 1.0:
        return F.cross_entropy(logits, ya)
    return lam * F.cross_entropy(logits, ya) + (1 - lam) * F.cross_entropy(logits, yb)


def aux_loss(aux_logits: list[torch.Tensor], ya, yb, lam: float, weights: list[float]) -> torch.Tensor | float:
    """sum_i w_i * CE(aux_i); SE-R's lossW1/lossW2. Zero when the model has no auxiliary heads."""
    if len(aux_logits) != len(weights):
        raise ValueError(f"model has {len(aux_logits)} auxiliary outputs but {len(weights)} loss weights were given")
    return sum((w * mixed_ce(a, ya, yb, lam) for a, w in zip(aux_logits, weights)), 0.0)


def topk_errors(logits: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
    """Counts of top-1 and top-5 mistakes in a batch."""
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hit = top.eq(y[:, None])
    return int((~hit[:, 0]).sum()), int((~hit.any(dim=1)).sum())


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[float, float]:
    model.eval()
    n = e1 = e5 = 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits, _ = split_outputs(model(x))
        a, b = topk_errors(logits, y)
        e1, e5, n = e1 + a, e5 + b, n + len(y)
    return 100.0 * e1 / max(n, 1), 100.0 * e5 / max(n, 1)


def save_checkpoint(path: Path, state: dict) -> None:
    """Write to a temporary file and rename, so a kill never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def fit(model: nn.Module, train_ds: Dataset, test_ds: Dataset, recipe: dict, options: dict, *, seed: int,
        device: torch.device, checkpoint: Path, on_epoch: Callable[[EpochResult], None],
        on_step: Callable[[int, int, int, float], None] | None = None, loader_workers: int = 0,
        on_resume: Callable[[int], None] | None = None) -> dict[str, float]:
    """Train ``model`` with ``recipe``; returns the final metrics (errors and accuracies in %)."""
    weights = list(options.get("aux_loss_weights", []))
    opt = torch.optim.SGD(model.parameters(), lr=recipe["lr"], momentum=recipe["momentum"],
                          nesterov=recipe["nesterov"], weight_decay=recipe["weight_decay"])
    model.to(device)
    start, history = 0, []
    if checkpoint.exists():
        # RNG states must stay CPU tensors; load_state_dict copies the weights onto the device
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        start, history = state["epoch"], state["history"]
        if on_resume:
            on_resume(start)
    total = recipe["epochs"] + recipe.get("mixup_extra_epochs", 0)
    test_loader = DataLoader(test_ds, batch_size=256, shuffle=False, num_workers=loader_workers)
    for epoch in range(start, total):
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        loader = DataLoader(train_ds, batch_size=recipe["batch_size"], shuffle=True, generator=gen,
                            num_workers=loader_workers, drop_last=False)
        alpha = recipe.get("mixup_alpha", 0.0) if epoch < recipe["epochs"] else 0.0
        model.train()
        steps, loss_sum, n, e1, e5 = len(loader), 0.0, 0, 0, 0
        for step, (x, y) in enumerate(loader):
            lr = lr_at(recipe, epoch + (step + 1) / steps)
            for group in opt.param_groups:
                group["lr"] = lr
            x, y = x.to(device), y.to(device)
            x, ya, yb, lam = mixup_batch(x, y, alpha, gen)
            logits, aux = split_outputs(model(x))
            loss = mixed_ce(logits, ya, yb, lam) + aux_loss(aux, ya, yb, lam, weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            a, b = topk_errors(logits.detach(), ya)
            loss_sum, n, e1, e5 = loss_sum + loss.item() * len(y), n + len(y), e1 + a, e5 + b
            if on_step:
                on_step(epoch + 1, step + 1, steps, loss.item())
        test1, test5 = evaluate(model, test_loader, device)
        result = EpochResult(epoch + 1, loss_sum / max(n, 1), 100.0 * e1 / max(n, 1), 100.0 * e5 / max(n, 1),
                             test1, test5, lr, time.perf_counter() - t0)
        history.append(asdict(result))
        on_epoch(result)  # the curve point goes out before the checkpoint: a redone epoch overwrites it
        save_checkpoint(checkpoint, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                     "rng": rng_state(), "epoch": epoch + 1, "history": history})
    last = history[-1]
    return {"top1_err": last["test_top1_err"], "top5_err": last["test_top5_err"],
            "top1_acc": 100.0 - last["test_top1_err"], "top5_acc": 100.0 - last["test_top5_err"],
            "best_top1_err": min(h["test_top1_err"] for h in history), "epochs": float(len(history)),
            "train_seconds": sum(h["seconds"] for h in history)}
