"""Ghost batch normalisation: BatchNorm over the batch one device saw, on a single device.

A recipe field ``bn_batch: g`` says which batch BatchNorm normalised over in the paper's device
layout; cmpe-se trained its ImageNet models with MXNet Gluon on "GTX 1080Ti x 2" with batch 64, so
each device's BatchNorm saw 32 images (``bn_batch: 32``). ``apply_bn_batch(model, g)`` turns every
``nn.BatchNorm1d/2d`` of a built model into ``GhostBatchNorm1d/2d`` with the same parameters and
buffers (state_dict keys, parameter counts and MACs unchanged), whose training-mode forward
reproduces data parallelism without synchronised BatchNorm:

- layout: the batch is split into consecutive groups of ``group_size`` images, device k taking
  images [k*g, (k+1)*g) (``torch.split``; Gluon's ``split_and_load`` does the same for a batch of
  devices x g). Each group is normalised with its own batch statistics.
- a batch that is not a multiple of g: the last group is smaller (the remainder). Deviation: Gluon's
  ``split_and_load(even_split=False)`` would spread a short batch over all devices, remainder on the
  last one; a recipe that reproduces a layout should drop the last batch or use a multiple of g.
- a group with one value per channel (one image, 1x1 spatial) raises ``ValueError``, as
  ``nn.BatchNorm2d`` does for such a batch; one image with more spatial positions is normalised over
  them, as torch (and a device holding one image) does.
- gradients need nothing special: the gradient of the whole-batch mean loss through the ghost
  module is the average of the per-device mean-loss gradients (equal groups), which is what an
  all-reduce average gives, and what Gluon gives (kvstore sums per-device gradients of summed
  per-sample losses, ``Trainer.step(batch_size)`` divides by the global batch).
- running statistics, the rule: in Gluon each device keeps its own copy of ``running_mean/var``,
  updated only from its own group (they have ``grad_req='null'``, so ``Trainer`` never syncs them),
  and saving reduces the copies by averaging (``Parameter._reduce``: ``add_n(copies) / len(copies)``,
  called by ``save_parameters`` and ``export``; read in apache/mxnet 1.3.0,
  python/mxnet/gluon/{parameter,trainer,block}.py). Averages of EMAs are an EMA of averages, so here:
      running_mean <- (1 - m) running_mean + m mean_k(group mean_k)
      running_var  <- (1 - m) running_var  + m mean_k(unbiased group var_k)
  with m torch's momentum (MXNet's momentum 0.9 is m = 0.1) and every group weighted equally, a smaller
  last group included (it is one device's copy). The variance is unbiased as in torch and in cuDNN,
  which MXNet's GPU BatchNorm calls for 4-D input (src/operator/nn/batch_norm.cu, factor 1 - momentum
  in cudnn/cudnn_batch_norm-inl.h; cuDNN unbiased, MXNet's own kernel biased: apache/mxnet#18751,
  #21111). ``num_batches_tracked`` counts forward passes as in ``nn.BatchNorm2d``; ``momentum=None``
  (cumulative average) raises ``ValueError``.
  What this checkpoint is: the saved, averaged model. A Gluon evaluation run on both devices would use
  each device's own copy on its half of the batch; eval here uses the averaged statistics.
- eval mode, and a batch of at most g images, is exactly ``nn.BatchNorm2d``.

Every other subclass of ``nn.BatchNorm1d/2d/3d`` a model uses (timm's ``BatchNormAct2d``, which adds an
activation and a drop after the normalisation, or a plugin's) gets the same rule without knowing its forward:
the module changes class in place to a ghost form of its own class (``ghost_class``), whose training forward
runs the subclass's own forward once per group on a copy of the running statistics and keeps their average.
Its activation, drop and parameters stay what they were. What really has no ghost form (``no_ghost_form``
says which layer and why, so a spec check can say it before anything runs): ``SyncBatchNorm``, which by
design normalises over every device's batch together, a lazy BatchNorm whose parameters are not built yet,
and ``momentum=None`` (a cumulative average, which per-device copies do not average into one).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _check_group_size(group_size) -> None:
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size (bn_batch) must be a positive integer, got {group_size!r}")


class _GhostBatchNorm:
    """The ghost forward, mixed into ``nn.BatchNorm1d/2d`` (which supply parameters and checks)."""

    group_size: int

    def __init__(self, num_features: int, *args, group_size: int, **kwargs):
        """``nn.BatchNorm1d/2d``'s arguments, plus ``group_size`` (the images one device normalised over)."""
        _check_group_size(group_size)
        super().__init__(num_features, *args, **kwargs)
        if self.momentum is None:
            raise ValueError(f"{type(self).__name__} does not support momentum=None (a cumulative average)")
        self.group_size = group_size

    @classmethod
    def from_batchnorm(cls, bn: nn.modules.batchnorm._BatchNorm, group_size: int):
        """A ghost module holding ``bn``'s own parameter and buffer tensors (nothing is copied)."""
        ghost = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats, device="meta",
                    group_size=group_size)  # its meta tensors are replaced by bn's just below
        ghost._parameters.update(bn._parameters)
        ghost._buffers.update(bn._buffers)
        return ghost.train(bn.training)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, group_size={self.group_size}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.shape[0] <= self.group_size:
            return super().forward(x)
        self._check_input_dim(x)
        groups = x.split(self.group_size)  # device k: images [k*g, (k+1)*g); the last may be smaller
        if groups[-1].numel() == self.num_features:
            raise ValueError(f"{type(self).__name__}: a batch of {x.shape[0]} split into groups of "
                             f"{self.group_size} leaves a last group with one value per channel "
                             f"(input {tuple(x.shape)}), where batch statistics are undefined; drop the last "
                             f"batch or use a batch size that is a multiple of {self.group_size}")
        if not self.track_running_stats:
            return torch.cat([F.batch_norm(g, None, None, self.weight, self.bias, True, 0.0, self.eps)
                              for g in groups])
        self.num_batches_tracked.add_(1)
        # one copy of the running statistics per device, each updated from its own group by torch's
        # BatchNorm (momentum, unbiased variance); the module keeps their average (Gluon's _reduce)
        means = [self.running_mean.clone() for _ in groups]
        variances = [self.running_var.clone() for _ in groups]
        out = torch.cat([F.batch_norm(g, mean, var, self.weight, self.bias, True, self.momentum, self.eps)
                         for g, mean, var in zip(groups, means, variances)])
        with torch.no_grad():
            self.running_mean.copy_(torch.stack(means).mean(0))
            self.running_var.copy_(torch.stack(variances).mean(0))
        return out


class GhostBatchNorm1d(_GhostBatchNorm, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` whose training batch statistics are per group of ``group_size`` samples."""


class GhostBatchNorm2d(_GhostBatchNorm, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training batch statistics are per group of ``group_size`` images."""


GHOST = {nn.BatchNorm1d: GhostBatchNorm1d, nn.BatchNorm2d: GhostBatchNorm2d}


class _GhostSubclass:
    """The ghost forward for any subclass of ``nn.BatchNorm*d``: the subclass's own forward per group."""

    group_size: int

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, group_size={self.group_size}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.shape[0] <= self.group_size:
            return super().forward(x)
        groups = x.split(self.group_size)  # device k: images [k*g, (k+1)*g); the last may be smaller
        if groups[-1].numel() == self.num_features:
            raise ValueError(f"{type(self).__name__}: a batch of {x.shape[0]} split into groups of "
                             f"{self.group_size} leaves a last group with one value per channel "
                             f"(input {tuple(x.shape)}), where batch statistics are undefined")
        if not self.track_running_stats:
            return torch.cat([super(_GhostSubclass, self).forward(g) for g in groups])
        names = ("running_mean", "running_var", "num_batches_tracked")
        kept = {n: self._buffers[n] for n in names}
        copies: list[dict[str, torch.Tensor]] = []
        outs = []
        try:  # one copy of the running statistics per device, updated by the subclass's own forward
            for g in groups:
                self._buffers.update({n: t.clone() for n, t in kept.items()})
                outs.append(super().forward(g))
                copies.append({n: self._buffers[n] for n in names[:2]})
        finally:
            self._buffers.update(kept)
        with torch.no_grad():  # the module keeps the copies' average (Gluon's _reduce)
            for n in names[:2]:
                kept[n].copy_(torch.stack([c[n] for c in copies]).mean(0))
            kept["num_batches_tracked"].add_(1)
        return torch.cat(outs)


_GHOST_CLASSES: dict[type, type] = {}


def ghost_class(cls: type) -> type:
    """The ghost form of a BatchNorm subclass ``cls`` (one class per ``cls``)."""
    if cls not in _GHOST_CLASSES:
        _GHOST_CLASSES[cls] = type(f"Ghost{cls.__name__}", (_GhostSubclass, cls), {"__module__": __name__})
    return _GHOST_CLASSES[cls]


def why_no_ghost(module: nn.Module) -> str | None:
    """Why this BatchNorm layer has no ghost form, or None when it has one (or is no BatchNorm)."""
    if not isinstance(module, nn.modules.batchnorm._BatchNorm):
        return None
    if isinstance(module, nn.SyncBatchNorm):
        return "it normalises over every device's batch together by design (synchronised BatchNorm)"
    if isinstance(module, nn.modules.lazy.LazyModuleMixin):
        return "a lazy BatchNorm's parameters are not built until its first forward"
    if module.momentum is None:
        return "momentum=None is a cumulative average, which per-device copies cannot keep"
    return None


def no_ghost_form(model: nn.Module) -> tuple[str, str, str] | None:
    """The first layer of ``model`` that has no ghost form: (its name, its type's name, why); None if none."""
    for name, module in model.named_modules():
        why = why_no_ghost(module)
        if why is not None:
            return name or "model", type(module).__name__, why
    return None


def apply_bn_batch(model: nn.Module, group_size: int | None) -> nn.Module:
    """Replace every ``nn.BatchNorm1d/2d`` of ``model`` in place by its ghost form with ``group_size``,
    keeping the same parameter and buffer tensors (an optimizer built before still holds them).
    ``None`` leaves the model as it is. Returns the model (the ghost module if ``model`` is a BatchNorm).
    """
    if group_size is None:
        return model
    _check_group_size(group_size)
    converted: dict[int, nn.Module] = {}  # a module shared by two parents stays one module

    def convert(module: nn.Module, name: str) -> nn.Module:
        if isinstance(module, _GhostBatchNorm):
            if module.group_size != group_size:
                raise ValueError(f"{name or 'model'} is already a ghost BatchNorm with group_size "
                                 f"{module.group_size}, not {group_size}")
            return module
        if isinstance(module, _GhostSubclass):
            if module.group_size != group_size:
                raise ValueError(f"{name or 'model'} is already a ghost BatchNorm with group_size "
                                 f"{module.group_size}, not {group_size}")
            return module
        why = why_no_ghost(module)
        if why is not None:
            raise ValueError(f"{name or 'model'}: {type(module).__name__} has no ghost form ({why})")
        if type(module) in GHOST:
            if id(module) not in converted:
                converted[id(module)] = GHOST[type(module)].from_batchnorm(module, group_size)
            return converted[id(module)]
        if isinstance(module, nn.modules.batchnorm._BatchNorm):  # a subclass: ghost in place, parameters kept
            module.__class__ = ghost_class(type(module))
            module.group_size = group_size
            return module
        for child_name, child in module.named_children():
            new = convert(child, f"{name}.{child_name}" if name else child_name)
            if new is not child:
                setattr(module, child_name, new)
        return module

    return convert(model, "")
