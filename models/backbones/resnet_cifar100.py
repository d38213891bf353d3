"""The CIFAR-100 ResNet of the pytorch-cifar100 code base (weiaicunzai), SE-R's backbone.

SE-R (Ye, "Introduce the Result Into Self-Attention") modifies SE-ResNet for 32x32 inputs: a 3x3
stride-1 stem without max-pool, then four stages of 64/128/256/512 planes. Built from the shared
blocks of ``blocks.py``; the choices below are pinned to what pytorch-cifar100's ``models/senet.py``
does, and they reproduce all 12 parameter and MAC counts of SE-R's Tables 1-2 (ARCHITECTURES.md):

- stem: 3x3 conv 3->64, stride 1, padding 1, WITH bias (PyTorch's default), BN, ReLU; no max-pool;
- every conv keeps ``bias=True`` (``conv_bias=True``), projection shortcuts included (1x1 conv + BN);
- the residual branch goes through a ReLU after its last BN, before the attention
  (``residual_act=True``), as ``BasicResidualSEBlock``/``BottleneckResidualSEBlock`` do;
- the bottleneck stride sits on the 3x3 conv (``stride_in_1x1=False``), as in that code base;
- the head is a functional global average pool (``F.adaptive_avg_pool2d``, not counted by the
  2020-era thop counters; a module would add 8,704 / 34,816 MACs, which the 3-decimal tables
  cannot tell apart, so the reference code decides) and one FC;
- weights keep PyTorch's default initialisation (that code base does not re-initialise).

Stage-level modules plug in through ``stage_hooks`` (``StageHook``): after stage i the backbone runs
``x = self.stage_hooks[i - 1](x, state)`` with ``state = {"context": Tensor | None, "aux_logits": []}``
and hands ``state["context"]`` to every block of the next stage. ``forward(x, context=...)`` seeds the
context for stage 1 (SE-R's auxiliary-model variant, whose prediction exists before stage 1).

Output contract: in eval mode the logits; in training mode ``(logits, aux_logits)`` when a hook
appended auxiliary logits, else the logits.
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..registry import register_backbone
from .blocks import BasicBlock, Bottleneck, StageHook, make_stage, projection

STAGE_PLANES = (64, 128, 256, 512)
DEPTHS: dict[int, tuple[type[nn.Module], tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}
BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}
biased_projection = functools.partial(projection, bias=True)  # pytorch-cifar100's shortcut: 1x1 conv WITH bias, BN


def block_config(depth: int | None = None, layers: Sequence[int] | None = None,
                 block: str | None = None) -> tuple[type[nn.Module], tuple[int, ...]]:
    """Resolve ``depth`` (18/34/50/101/152; 50 if neither it nor ``layers`` is given) or ``layers`` +
    ``block`` to (block class, blocks per stage)."""
    if depth is not None and layers is not None:
        raise ValueError("give depth or layers, not both")
    if depth is None and layers is None:
        depth = 50  # SE-R's ablation model (Tables 5, 6, 10, 11)
    if depth is not None:
        if block is not None:
            raise ValueError("block is implied by depth; give it only with layers")
        if depth not in DEPTHS:
            raise ValueError(f"depth must be one of {sorted(DEPTHS)}, got {depth}")
        return DEPTHS[depth]
    if block not in BLOCKS:
        raise ValueError(f"with layers, block must be one of {sorted(BLOCKS)}, got {block!r}")
    if len(layers) != len(STAGE_PLANES) or min(layers) < 1:
        raise ValueError(f"layers must be {len(STAGE_PLANES)} positive block counts, got {layers}")
    return BLOCKS[block], tuple(layers)


def stage_widths(depth: int | None = None, layers: Sequence[int] | None = None,
                 block: str | None = None) -> tuple[int, ...]:
    """Output channels of each stage, e.g. (256, 512, 1024, 2048) for depth 50."""
    block_cls, _ = block_config(depth, layers, block)
    return tuple(planes * block_cls.expansion for planes in STAGE_PLANES)


class ResNetCifar100(nn.Module):
    def __init__(self, block: type[nn.Module], layers: Sequence[int], num_classes: int = 100, *,
                 attn_layer: Callable[..., nn.Module] | None = None,
                 stage_attn_kwargs: Sequence[dict | None] | None = None,
                 stage_hooks: Sequence[nn.Module | None] | None = None):
        super().__init__()
        num_stages = len(STAGE_PLANES)
        stage_attn_kwargs = list(stage_attn_kwargs or [None] * num_stages)
        stage_hooks = list(stage_hooks or [None] * num_stages)
        if len(stage_attn_kwargs) != num_stages or len(stage_hooks) != num_stages:
            raise ValueError(f"stage_attn_kwargs and stage_hooks need one entry per stage ({num_stages})")

        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=True)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        inplanes = 64
        stages = []
        for i, (planes, blocks) in enumerate(zip(STAGE_PLANES, layers)):
            stage, inplanes = make_stage(block, inplanes, planes, blocks, stride=1 if i == 0 else 2,
                                         shortcut=biased_projection, attn_layer=attn_layer,
                                         attn_kwargs=stage_attn_kwargs[i], conv_bias=True,
                                         residual_act=True, stride_in_1x1=False)
            stages.append(stage)
        self.stages = nn.ModuleList(stages)
        self.stage_hooks = nn.ModuleList([hook if hook is not None else StageHook() for hook in stage_hooks])
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None):
        state = {"context": context, "aux_logits": []}
        x = self.relu(self.bn1(self.conv1(x)))
        for stage, hook in zip(self.stages, self.stage_hooks):
            x = stage(x, context=state["context"])
            x = hook(x, state)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)  # (N, C); functional, as in pytorch-cifar100
        logits = self.fc(x)
        if self.training and state["aux_logits"]:
            return logits, state["aux_logits"]
        return logits


@register_backbone("resnet_cifar100")
def resnet_cifar100(*, depth: int | None = None, layers: Sequence[int] | None = None, block: str | None = None,
                    num_classes: int = 100, attn_layer: Callable[..., nn.Module] | None = None,
                    stage_attn_kwargs: Sequence[dict | None] | None = None,
                    stage_hooks: Sequence[nn.Module | None] | None = None) -> ResNetCifar100:
    """pytorch-cifar100 (SE-)ResNet: ``depth`` 18/34/50/101/152 (default 50), or ``layers`` + ``block``."""
    block_cls, layer_counts = block_config(depth, layers, block)
    return ResNetCifar100(block_cls, layer_counts, num_classes, attn_layer=attn_layer,
                          stage_attn_kwargs=stage_attn_kwargs, stage_hooks=stage_hooks)
