"""ResNet for CIFAR (He et al., "Deep Residual Learning for Image Recognition", 2016, section 4.2).

Depth 6n+2: a 3x3 conv to 16 channels, three stages of n basic blocks with 16/32/64 channels at
32x32/16x16/8x8, global average pooling and one FC. cra (Table V) builds ResNet-56/110 from it.

Choices pinned by cra's published counts (ARCHITECTURES.md, "cra"):
- option-A shortcuts: when the shape changes, the identity is subsampled by the stride and
  zero-padded with the new channels (parameter-free), as in the paper's CIFAR experiments and
  akamaster/pytorch_resnet_cifar10; option B would add 1x1-conv parameters;
- all convs are bias-free;
- the global pooling is an ``nn.AdaptiveAvgPool2d`` module, which the 2020-era thop counts;
- He-normal (fan-out) init for the backbone's convs (``blocks.init_backbone_convs``, shared by the sibling
  CIFAR backbones); attention modules keep their own init.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ..registry import register_backbone
from .blocks import BasicBlock, ThreeStageCifarNet, conv3x3, init_backbone_convs, make_stage


class ZeroPadShortcut(nn.Module):
    """Option-A shortcut: subsample by ``stride`` and zero-pad the extra channels on both sides."""

    def __init__(self, inplanes: int, outplanes: int, stride: int):
        super().__init__()
        if outplanes < inplanes:
            raise ValueError(f"a zero-pad shortcut cannot shrink {inplanes} to {outplanes} channels")
        self.stride = stride
        self.pad_front = (outplanes - inplanes) // 2
        self.pad_back = outplanes - inplanes - self.pad_front

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_front, self.pad_back))  # pads the channel dimension


class ResNetCifar(ThreeStageCifarNet):
    def __init__(self, depth: int, num_classes: int = 10, *, attn_layer: Callable[..., nn.Module] | None = None,
                 widths: tuple[int, int, int] = (16, 32, 64), shortcut: str = "A"):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}")
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' (zero-pad) or 'B' (1x1 projection), got {shortcut!r}")
        blocks = (depth - 2) // 6
        self.conv1 = conv3x3(3, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        make_shortcut = ZeroPadShortcut if shortcut == "A" else None
        inplanes = widths[0]
        self.layer1, inplanes = make_stage(BasicBlock, inplanes, widths[0], blocks, 1, shortcut=make_shortcut,
                                           attn_layer=attn_layer)
        self.layer2, inplanes = make_stage(BasicBlock, inplanes, widths[1], blocks, 2, shortcut=make_shortcut,
                                           attn_layer=attn_layer)
        self.layer3, inplanes = make_stage(BasicBlock, inplanes, widths[2], blocks, 2, shortcut=make_shortcut,
                                           attn_layer=attn_layer)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        init_backbone_convs(self)


@register_backbone("resnet_cifar")
def resnet_cifar(*, num_classes: int = 10, depth: int = 56, attn_layer=None, **kwargs) -> ResNetCifar:
    """CIFAR ResNet of depth 6n+2 (option-A shortcuts)."""
    return ResNetCifar(depth, num_classes, attn_layer=attn_layer, **kwargs)
