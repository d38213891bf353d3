"""Bottleneck Attention Module (Park, Woo, Lee & Kweon, "BAM: Bottleneck Attention Module", BMVC 2018).

BAM sits between stages, at each "bottleneck" of the network where the spatial size halves: after
stages 1, 2 and 3 of a ResNet (the backbone places it there; see ``placement``). It refines a
feature map as ``F' = F + F * M(F)`` with ``M(F) = sigmoid(combine(M_c(F), M_s(F)))``:

- channel branch ``M_c``: global average pool, MLP ``C -> C/r -> C`` (r = 16), a C x 1 x 1 map;
- spatial branch ``M_s``: 1x1 conv ``C -> C/r``, two 3x3 convs with dilation 4, 1x1 conv to one
  channel, a 1 x H x W map.

The layout follows the official code (Jongchan/attention-module, ``MODELS/bam.py``), which is
what the BAM paper's ImageNet models and cra's Table III comparison come from:

- BN sits after each hidden layer (after the first FC, after each hidden conv), each followed by
  ReLU; the paper's text puts one BN at the end of each branch instead;
- every FC and conv has a bias; the global pooling is functional (not a counted module);
- ``combine="product"`` (default): the official code multiplies the two maps before the sigmoid;
  the paper's Eq. (2) and its ablation (Table 2b) sum them: ``combine="sum"``. This is the one
  deliberate choice against the paper, for fidelity to the code that produced the numbers;
- init (official ``ResidualNet`` loop): convs He-normal fan-out, BN weight 1 and bias 0, every
  bias 0; the FCs keep PyTorch's default weight init.

Measured on ResNet-50 (thop-2001, 224x224): 25,915,099 params and 4,196,676,352 MACs; cra's Table III
prints 25.93M and 4.11G. 4.11G is ResNet-50 itself, i.e. what a counter prints when the BAM modules
are built but never run; no natural placement gives 25.93M (see tests/test_models_cra_imagenet.py).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..backbones.blocks import StageHook
from ..registry import register_attention


@register_attention("bam")
class BottleneckAttention(StageHook):
    placement = "between_stages"

    def __init__(self, channels: int, reduction: int = 16, *, dilation: int = 4, num_dilated: int = 2,
                 combine: str = "product"):
        super().__init__()
        if combine not in ("product", "sum"):
            raise ValueError(f"combine must be 'product' (official code) or 'sum' (paper), got {combine!r}")
        hidden = channels // reduction
        if hidden < 1:
            raise ValueError(f"BAM hidden width {channels}//{reduction} is < 1")
        self.combine = combine
        self.channel_gate = nn.Sequential(
            nn.Linear(channels, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, channels))
        spatial = [nn.Conv2d(channels, hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True)]
        for _ in range(num_dilated):
            spatial += [nn.Conv2d(hidden, hidden, 3, padding=dilation, dilation=dilation),
                        nn.BatchNorm2d(hidden), nn.ReLU(inplace=True)]
        spatial.append(nn.Conv2d(hidden, 1, 1))
        self.spatial_gate = nn.Sequential(*spatial)
        self.gate = nn.Sigmoid()
        self._init_official()

    def _init_official(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                nn.init.ones_(m.weight)
            if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, state: dict | None = None, identity=None, context=None) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(x, 1).flatten(1)  # (N, C); functional, as the official code
        channel_map = self.channel_gate(pooled)[:, :, None, None]  # (N, C, 1, 1)
        spatial_map = self.spatial_gate(x)  # (N, 1, H, W)
        if self.combine == "product":
            scores = channel_map * spatial_map  # (N, C, H, W)
        else:
            scores = channel_map + spatial_map
        return x * (1 + self.gate(scores))
