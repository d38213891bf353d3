"""ShuffleNet for CIFAR (Zhang et al., "ShuffleNet: An Extremely Efficient Convolutional Neural
Network for Mobile Devices", 2018), as cra (Table V) uses it: ShuffleNet 1x with g = 3.

Layout (the paper's Table 1 adapted to 32x32 inputs, as in the widely used pytorch-cifar100 code
base): a 3x3 stride-1 conv to 24 channels + BN + ReLU (no max-pool), stages of 4/8/4 units with
240/480/960 output channels at 16x16/8x8/4x4, global average pooling (an ``nn.AdaptiveAvgPool2d``
module, counted by the 2020-era thop), one FC.

``ShuffleUnit`` is its own block because its topology differs from the residual blocks: grouped
1x1 conv + BN + ReLU, channel shuffle, 3x3 depthwise conv + BN, grouped 1x1 conv + BN, then the
single attention call site on the residual branch, then add (stride 1) or concatenate with a
3x3 average-pooled shortcut (``nn.AvgPool2d`` module, counted), then ReLU. Choices pinned by
cra's 1.01M/44.55M (C100: 1,012,108 / 44,551,872 MACs under thop-2001):
- ``conv_bias``: convs keep PyTorch's default bias, as in pytorch-cifar100 (bias-free: 1.00M/43.65M);
- the bottleneck width is a quarter of the unit's output width (the paper); when the unit
  concatenates, its residual branch produces ``out - in`` channels and the attention sees those;
- the first unit's first 1x1 conv is grouped too (24 channels split in 3), as in pytorch-cifar100;
  the paper leaves it ungrouped (``first_pointwise_grouped=False``: 45.53M MACs).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..registry import make_attn, register_backbone
from .blocks import Stage, ThreeStageCifarNet, init_backbone_convs


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    x = x.reshape(n, groups, c // groups, h, w).transpose(1, 2)  # (N, C/g, g, H, W)
    return x.reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, inplanes: int, outplanes: int, stride: int = 1, groups: int = 3, *,
                 attn_layer: Callable[..., nn.Module] | None = None, conv_bias: bool = True,
                 pointwise_groups: int | None = None):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ShuffleUnit stride must be 1 or 2, got {stride}")
        if stride == 1 and inplanes != outplanes:
            raise ValueError("a stride-1 ShuffleUnit adds its shortcut: inplanes must equal outplanes")
        self.stride = stride
        self.groups = groups
        mid = outplanes // 4
        branch_out = outplanes - inplanes if stride == 2 else outplanes
        g1 = groups if pointwise_groups is None else pointwise_groups
        self.conv1 = nn.Conv2d(inplanes, mid, 1, groups=g1, bias=conv_bias)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, groups=mid, bias=conv_bias)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, branch_out, 1, groups=groups, bias=conv_bias)
        self.bn3 = nn.BatchNorm2d(branch_out)
        self.relu = nn.ReLU(inplace=True)
        self.attn = make_attn(attn_layer, branch_out)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        identity = self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = channel_shuffle(out, self.groups)
        out = self.bn2(self.conv2(out))
        out = self.bn3(self.conv3(out))
        out = self.attn(out, identity=identity, context=context)
        out = torch.cat([identity, out], dim=1) if self.stride == 2 else out + identity
        return self.relu(out)


# ShuffleNet 1x stage widths by group count (the paper's Table 1)
STAGE_WIDTHS = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088), 8: (384, 768, 1536)}


class ShuffleNetCifar(ThreeStageCifarNet):
    def __init__(self, groups: int = 3, num_classes: int = 100, *, repeats: tuple[int, int, int] = (4, 8, 4),
                 stem_width: int = 24, conv_bias: bool = True,
                 first_pointwise_grouped: bool = True, attn_layer: Callable[..., nn.Module] | None = None):
        super().__init__()
        if groups not in STAGE_WIDTHS:
            raise ValueError(f"ShuffleNet groups must be one of {sorted(STAGE_WIDTHS)}, got {groups}")
        widths = STAGE_WIDTHS[groups]
        self.conv1 = nn.Conv2d(3, stem_width, 3, padding=1, bias=conv_bias)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        inplanes = stem_width
        stages = []
        for i, (width, repeat) in enumerate(zip(widths, repeats)):
            units = []
            for j in range(repeat):
                ungrouped = i == 0 and j == 0 and not first_pointwise_grouped
                units.append(ShuffleUnit(inplanes, width, 2 if j == 0 else 1, groups, attn_layer=attn_layer,
                                         conv_bias=conv_bias, pointwise_groups=1 if ungrouped else None))
                inplanes = width
            stages.append(Stage(*units))
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        init_backbone_convs(self)


@register_backbone("shufflenet_cifar")
def shufflenet_cifar(*, num_classes: int = 100, groups: int = 3, attn_layer=None, **kwargs) -> ShuffleNetCifar:
    """CIFAR ShuffleNet 1x (3x3 stem, no max-pool), ``groups`` in {1, 2, 3, 4, 8}."""
    return ShuffleNetCifar(groups, num_classes, attn_layer=attn_layer, **kwargs)
