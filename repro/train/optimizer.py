"""The optimizer a recipe names, built from one table (``repro.train.names.OPTIMIZERS``): torch.optim's
classes, with every value the recipe states and none it leaves to the library.

Weight decay applies to every trainable parameter, BatchNorm and biases included, as the SGD papers'
code bases do (``model.parameters()``), unless the recipe lists groups to skip: ``weight_decay_skip:
[norm, bias]`` is timm's ``filter_bias_and_bn`` (normalisation layers' weights and biases, and every bias,
decay 0). Frozen parameters (``requires_grad`` False, e.g. a detector's frozen stem) are never handed over.
"""
from __future__ import annotations

import torch
from torch import nn

from .names import OPTIMIZERS

NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def param_groups(net: nn.Module, skip: list[str]) -> list[dict]:
    """One group of every trainable parameter (in ``net.parameters()`` order), or two: decayed, and the
    ``skip`` groups' with weight decay 0."""
    named = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    if not skip:
        return [{"params": [p for _, p in named]}]
    norm_ids = {id(p) for m in net.modules() if isinstance(m, NORMS) for p in m.parameters(recurse=False)}
    no_decay = {id(p) for n, p in named
                if ("norm" in skip and id(p) in norm_ids) or ("bias" in skip and n.rsplit(".", 1)[-1] == "bias")}
    return [{"params": [p for _, p in named if id(p) not in no_decay]},
            {"params": [p for _, p in named if id(p) in no_decay], "weight_decay": 0.0}]


def make_optimizer(net: nn.Module, recipe) -> torch.optim.Optimizer:
    cls_name, fields = OPTIMIZERS[recipe.optimizer]
    kwargs = {"lr": recipe.lr, "weight_decay": recipe.weight_decay}
    for name in fields:
        kwargs[name] = tuple(recipe.betas) if name == "betas" else getattr(recipe, name)
    return getattr(torch.optim, cls_name)(param_groups(net, list(recipe.weight_decay_skip)), **kwargs)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr
