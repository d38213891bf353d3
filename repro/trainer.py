"""The classification training loop. No database code here: results leave through callbacks.

``fit`` reads top to bottom. Optional features are functions that do nothing when off:
``mixup_batch`` (alpha 0 or the plain epochs after mixup), ``aux_loss`` (no aux heads), the warm-up
inside ``lr_at``. Batches come from a loader of ``repro.loaders`` (the engine: device-resident fast path
or the torchvision reference); precision and layout are one place each (``Engine``).

No host sync inside the step: loss sums, top-1/top-5 mistake counts and a non-finite flag accumulate in
device tensors (``Meter``) and are read once per epoch (and the flag every ``CHECK_EVERY`` steps), so
a diverged run stops with "loss became nan at epoch E" instead of training on.

Resuming is exact on CPU at a fixed thread count: every epoch ends with an atomic checkpoint holding the
model, optimizer and RNG states (``repro.checkpoints``), and each epoch's order and augmentations come
from a generator seeded by (seed, epoch), so a run killed at any point and resumed ends with the same
numbers as an uninterrupted run with the same seed.
"""
from __future__ import annotations

import contextlib
import random
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .checkpoints import CheckpointStore, rng_state, set_rng_state
from .specs import JobRecipe, Recipe
from .states import Divergence

CHECK_EVERY = 200  # steps between reads of the device-side non-finite flag (one tiny sync)


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


class Diverged(Exception):
    """The training loss became nan or inf: a result of the recipe, not a crash to retry. Carries where
    (a ``Divergence``: value, unit, epoch or iteration), which the database stores as columns."""

    def __init__(self, divergence: Divergence):
        super().__init__(str(divergence))
        self.divergence = divergence


@dataclass(frozen=True)
class Engine:
    """How the steps run; never what they compute. Recorded with each run as provenance."""

    name: str = "fast"  # fast | reference (the data path; see repro.loaders)
    precision: str = "fp32"  # bf16 (autocast, fp32 master weights and BatchNorm) | fp32
    channels_last: bool = False
    compile: bool = False

    @classmethod
    def for_device(cls, device: torch.device, name: str = "fast", precision: str | None = None,
                   compile: bool = False) -> "Engine":
        """Defaults: bf16 and channels_last on CUDA, fp32 on CPU."""
        cuda = device.type == "cuda"
        precision = precision or ("bf16" if cuda else "fp32")
        if precision not in ("bf16", "fp32"):
            raise ValueError(f"unknown precision {precision!r}: use bf16 or fp32")
        return cls(name, precision, channels_last=cuda, compile=compile)

    def autocast(self, device: torch.device):
        if self.precision == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare(self, model: nn.Module, device: torch.device) -> tuple[nn.Module, nn.Module]:
        """(the module whose state is saved, the callable that runs the steps)."""
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        model.to(device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)
        return model, (torch.compile(model) if self.compile else model)


def lr_at(recipe: Recipe, epoch: int, fraction: float = 1.0) -> float:
    """Learning rate of a step in 0-based ``epoch``, ``fraction`` of the way through it (step + 1 of
    steps): linear warm-up per step, then x gamma at each milestone, per epoch.

    se-r: "init lr = 0.1 divide by 5 at 60th, 120th, 160th epochs ... warm up in the first epoch,
    linearly increasing the learning rate to 0.1" = lr 0.1, gamma 0.2, milestones [60, 120, 160],
    warmup_epochs 1. The papers' code bases step ``MultiStepLR`` once per epoch, after it: the 60th epoch
    runs at 0.1 to its last step and the 61st starts at 0.02 (a milestone m decays from 0-based epoch m).
    The warm-up is per step, as their ``WarmUpLR``: step i of W runs at lr (i + 1) / W. Epochs past the
    schedule (cmpe-se's plain epochs after mixup) keep the last lr. ``tests/test_trainer.py`` holds this
    against ``torch.optim.lr_scheduler.LinearLR`` + ``MultiStepLR`` over a whole recipe.
    """
    position = epoch + fraction
    if recipe.warmup_epochs and position <= recipe.warmup_epochs:
        return recipe.lr * position / recipe.warmup_epochs
    passed = sum(1 for m in recipe.milestones if epoch >= m)
    return recipe.lr * recipe.gamma ** passed


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def split_outputs(out) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Models return logits, or ``(logits, [aux_logits, ...])`` in training mode."""
    if isinstance(out, tuple):
        return out[0], list(out[1])
    return out, []


def mixup_batch(x, y, alpha: float, gen: torch.Generator):
    """mixup (Zhang et al., 2018); returns inputs, both targets and lambda. Off when alpha == 0.

    lambda and the pairing come from the epoch's generator on the CPU: no device sync, same draws on
    any device."""
    if alpha <= 0:
        return x, y, y, 1.0
    lam = float(np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=gen))).beta(alpha, alpha))
    perm = torch.randperm(x.shape[0], generator=gen).to(x.device, non_blocking=True)
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


def topk_mistakes(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Device tensor [top-1 mistakes, top-5 mistakes] of a batch (no host sync)."""
    k = min(5, logits.shape[1])
    hit = logits.topk(k, dim=1).indices.eq(y[:, None])
    return torch.stack([(~hit[:, 0]).sum(), (~hit.any(dim=1)).sum()])


def topk_errors(logits: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
    """Counts of top-1 and top-5 mistakes in a batch (host ints; for tests and one-off use)."""
    a, b = topk_mistakes(logits, y).tolist()
    return a, b


class Meter:
    """Sums on the device: loss x images, top-1/top-5 mistakes, and whether a loss was non-finite.
    The image count is a host int: batch sizes are known without asking the device."""

    def __init__(self, device: torch.device):
        self.loss = torch.zeros((), dtype=torch.float64, device=device)
        self.mistakes = torch.zeros(2, dtype=torch.int64, device=device)
        self.bad = torch.zeros((), dtype=torch.bool, device=device)
        self.n = 0

    def add(self, logits: torch.Tensor, y: torch.Tensor, loss: torch.Tensor | None = None) -> None:
        self.n += len(y)
        self.mistakes += topk_mistakes(logits.detach(), y)
        if loss is not None:
            loss = loss.detach()
            self.loss += loss.double() * len(y)
            self.bad |= ~torch.isfinite(loss)

    def nonfinite(self) -> bool:
        return bool(self.bad)  # the one sync

    def read(self) -> tuple[float, float, float]:
        """(mean loss, top-1 error %, top-5 error %): one transfer."""
        n = max(self.n, 1)
        e1, e5 = self.mistakes.tolist()
        return self.loss.item() / n, 100.0 * e1 / n, 100.0 * e5 / n


def train_step(step_model, opt, engine: Engine, device, x, ya, yb, lam: float, weights: list[float]):
    """One optimizer step: forward under the engine's precision, the paper's loss, backward, SGD."""
    with engine.autocast(device):
        logits, aux = split_outputs(step_model(x))
        loss = mixed_ce(logits, ya, yb, lam) + aux_loss(aux, ya, yb, lam, weights)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return logits, loss


def make_optimizer(net: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """SGD as the papers' recipes: weight decay on every parameter (BatchNorm and biases included)."""
    return torch.optim.SGD(net.parameters(), lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
                           weight_decay=recipe.weight_decay)


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, engine: Engine) -> tuple[float, float]:
    model.eval()
    meter = Meter(device)
    for x, y in loader.epoch(None):
        with engine.autocast(device):
            logits, _ = split_outputs(model(x))
        meter.add(logits, y)
    _, e1, e5 = meter.read()
    return e1, e5


def fit(model: nn.Module, train_loader, test_loader, recipe: JobRecipe | dict, options: dict, *, seed: int,
        device: torch.device, store: CheckpointStore, on_epoch: Callable[[EpochResult], None],
        engine: Engine = Engine(), on_step: Callable[[int, int, int], None] | None = None,
        on_resume: Callable[[int], None] | None = None) -> dict[str, float]:
    """Train ``model`` with ``recipe``; returns the final metrics (errors and accuracies in %)."""
    recipe = JobRecipe.of(recipe)
    weights = list(options.get("aux_loss_weights", []))
    net, step_model = engine.prepare(model, device)
    opt = make_optimizer(net, recipe)
    start, history = 0, []
    state = store.load()
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        start, history = state["epoch"], state["history"]
        if on_resume:
            on_resume(start)
    for epoch in range(start, recipe.total_epochs):
        t0 = time.perf_counter()
        gen = epoch_generator(seed, epoch)
        alpha = recipe.mixup_alpha if epoch < recipe.epochs else 0.0  # the plain epochs after mixup
        step_model.train()
        steps, meter = len(train_loader), Meter(device)
        for step, (x, y) in enumerate(train_loader.epoch(gen)):
            lr = lr_at(recipe, epoch, (step + 1) / steps)
            for group in opt.param_groups:
                group["lr"] = lr
            x, ya, yb, lam = mixup_batch(x, y, alpha, gen)
            logits, loss = train_step(step_model, opt, engine, device, x, ya, yb, lam, weights)
            meter.add(logits, ya, loss)
            if (step + 1) % CHECK_EVERY == 0 and meter.nonfinite():
                raise Diverged(Divergence(_nonfinite_kind(meter), "epoch", epoch + 1))
            if on_step:
                on_step(epoch + 1, step + 1, steps)
        if meter.nonfinite():
            raise Diverged(Divergence(_nonfinite_kind(meter), "epoch", epoch + 1))
        train_loss, train1, train5 = meter.read()
        test1, test5 = evaluate(step_model, test_loader, device, engine)
        result = EpochResult(epoch + 1, train_loss, train1, train5, test1, test5, lr, time.perf_counter() - t0)
        history.append(asdict(result))
        on_epoch(result)  # the curve point goes out before the checkpoint: a redone epoch overwrites it
        store.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "rng": rng_state(),
                    "epoch": epoch + 1, "history": history}, epoch + 1)
    last = history[-1]
    best = min(history, key=lambda h: h["test_top1_err"])  # the first epoch of the lowest test error
    return {"top1_err": last["test_top1_err"], "top5_err": last["test_top5_err"],
            "top1_acc": 100.0 - last["test_top1_err"], "top5_acc": 100.0 - last["test_top5_err"],
            # what a code base that keeps its best checkpoint reports (a spec's report_epoch: best)
            "best_top1_err": best["test_top1_err"], "best_top5_err": best["test_top5_err"],
            "best_epoch": float(best["epoch"]), "epochs": float(len(history)),
            "train_seconds": sum(h["seconds"] for h in history)}


def _nonfinite_kind(meter: Meter) -> str:
    loss_sum = meter.loss.item()
    return "nan" if loss_sum != loss_sum else "inf"
