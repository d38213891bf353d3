"""SimAM (Yang, Zhang, Li and Xie, "SimAM: A Simple, Parameter-Free Attention Module for Convolutional
Neural Networks", ICML 2021; code: github.com/ZjjConan/SimAM).

SimAM weighs every neuron of a feature map by the closed-form solution of an energy function (Eqn (5)):
with d = (x - mean over H, W)^2 and v = sum(d) / (H*W - 1) per channel, the output is
x * sigmoid(d / (4 * (v + lambda)) + 0.5). It adds no parameter, and thop counts no MAC for it (its
sigmoid is a module without a rule, the rest functional), so SimAM-X has X's counts.

``e_lambda`` defaults to 1e-4 as ``networks/attentions/simam_module.py`` does; the README's ImageNet
commands pass ``--attention_param 0.1`` (the rows of ``imagenet.yaml`` say so explicitly).

Two ways in, both registered here (``repro.plugins`` is all a plugin imports):
- ``simam``: an attention for any backbone's single call site (``forward(x, identity=None,
  context=None)``: it ignores both) and, through ``{repro_attention: simam}``, timm's ``attn_layer``.
  Deliberate deviation: that site is after the residual branch's last BN, before the add; the authors'
  ResNets put SimAM right after the 3x3 conv, before its BN (``networks/imagenet/resnet.py``). Counts
  are the same; trained networks are not (the spec's assumption ``placement``).
- ``simam_mobilenet_v2``: torchvision's MobileNetV2 with SimAM after each inverted residual's depthwise
  conv (before its BN), where the authors' ``networks/imagenet/mobilenetv2.py`` puts it, and no dropout
  before the classifier (theirs is commented out; torchvision's default is 0.2).
"""
from __future__ import annotations

import torch
import torchvision
from torch import nn

from repro.plugins import register_attention, register_model


@register_attention("simam")
class SimAM(nn.Module):
    def __init__(self, channels: int | None = None, e_lambda: float = 1e-4):
        super().__init__()  # channels: the call site's contract; a parameter-free module has no use for it
        if not e_lambda > 0:  # lambda keeps the division finite on a constant map (variance 0)
            raise ValueError(f"e_lambda must be positive, got {e_lambda!r}")
        self.e_lambda = e_lambda
        self.activation = nn.Sigmoid()  # a module, as the authors': thop has no rule for it (0 MACs)

    def forward(self, x: torch.Tensor, identity=None, context=None) -> torch.Tensor:
        n = x.shape[2] * x.shape[3] - 1
        d = (x - x.mean(dim=(2, 3), keepdim=True)).pow(2)  # (N, C, H, W)
        v = d.sum(dim=(2, 3), keepdim=True) / n  # (N, C, 1, 1): each channel's variance
        return x * self.activation(d / (4 * (v + self.e_lambda)) + 0.5)

    def extra_repr(self) -> str:
        return f"e_lambda={self.e_lambda}"


@register_model("simam_mobilenet_v2", paper="simam", backbone="torchvision mobilenet_v2", attention="simam")
def simam_mobilenet_v2(num_classes: int = 1000, e_lambda: float = 1e-4) -> nn.Module:
    """torchvision's MobileNetV2 (width 1.0) with SimAM after every depthwise conv, as the authors' code."""
    net = torchvision.models.mobilenet_v2(weights=None, num_classes=num_classes, dropout=0.0)
    for block in net.features:
        if not isinstance(block, torchvision.models.mobilenetv2.InvertedResidual):
            continue  # the stem and the last 1x1 conv carry no SimAM in the authors' code either
        layers = list(block.conv)
        i = next(i for i, m in enumerate(layers) if isinstance(m, nn.Sequential) and m[0].groups > 1)  # depthwise
        conv, *norm_act = layers[i]
        layers[i] = nn.Sequential(conv, SimAM(conv.out_channels, e_lambda), *norm_act)
        block.conv = nn.Sequential(*layers)
    return net
