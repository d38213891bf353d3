"""DenseNet-BC for CIFAR (Huang et al., "Densely Connected Convolutional Networks", 2017), as cra
(Table V) uses it: DenseNet-BC with depth 100 and growth rate k = 12.

A 3x3 conv to 2k channels, three dense blocks of (depth - 4) / 6 bottleneck layers at
32x32/16x16/8x8, transitions (BN, ReLU, 1x1 conv compressing by 0.5, 2x2 ``nn.AvgPool2d``
module) between them, a final BN + ReLU, global average pooling and one FC. All convs are
bias-free (the paper's Torch code and pytorch-cifar100).

Counted pooling, pinned by cra's 296.59M: the transitions' 2x2 pools are ``nn.AvgPool2d`` modules
(the 2020-era thop counts them: without them 296.55M) and the final global pooling is functional,
as in torchvision's DenseNet (an ``nn.AdaptiveAvgPool2d`` module, as in pytorch-cifar100, adds
22,230 MACs: 296.61M).

``DenseLayer`` is its own block: BN-ReLU-1x1 conv (4k) - BN-ReLU-3x3 conv (k), whose k new maps
are concatenated to the input. It holds one attention module at one of two places of that
branch, ``attn_position``:
- ``"output"`` (default): on the k new maps, before the concatenation, like the residual
  blocks' call site before the add (cra's SE-DenseNet: SE on the 12 new maps);
- ``"input"``: on the layer's input, before its first BN (cra's CRA-DenseNet: CRA <4,4> on the
  input of every dense layer; the concatenation keeps the unscaled input).
Both are pinned by cra's counts (ARCHITECTURES.md); the paper only says DenseNet is built "in a
similar way" to ResNet.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ..registry import make_attn, register_backbone
from .blocks import Stage, init_backbone_convs

ATTN_POSITIONS = ("output", "input")


class DenseLayer(nn.Module):
    def __init__(self, inplanes: int, growth_rate: int, bottleneck_width: int = 4, *,
                 attn_layer: Callable[..., nn.Module] | None = None, attn_position: str = "output"):
        super().__init__()
        if attn_position not in ATTN_POSITIONS:
            raise ValueError(f"attn_position must be one of {ATTN_POSITIONS}, got {attn_position!r}")
        width = bottleneck_width * growth_rate
        self.attn_position = attn_position
        self.attn = make_attn(attn_layer, inplanes if attn_position == "input" else growth_rate)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, growth_rate, 3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        out = x
        if self.attn_position == "input":
            out = self.attn(out, identity=x, context=context)
        out = self.conv1(self.relu(self.bn1(out)))
        out = self.conv2(self.relu(self.bn2(out)))
        if self.attn_position == "output":
            out = self.attn(out, identity=x, context=context)
        return torch.cat([x, out], dim=1)


class Transition(nn.Sequential):
    def __init__(self, inplanes: int, outplanes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(inplanes, outplanes, 1, bias=False)
        self.pool = nn.AvgPool2d(2, stride=2)


class DenseNetCifar(nn.Module):
    def __init__(self, depth: int = 100, growth_rate: int = 12, num_classes: int = 10, *,
                 compression: float = 0.5, bottleneck_width: int = 4,
                 attn_layer: Callable[..., nn.Module] | None = None, attn_position: str = "output"):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"DenseNet-BC depth must be 6n+4 with n >= 1, got {depth}")
        if not 0 < compression <= 1:
            raise ValueError(f"compression must be in (0, 1], got {compression}")
        layers_per_block = (depth - 4) // 6
        planes = 2 * growth_rate
        self.conv1 = nn.Conv2d(3, planes, 3, padding=1, bias=False)
        stages: list[nn.Module] = []
        for i in range(3):
            block = []
            for _ in range(layers_per_block):
                block.append(DenseLayer(planes, growth_rate, bottleneck_width, attn_layer=attn_layer,
                                        attn_position=attn_position))
                planes += growth_rate
            stages.append(Stage(*block))
            if i < 2:
                outplanes = int(compression * planes)
                stages.append(Transition(planes, outplanes))
                planes = outplanes
        self.block1, self.trans1, self.block2, self.trans2, self.block3 = stages
        self.bn = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(planes, num_classes)
        init_backbone_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.trans1(self.block1(self.conv1(x)))
        x = self.block3(self.trans2(self.block2(x)))
        x = self.relu(self.bn(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


@register_backbone("densenet_bc_cifar")
def densenet_bc_cifar(*, num_classes: int = 10, depth: int = 100, growth_rate: int = 12, attn_layer=None,
                      **kwargs) -> DenseNetCifar:
    """CIFAR DenseNet-BC (bottleneck 4k, compression 0.5) of depth 6n+4."""
    return DenseNetCifar(depth, growth_rate, num_classes, attn_layer=attn_layer, **kwargs)
