"""Residual blocks with a single attention call site (He et al., 2016; Xie et al., 2017).

``BasicBlock`` and ``Bottleneck`` follow torchvision's layout and parameter names
(``conv1``/``bn1``..., ``downsample``), so a plain ResNet-50 built here has exactly
torchvision's 25,557,032 parameters. The attention sits after the last BN of the residual
branch and before the add:

    out = self.attn(out, identity=identity, context=context)

Options that reference implementations disagree on are explicit arguments:
- ``conv_bias``: torchvision convs have no bias; the pytorch-cifar100 SE-ResNet (SE-R's code
  base) keeps PyTorch's default ``bias=True``.
- ``stride_in_1x1``: Caffe/MSRA ResNet and the original SENet put the bottleneck stride on the
  first 1x1 conv; torchvision puts it on the 3x3 (default here).
- ``residual_act``: the pytorch-cifar100 SE blocks apply a ReLU to the residual branch after
  its last BN, before the SE (default off).
"""
from __future__ import annotations

import functools
from typing import Callable

import torch
from torch import nn

from ..registry import ATTENTIONS, make_attn


def conv3x3(inplanes: int, planes: int, stride: int = 1, groups: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, groups=groups, bias=bias)


def conv1x1(inplanes: int, planes: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(inplanes, planes, 1, stride=stride, bias=bias)


def projection(inplanes: int, planes: int, stride: int, bias: bool = False,
               norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d) -> nn.Sequential:
    """The usual 1x1 conv + BN projection shortcut ("option B")."""
    return nn.Sequential(conv1x1(inplanes, planes, stride, bias=bias), norm_layer(planes))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 *, attn_layer: Callable[..., nn.Module] | None = None, attn_kwargs: dict | None = None,
                 conv_bias: bool = False, residual_act: bool = False,
                 norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d, groups: int = 1, base_width: int = 64,
                 stride_in_1x1: bool = False):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock supports only groups=1 and base_width=64")
        if stride_in_1x1:
            raise ValueError("BasicBlock has no 1x1 conv to put the stride on")
        self.conv1 = conv3x3(inplanes, planes, stride, bias=conv_bias)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes, bias=conv_bias)
        self.bn2 = norm_layer(planes)
        self.residual_act = nn.ReLU(inplace=True) if residual_act else nn.Identity()
        self.attn = make_attn(attn_layer, planes, **(attn_kwargs or {}))
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.residual_act(self.bn2(self.conv2(out)))
        out = self.attn(out, identity=identity, context=context)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 *, attn_layer: Callable[..., nn.Module] | None = None, attn_kwargs: dict | None = None,
                 conv_bias: bool = False, residual_act: bool = False,
                 norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d, groups: int = 1, base_width: int = 64,
                 stride_in_1x1: bool = False):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(inplanes, width, s1, bias=conv_bias)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, s3, groups=groups, bias=conv_bias)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion, bias=conv_bias)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.residual_act = nn.ReLU(inplace=True) if residual_act else nn.Identity()
        self.attn = make_attn(attn_layer, planes * self.expansion, **(attn_kwargs or {}))
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.residual_act(self.bn3(self.conv3(out)))
        out = self.attn(out, identity=identity, context=context)
        return self.relu(out + identity)


class Stage(nn.Sequential):
    """A stage of blocks that forwards one context tensor to every block."""

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        for block in self:
            x = block(x, context=context)
        return x


def make_stage(block: type[nn.Module], inplanes: int, planes: int, blocks: int, stride: int = 1, *,
               shortcut: Callable[[int, int, int], nn.Module] | None = None, **block_kwargs) -> tuple[Stage, int]:
    """Stack ``blocks`` blocks; returns the stage and its output width.

    ``shortcut(inplanes, outplanes, stride)`` builds the downsample of the first block when the
    shape changes (default: 1x1 conv + BN projection without bias).
    """
    outplanes = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != outplanes:
        if shortcut is None:  # the default projection uses the blocks' norm layer (frozen BN, ...)
            norm = block_kwargs.get("norm_layer", nn.BatchNorm2d)
            shortcut = functools.partial(projection, norm_layer=norm)
        downsample = shortcut(inplanes, outplanes, stride)
    layers = [block(inplanes, planes, stride, downsample, **block_kwargs)]
    layers += [block(outplanes, planes, **block_kwargs) for _ in range(1, blocks)]
    return Stage(*layers), outplanes


class StageHook(nn.Module):
    """The one named hook a backbone calls after each stage: ``x = hook(x, state)``.

    ``state`` is a dict the backbone creates per forward pass with ``"context"`` (the tensor
    handed to every attention call site of the following stages, ``None`` by default) and
    ``"aux_logits"`` (a list auxiliary heads append to). Stage-level modules (BAM between
    stages, auxiliary classifiers) are hooks; the default hook does nothing.
    """

    def forward(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        return x


def init_backbone_convs(model: nn.Module) -> None:
    """He-normal (fan-out) weights and zero biases for the backbone's own convs (He et al., 2015,
    the "[24]" the papers cite). Attention modules keep their own initialisation; BN keeps
    PyTorch's weight 1, bias 0."""
    attention_types = tuple(ATTENTIONS.values())
    inside_attention = {id(m) for a in model.modules() if isinstance(a, attention_types) for m in a.modules()}
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and id(m) not in inside_attention:
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ThreeStageCifarNet(nn.Module):
    """The CIFAR layout of He et al. (2016): stem conv-BN-ReLU, three stages, global average
    pooling (a counted ``nn.AdaptiveAvgPool2d``), FC. Subclasses build ``conv1``, ``bn1``,
    ``relu``, ``layer1..3``, ``avgpool`` and ``fc``; the forward pass is shared."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))
