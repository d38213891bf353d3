"""Convolutional Block Attention Module (Woo, Park, Lee & Kweon, "CBAM", ECCV 2018).

Channel attention then spatial attention, at the block's call site (after the last BN of the
residual branch, before the add):

- channel: ``M_c = sigmoid(MLP(AvgPool(F)) + MLP(MaxPool(F)))``, one shared MLP ``C -> C/r -> C``
  (r = 16) with a ReLU between;
- spatial: ``M_s = sigmoid(BN(conv7x7([max_c(F'); mean_c(F')])))``, a 2 -> 1 conv without bias.

Choices pinned to the official code (Jongchan/attention-module, ``MODELS/cbam.py`` and
``model_resnet.py``):

- ``bias=True``: the MLP's two FCs have biases (PyTorch's default there). With them CBAM-ResNet-50
  has 28,089,624 params (28.09M); cra's Table III prints 28.07M, which ``bias=False`` gives
  (28,073,576), the layout of timm's CBAM (``mlp_bias=False``): cra's spec builds that variant
  (assumption cbam-bias-free);
- the spatial BN uses ``eps=1e-5, momentum=0.01`` and its weight starts at 0 (the official init
  loop zeroes every BN weight under ``SpatialGate``), so at init ``M_s = sigmoid(0) = 0.5``
  everywhere; ``spatial_bn_init`` pins it;
- the MLP's FCs keep PyTorch's default init; the 7x7 conv gets He-normal fan-out, as every conv in
  the official init loop.

Counting: the channel MLP runs twice per call and thop counts both calls. The average pooling is an
``nn.AdaptiveAvgPool2d`` module, as SE's squeeze (the official code pools functionally); the max
pooling and the channel pooling of the spatial branch are functional (the 2020-era thop counts max
pooling as 0 either way). CBAM-ResNet-50: 4,130,543,616 MACs with biases, 4,130,511,616 without
(thop-2001), both cra's 4.13G.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..registry import register_attention


@register_attention("cbam")
class ConvBlockAttention(nn.Module):
    def __init__(self, channels: int, reduction: int = 16, *, bias: bool = True, kernel_size: int = 7,
                 spatial: bool = True, spatial_bn_init: float = 0.0):
        super().__init__()
        hidden = channels // reduction
        if hidden < 1:
            raise ValueError(f"CBAM hidden width {channels}//{reduction} is < 1")
        if kernel_size % 2 != 1:
            raise ValueError(f"CBAM's spatial kernel must be odd, got {kernel_size}")
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden, bias=bias), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, channels, bias=bias))
        self.spatial = spatial
        if spatial:
            self.spatial_conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
            self.spatial_bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)
            nn.init.kaiming_normal_(self.spatial_conv.weight, mode="fan_out")
            nn.init.constant_(self.spatial_bn.weight, spatial_bn_init)
            nn.init.zeros_(self.spatial_bn.bias)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor, identity=None, context=None) -> torch.Tensor:
        avg = self.avg_pool(x).flatten(1)  # (N, C)
        peak = F.adaptive_max_pool2d(x, 1).flatten(1)  # (N, C)
        channel_map = self.gate(self.mlp(avg) + self.mlp(peak))
        x = x * channel_map[:, :, None, None]
        if not self.spatial:
            return x
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)  # (N, 2, H, W)
        return x * self.gate(self.spatial_bn(self.spatial_conv(pooled)))
