"""The learning rate as a pure function of the update: warm-up, then the schedule, then the cool-down.

One function serves classification (epochs of ``per_epoch`` updates) and detection (iterations), so a
checkpoint needs no scheduler state, and a test holds it against ``torch.optim.lr_scheduler`` and timm's
schedulers over whole recipes (``tests/test_schedule.py``). Epochs are converted to updates here and
nowhere else.

- Position. ``lr_step: epoch`` moves the schedule once per epoch, like a torch scheduler stepped after each
  epoch: every update of 0-based epoch e runs at the schedule's value at e (at e + 1 with
  ``step_before_epoch``, code that steps its scheduler before the epoch). ``lr_step: iteration`` moves it
  every update: update u of an epoch of n runs at the value at u / n epochs.
- Schedules over ``schedule_epochs`` = T (epochs plus cmpe-se's plain mixup epochs; a cool-down at min_lr
  follows): ``step`` lr x gamma per milestone passed (MultiStepLR); ``cosine`` min_lr + (lr - min_lr)(1 +
  cos(pi t / T)) / 2 (CosineAnnealingLR); ``linear`` and ``poly`` min_lr + (lr - min_lr)(1 - t / T) ** power
  (LinearLR, PolynomialLR); ``exponential`` lr x gamma ** floor(t / decay_every) (timm's step scheduler,
  e.g. 0.97 every 2.4 epochs); ``constant`` lr.
- Warm-up replaces the schedule's first ``warmup_epochs`` (timm's ``warmup_prefix: false``), linear from
  ``warmup_lr`` to lr, per update (``warmup_step: iteration``) or per epoch. ``warmup_at: end``: a unit runs
  at the rate its end reaches, (k + 1) / W of the way (the papers' WarmUpLR: the first update at
  lr / W); ``start``: at the rate of its start, k / W (timm: the first unit at warmup_lr).
- Detection recipes count iterations: the unit is one update, milestones and warm-up in iterations.
"""
from __future__ import annotations

import math


def lr_at(recipe, update: int, per_epoch: int | None = None) -> float:
    """The learning rate of 0-based ``update`` of ``recipe``; ``per_epoch``: updates per epoch (None for an
    iteration-based recipe)."""
    if recipe.iterations:
        return _iteration_lr(recipe, update)
    epoch, step = divmod(update, per_epoch)
    warm = _warmup(recipe, epoch, step, per_epoch)
    if warm is not None:
        return warm
    t = epoch + (1 if recipe.step_before_epoch else 0) if recipe.lr_step == "epoch" else update / per_epoch
    if epoch >= recipe.schedule_epochs:  # the cool-down
        return recipe.min_lr
    return _schedule(recipe, t, recipe.schedule_epochs)


def lr_of_epoch(recipe, epoch: int, fraction: float, per_epoch: int) -> float:
    """The rate of the update ``fraction`` (step + 1 of ``per_epoch``) of the way through 0-based ``epoch``."""
    return lr_at(recipe, epoch * per_epoch + round(fraction * per_epoch) - 1, per_epoch)


def _warmup(recipe, epoch: int, step: int, per_epoch: int) -> float | None:
    if not recipe.warmup_epochs:
        return None
    end = 1 if recipe.warmup_at == "end" else 0
    if recipe.warmup_step == "iteration":
        # in epochs, exact in floats for fractional warm-ups: (update + 1) / per_epoch epochs done, over W
        progress = (epoch * per_epoch + step + end) / per_epoch
        if progress > recipe.warmup_epochs or (not end and progress == recipe.warmup_epochs):
            return None
    else:
        if epoch >= recipe.warmup_epochs:
            return None
        progress = epoch + end
    return recipe.warmup_lr + (recipe.lr - recipe.warmup_lr) * progress / recipe.warmup_epochs


def _iteration_lr(recipe, it: int) -> float:
    w = recipe.warmup_iterations
    if it < w:
        k = it + (1 if recipe.warmup_at == "end" else 0)
        return recipe.warmup_lr + (recipe.lr - recipe.warmup_lr) * k / w
    return _schedule(recipe, it, recipe.iterations)


def _schedule(recipe, t: float, length: float) -> float:
    lr, low = recipe.lr, recipe.min_lr
    kind = recipe.schedule
    if kind == "step":
        return lr * recipe.gamma ** sum(1 for m in recipe.milestones if t >= m)
    if kind == "cosine":
        return low + (lr - low) * (1 + math.cos(math.pi * min(t, length) / length)) / 2
    if kind in ("linear", "poly"):
        power = 1.0 if kind == "linear" else recipe.power
        return low + (lr - low) * (1 - min(t, length) / length) ** power
    if kind == "exponential":
        return lr * recipe.gamma ** (t // recipe.decay_every)  # timm's floor division, as is
    if kind == "constant":
        return lr
    raise ValueError(f"unknown schedule {kind!r}")
