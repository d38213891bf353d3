"""ResNeXt for CIFAR (Xie et al., "Aggregated Residual Transformations for Deep Neural Networks",
2017, section 5.3): ResNeXt-29 = a 3x3 conv to 64 channels, three stages of three bottleneck
blocks with outputs 256/512/1024 at 32x32/16x16/8x8, global average pooling, one FC.

The blocks are ``blocks.Bottleneck`` (torchvision layout: stride on the grouped 3x3, 1x1 conv +
BN projection when the shape changes, bias-free convs). With ``planes`` = 64/128/256 its grouped
width is ``int(planes * base_width / 64) * cardinality``, which for the standard 8x64d model is
512/1024/2048, as in the paper's Table 7 model (34.4M parameters) and the reference CIFAR code.
The global pooling is an ``nn.AdaptiveAvgPool2d`` module (2020-era thop counts it).
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from ..registry import register_backbone
from .blocks import Bottleneck, ThreeStageCifarNet, conv3x3, init_backbone_convs, make_stage


class ResNeXtCifar(ThreeStageCifarNet):
    def __init__(self, cardinality: int, base_width: int, depth: int = 29, num_classes: int = 10, *,
                 attn_layer: Callable[..., nn.Module] | None = None, stem_width: int = 64):
        super().__init__()
        if depth < 11 or (depth - 2) % 9:
            raise ValueError(f"CIFAR ResNeXt depth must be 9n+2 with n >= 1, got {depth}")
        blocks = (depth - 2) // 9
        self.conv1 = conv3x3(3, stem_width)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        inplanes = stem_width
        common = dict(groups=cardinality, base_width=base_width, attn_layer=attn_layer)
        self.layer1, inplanes = make_stage(Bottleneck, inplanes, 64, blocks, 1, **common)
        self.layer2, inplanes = make_stage(Bottleneck, inplanes, 128, blocks, 2, **common)
        self.layer3, inplanes = make_stage(Bottleneck, inplanes, 256, blocks, 2, **common)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        init_backbone_convs(self)


@register_backbone("resnext_cifar")
def resnext_cifar(*, num_classes: int = 10, cardinality: int = 8, base_width: int = 64, depth: int = 29,
                  attn_layer=None, **kwargs) -> ResNeXtCifar:
    """CIFAR ResNeXt of depth 9n+2; ``cardinality`` groups of ``base_width`` channels in stage 1."""
    return ResNeXtCifar(cardinality, base_width, depth, num_classes, attn_layer=attn_layer, **kwargs)
