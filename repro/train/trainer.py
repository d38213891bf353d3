"""The classification training loop. No database code here: results leave through callbacks.

``fit`` reads top to bottom. The recipe is ``repro.train``'s one implementation: ``make_optimizer``,
``lr_at`` (a pure function of the update: warm-up, schedule, cool-down), ``mix_batch`` (mixup, CutMix;
nothing when off), ``train_step`` (loss with label smoothing and auxiliary heads, accumulation, clipping,
the step, the EMA), ``make_ema`` (None when off). Batches come from a loader of ``repro.data.loaders`` (the engine:
device-resident fast path
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

from ..specs import JobRecipe
from ..states import Divergence
from .checkpoints import CheckpointStore, rng_state, set_rng_state
from .ema import make_ema
from .mix import mix_batch
from .optimizer import make_optimizer, set_lr
from .schedule import lr_at
from .step import split_outputs, train_step

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

    name: str = "fast"  # fast | reference (the data path; see repro.data.loaders)
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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


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
    """Train ``model`` with ``recipe``; returns the final metrics (errors and accuracies in %). With EMA,
    the metrics are the average's and ``raw_*`` the trained weights'."""
    recipe = JobRecipe.of(recipe)
    weights = list(options.get("aux_loss_weights", []))
    net, step_model = engine.prepare(model, device)
    opt = make_optimizer(net, recipe)
    ema = make_ema(net, recipe.ema_decay)
    start, history = 0, []
    state = store.load()
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        set_rng_state(state["rng"])
        start, history = state["epoch"], state["history"]
        if on_resume:
            on_resume(start)
    steps = len(train_loader)
    for epoch in range(start, recipe.total_epochs):
        t0 = time.perf_counter()
        gen = epoch_generator(seed, epoch)
        step_model.train()
        meter = Meter(device)
        for step, (x, y) in enumerate(train_loader.epoch(gen)):
            lr = lr_at(recipe, epoch * steps + step, steps)
            set_lr(opt, lr)
            x, ya, yb, lam = mix_batch(x, y, recipe, epoch, gen)
            logits, loss = train_step(step_model, net, opt, engine, device, recipe, x, ya, yb, lam, weights, ema)
            meter.add(logits, ya, loss)
            if (step + 1) % CHECK_EVERY == 0 and meter.nonfinite():
                raise Diverged(Divergence(_nonfinite_kind(meter), "epoch", epoch + 1))
            if on_step:
                on_step(epoch + 1, step + 1, steps)
        if meter.nonfinite():
            raise Diverged(Divergence(_nonfinite_kind(meter), "epoch", epoch + 1))
        train_loss, train1, train5 = meter.read()
        test1, test5 = evaluate(ema.module if ema is not None else step_model, test_loader, device, engine)
        raw = evaluate(step_model, test_loader, device, engine) if ema is not None else None
        result = EpochResult(epoch + 1, train_loss, train1, train5, test1, test5, lr, time.perf_counter() - t0)
        history.append({**asdict(result),
                        **({"raw_test_top1_err": raw[0], "raw_test_top5_err": raw[1]} if raw else {})})
        on_epoch(result)  # the curve point goes out before the checkpoint: a redone epoch overwrites it
        store.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "rng": rng_state(),
                    "epoch": epoch + 1, "history": history, **({"ema": ema.state_dict()} if ema else {})}, epoch + 1)
    if ema is not None:  # the job's weights are the ones its metrics measure
        model.load_state_dict(ema.module.state_dict())
    return final_metrics(history)


def final_metrics(history: list[dict]) -> dict[str, float]:
    last = history[-1]
    best = min(history, key=lambda h: h["test_top1_err"])  # the first epoch of the lowest test error
    out = {"top1_err": last["test_top1_err"], "top5_err": last["test_top5_err"],
           "top1_acc": 100.0 - last["test_top1_err"], "top5_acc": 100.0 - last["test_top5_err"],
           # what a code base that keeps its best checkpoint reports (a spec's report_epoch: best)
           "best_top1_err": best["test_top1_err"], "best_top5_err": best["test_top5_err"],
           "best_epoch": float(best["epoch"]), "epochs": float(len(history)),
           "train_seconds": sum(h["seconds"] for h in history)}
    if "raw_test_top1_err" in last:  # EMA on: the trained weights' own numbers, beside the average's
        out.update(raw_top1_err=last["raw_test_top1_err"], raw_top5_err=last["raw_test_top5_err"],
                   raw_top1_acc=100.0 - last["raw_test_top1_err"], raw_top5_acc=100.0 - last["raw_test_top5_err"])
    return out


def _nonfinite_kind(meter: Meter) -> str:
    loss_sum = meter.loss.item()
    return "nan" if loss_sum != loss_sum else "inf"
