"""VGG with batch normalisation for CIFAR (Simonyan & Zisserman, "Very Deep Convolutional Networks
for Large-Scale Image Recognition", 2015), as cra (Table V) uses it: VGG-16 = configuration D.

Thirteen 3x3 convs (with bias) each followed by BN and ReLU, five 2x2 max-pools (32x32 -> 1x1),
then a 512 -> 512 -> 512 -> classes head with ReLU and dropout, the head of the common CIFAR VGG
(chengyangfu/pytorch-vgg-cifar10); pytorch-cifar100's 4096-wide head would give ~34M parameters,
not cra's 15.30M.

VGG has no residual branch: ``ConvBNAttn`` is its own block, conv + BN + the single attention
call site + ReLU, so SE/CRA sit after every conv + BN (cra, section II.C: "we embed CRA module
into convolutional layer directly"). With no shortcut, ``identity`` is ``None``.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..registry import make_attn, register_backbone
from .blocks import init_backbone_convs

CONFIGS = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "B": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "E": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


class ConvBNAttn(nn.Module):
    def __init__(self, inplanes: int, planes: int, *, attn_layer: Callable[..., nn.Module] | None = None,
                 conv_bias: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(inplanes, planes, 3, padding=1, bias=conv_bias)
        self.bn = nn.BatchNorm2d(planes)
        self.attn = make_attn(attn_layer, planes)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        out = self.bn(self.conv(x))
        out = self.attn(out, identity=None, context=context)
        return self.relu(out)


class VGGCifar(nn.Module):
    def __init__(self, config: str = "D", num_classes: int = 10, *, hidden: int = 512, dropout: float = 0.5,
                 conv_bias: bool = True, attn_layer: Callable[..., nn.Module] | None = None):
        super().__init__()
        if config not in CONFIGS:
            raise ValueError(f"VGG config must be one of {sorted(CONFIGS)}, got {config!r}")
        layers: list[nn.Module] = []
        inplanes = 3
        for v in CONFIGS[config]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(ConvBNAttn(inplanes, v, attn_layer=attn_layer, conv_bias=conv_bias))
                inplanes = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(inplanes, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )
        init_backbone_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))  # features end at (N, 512, 1, 1)


@register_backbone("vgg_bn_cifar")
def vgg_bn_cifar(*, num_classes: int = 10, config: str = "D", attn_layer=None, **kwargs) -> VGGCifar:
    """CIFAR VGG with BN (config A/B/D/E = VGG-11/13/16/19), 512-wide head with dropout."""
    return VGGCifar(config, num_classes, attn_layer=attn_layer, **kwargs)
