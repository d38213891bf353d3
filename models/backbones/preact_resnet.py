"""Pre-activation ResNet (He, Zhang, Ren, Sun, "Identity Mappings in Deep Residual Networks", 2016),
as cmpe-se builds it: CIFAR ResNet-110 (basic) / ResNet-164 (bottleneck) and ImageNet ResNet-50.

Blocks put BN-ReLU before each conv and nothing after the add. Their single attention call site
sits on the residual branch's last conv output, before the add, and hands over the shortcut
output (CMPE-SE squeezes it):

    out = self.attn(out, identity=identity, context=context)

Choices pinned by the official CMPE-SE MXNet code (``cmpese_resnetv2_block.py``,
``cmpese_resnet.py``) and Gluon's ``resnet50_v2``:
- the projection shortcut is a bias-free 1x1 conv WITHOUT BN, applied to the pre-activated input
  ``relu(bn1(x))``; the identity shortcut is ``x`` itself;
- the bottleneck stride sits on the 3x3 conv;
- the network input goes through a parameter-free BatchNorm (``input_bn``; Gluon's
  ``BatchNorm(scale=False, center=False)``);
- CIFAR stem: one 3x3 conv 3->16, no BN (WRN's stem adds a BN: ``stem_bn``); ImageNet stem: 7x7/2
  conv, BN, ReLU, 3x3/2 max-pool; head: BN, ReLU, global average pool, FC with bias;
- convs are bias-free and He-normal (fan-out) initialised, which is the MXNet code's
  ``Normal(sqrt(2 / (k*k*out_channels)))``; attention modules keep their own init.

Deviation: the MXNet ResNet-164 gives stage 1's first block a projection only when the bottleneck
width changes (16 -> 16), so its 16 -> 64 block cannot add; a projection is built whenever the
shape changes, as in the pre-act ResNet paper.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from ..registry import make_attn, register_backbone
from .blocks import Stage, conv1x1, conv3x3, init_backbone_convs, make_stage


def preact_projection(inplanes: int, outplanes: int, stride: int) -> nn.Module:
    """The MXNet pre-act shortcut: a bias-free 1x1 conv, no BN."""
    return conv1x1(inplanes, outplanes, stride)


class PreActBasicBlock(nn.Module):
    """BN-ReLU-conv3x3, BN-ReLU-[dropout]-conv3x3; also the wide block of WRN (``dropout`` is WRN's)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, *,
                 attn_layer: Callable[..., nn.Module] | None = None, attn_kwargs: dict | None = None,
                 dropout: float = 0.0, norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.bn1 = norm_layer(inplanes)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn2 = norm_layer(planes)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = conv3x3(planes, planes)
        self.relu = nn.ReLU(inplace=True)
        self.attn = make_attn(attn_layer, planes, **(attn_kwargs or {}))
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        preact = self.relu(self.bn1(x))
        identity = x if self.downsample is None else self.downsample(preact)
        out = self.conv1(preact)
        out = self.conv2(self.dropout(self.relu(self.bn2(out))))
        out = self.attn(out, identity=identity, context=context)
        return out + identity


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv1x1, BN-ReLU-conv3x3 (stride), BN-ReLU-conv1x1 to ``planes * 4``."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, *,
                 attn_layer: Callable[..., nn.Module] | None = None, attn_kwargs: dict | None = None,
                 norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d):
        super().__init__()
        self.bn1 = norm_layer(inplanes)
        self.conv1 = conv1x1(inplanes, planes)
        self.bn2 = norm_layer(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = norm_layer(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.attn = make_attn(attn_layer, planes * self.expansion, **(attn_kwargs or {}))
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        preact = self.relu(self.bn1(x))
        identity = x if self.downsample is None else self.downsample(preact)
        out = self.conv1(preact)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        out = self.attn(out, identity=identity, context=context)
        return out + identity


BLOCKS: dict[str, type[nn.Module]] = {"basic": PreActBasicBlock, "bottleneck": PreActBottleneck}


class PreActResNet(nn.Module):
    """Stem, stages of pre-act blocks, BN-ReLU-pool-FC head.

    ``stem``: ``"cifar"`` (3x3 conv to ``stem_width``) or ``"imagenet"`` (7x7/2 conv, BN, ReLU,
    3x3/2 max-pool). ``stage_planes[i]`` is the block width of stage i (``planes``); the first
    stage has stride 1, the others 2.
    """

    def __init__(self, block: type[nn.Module], layers: Sequence[int], stage_planes: Sequence[int],
                 num_classes: int, *, stem: str = "cifar", stem_width: int = 16, stem_bn: bool = False,
                 input_bn: bool = True, attn_layer: Callable[..., nn.Module] | None = None,
                 **block_kwargs):
        super().__init__()
        if len(layers) != len(stage_planes):
            raise ValueError(f"{len(layers)} stage depths for {len(stage_planes)} stage widths")
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        if stem == "imagenet" and stem_bn:
            raise ValueError("the ImageNet stem always has its BN; stem_bn is for the CIFAR stem")
        self.input_bn = nn.BatchNorm2d(3, affine=False) if input_bn else nn.Identity()
        if stem == "cifar":
            stem_layers = [conv3x3(3, stem_width)] + ([nn.BatchNorm2d(stem_width)] if stem_bn else [])
        else:
            stem_layers = [nn.Conv2d(3, stem_width, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(stem_width),
                           nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1)]
        self.stem = nn.Sequential(*stem_layers)
        inplanes = stem_width
        stages: list[Stage] = []
        for i, (blocks, planes) in enumerate(zip(layers, stage_planes)):
            stage, inplanes = make_stage(block, inplanes, planes, blocks, 1 if i == 0 else 2,
                                         shortcut=preact_projection, attn_layer=attn_layer, **block_kwargs)
            stages.append(stage)
        self.stages = nn.ModuleList(stages)
        self.bn_final = nn.BatchNorm2d(inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        init_backbone_convs(self)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = self.stem(self.input_bn(x))
        for stage in self.stages:
            x = stage(x, context=context)
        x = self.relu(self.bn_final(x))
        return self.fc(self.avgpool(x).flatten(1))


def cifar_layers(depth: int, block: str) -> int:
    """Blocks per stage of a 3-stage CIFAR pre-act ResNet: depth 6n+2 (basic) or 9n+2 (bottleneck)."""
    if block not in BLOCKS:
        raise ValueError(f"block must be one of {sorted(BLOCKS)}, got {block!r}")
    per_block = 2 if block == "basic" else 3
    if depth < 3 * per_block + 2 or (depth - 2) % (3 * per_block):
        raise ValueError(f"a CIFAR pre-act ResNet with {block} blocks has depth {3 * per_block}n+2, got {depth}")
    return (depth - 2) // (3 * per_block)


@register_backbone("preact_resnet_cifar")
def preact_resnet_cifar(*, num_classes: int = 10, depth: int = 164, block: str = "bottleneck",
                        attn_layer=None, **kwargs) -> PreActResNet:
    """CIFAR pre-act ResNet: 16/32/64-wide stages of basic (6n+2) or bottleneck (9n+2) blocks."""
    n = cifar_layers(depth, block)
    return PreActResNet(BLOCKS[block], (n, n, n), (16, 32, 64), num_classes, attn_layer=attn_layer, **kwargs)


IMAGENET_DEPTHS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


@register_backbone("preact_resnet_imagenet")
def preact_resnet_imagenet(*, num_classes: int = 1000, depth: int = 50, attn_layer=None, **kwargs) -> PreActResNet:
    """ImageNet pre-act ResNet (Gluon ``resnet*_v2`` layout) of depth 18/34/50/101/152."""
    if depth not in IMAGENET_DEPTHS:
        raise ValueError(f"ImageNet pre-act ResNet depth must be one of {sorted(IMAGENET_DEPTHS)}, got {depth}")
    block, layers = IMAGENET_DEPTHS[depth]
    return PreActResNet(BLOCKS[block], layers, (64, 128, 256, 512), num_classes, stem="imagenet", stem_width=64,
                        attn_layer=attn_layer, **kwargs)
