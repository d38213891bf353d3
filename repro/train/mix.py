"""Mixing and soft targets: mixup (Zhang et al., 2018), CutMix (Yun et al., 2019), label smoothing.

Every draw comes from the epoch's generator on the CPU (never Python's ``random`` or ``np.random``, which
timm's ``Mixup`` uses and a resumed run would not replay): whether the batch is mixed (``mix_prob``), which
of the two (``mix_switch_prob``), lambda from Beta(alpha, alpha), CutMix's box centre, and the pairing.
Off, a function returns its input and draws nothing, so a recipe without mixing draws what it always drew.

CutMix's box and lambda correction are torchvision's ``transforms.v2.CutMix``: centre (r_x, r_y) uniform
over the image, half sides int(0.5 sqrt(1 - lambda) W) and int(... H), clipped to the image, lambda = 1 -
box area / image area. The loss of a mixed batch is lambda CE(y_a) + (1 - lambda) CE(y_b), each with the
recipe's label smoothing: exactly timm's SoftTargetCrossEntropy on its mixed smoothed one-hot targets,
since that loss is linear in the target.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F


def _beta(alpha: float, gen: torch.Generator) -> float:
    return float(np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=gen))).beta(alpha, alpha))


def mixup_batch(x, y, alpha: float, gen: torch.Generator):
    """mixup; returns inputs, both targets and lambda. Off when alpha == 0."""
    if alpha <= 0:
        return x, y, y, 1.0
    lam = _beta(alpha, gen)
    perm = torch.randperm(x.shape[0], generator=gen).to(x.device, non_blocking=True)
    return lam * x + (1 - lam) * x[perm], y, y[perm], lam


def cutmix_box(lam: float, height: int, width: int, r_y: int, r_x: int) -> tuple[int, int, int, int]:
    """(y1, y2, x1, x2) of torchvision's CutMix box around (r_y, r_x) for ``lam``."""
    r = 0.5 * math.sqrt(1.0 - lam)
    half_w, half_h = int(r * width), int(r * height)
    return max(r_y - half_h, 0), min(r_y + half_h, height), max(r_x - half_w, 0), min(r_x + half_w, width)


def paste_box(x: torch.Tensor, partner: torch.Tensor, lam: float, r_y: int, r_x: int):
    """``x`` with the CutMix box taken from ``partner``; the corrected lambda."""
    height, width = x.shape[-2:]
    y1, y2, x1, x2 = cutmix_box(lam, height, width, r_y, r_x)
    out = x.clone()
    out[..., y1:y2, x1:x2] = partner[..., y1:y2, x1:x2]
    return out, 1.0 - (y2 - y1) * (x2 - x1) / (height * width)


def cutmix_batch(x, y, alpha: float, gen: torch.Generator):
    """CutMix; returns inputs, both targets and the area-corrected lambda. Off when alpha == 0."""
    if alpha <= 0:
        return x, y, y, 1.0
    lam = _beta(alpha, gen)
    r_x = int(torch.randint(x.shape[-1], (1,), generator=gen))
    r_y = int(torch.randint(x.shape[-2], (1,), generator=gen))
    perm = torch.randperm(x.shape[0], generator=gen).to(x.device, non_blocking=True)
    mixed, lam = paste_box(x, x[perm], lam, r_y, r_x)
    return mixed, y, y[perm], lam


def mixing_on(recipe, epoch: int) -> bool:
    """Mixing is off in cmpe-se's plain epochs after mixup (``mixup_extra_epochs``)."""
    return not (recipe.epochs <= epoch < recipe.epochs + recipe.mixup_extra_epochs)


def mix_batch(x, y, recipe, epoch: int, gen: torch.Generator):
    """The recipe's mixing of one batch: (inputs, targets a, targets b, lambda)."""
    mixup = recipe.mixup_alpha if mixing_on(recipe, epoch) else 0.0
    cutmix = recipe.cutmix_alpha if mixing_on(recipe, epoch) else 0.0
    if not (mixup or cutmix):
        return x, y, y, 1.0
    if recipe.mix_prob < 1.0 and float(torch.rand((), generator=gen)) >= recipe.mix_prob:
        return x, y, y, 1.0
    if mixup and cutmix:
        use_cutmix = float(torch.rand((), generator=gen)) < recipe.mix_switch_prob
        return cutmix_batch(x, y, cutmix, gen) if use_cutmix else mixup_batch(x, y, mixup, gen)
    return cutmix_batch(x, y, cutmix, gen) if cutmix else mixup_batch(x, y, mixup, gen)


def mixed_ce(logits, ya, yb, lam: float, smoothing: float = 0.0) -> torch.Tensor:
    if lam == 1.0:
        return F.cross_entropy(logits, ya, label_smoothing=smoothing)
    return (lam * F.cross_entropy(logits, ya, label_smoothing=smoothing)
            + (1 - lam) * F.cross_entropy(logits, yb, label_smoothing=smoothing))
