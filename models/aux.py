"""Auxiliary predictions for SE-R (Ye, "Introduce the Result Into Self-Attention").

Two ways to get a prediction before the network's end and hand it to the attention blocks:

``AuxClassifier``: the GoogLeNet auxiliary head (Szegedy et al., 2015) as a ``StageHook``. SE-R
Section 3.1: "an adaptive average pooling operation, a convolutional layer, and two fully connected
layers with a dropout operation between the two". Layout, pinned by the published counts
(ARCHITECTURES.md): adaptive avg-pool to 4x4, 1x1 conv -> 128 + BN + ReLU, FC 128*16=2048 -> 1024,
ReLU, dropout (0.7, SE-R Section 4), FC 1024 -> num_classes. The BN is needed for SE-R-ResNet101's
57.243M. Choices the paper leaves open, taken from torchvision's ``InceptionAux``: the 4x4 pooling is
functional (``F.adaptive_avg_pool2d``, so 2020-era thop does not count it) and the 1x1 conv has no
bias (the BN follows it); the BN keeps PyTorch's default eps.

Feeding rule (``feed=True``): the hook appends its logits to ``state["aux_logits"]`` and sets
``state["context"]`` to them, and the backbone hands the context to every block of every later stage.
So each stage's SE blocks receive the most recent auxiliary prediction: with heads after stages 2
and 3 (SE-R's default), aux1 feeds stage 3 only and aux2 feeds stage 4 only, which is what the
published counts pin (feeding aux1 to stage 4 too gives 26.164/33.608/57.319M, not Table 1). A single
head after stage k (Table 6) feeds every stage after k. With ``feed=False`` (SE-A, Table 4) the
context is left alone. The logits are not detached: the main loss also trains the head through
the attention blocks (the paper does not say otherwise).

``AuxiliaryModel``: Table 11's "auxiliary model": a separate network (GoogLeNet) sees the same
image; its logits are the context of every attention block of all four stages (assumption: its
prediction exists before stage 1, so nothing is left unfed) and are returned as an auxiliary
output for the loss (weight lossW).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .backbones.blocks import StageHook


class AuxClassifier(StageHook):
    """GoogLeNet-style auxiliary head on a stage output; appends its logits to ``state["aux_logits"]``."""

    def __init__(self, in_channels: int, num_classes: int, *, dropout: float = 0.7, feed: bool = False,
                 pool_size: int = 4, conv_channels: int = 128, hidden: int = 1024):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.feed = feed
        self.pool_size = pool_size
        self.conv = nn.Conv2d(in_channels, conv_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(conv_channels)
        self.relu = nn.ReLU(inplace=True)
        self.fc1 = nn.Linear(conv_channels * pool_size * pool_size, hidden)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(x, self.pool_size)  # (N, C, 4, 4); functional, as torchvision's InceptionAux
        x = self.relu(self.bn(self.conv(x))).flatten(1)  # (N, 128 * 16)
        x = self.dropout(self.relu(self.fc1(x)))
        return self.fc2(x)

    def forward(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        aux_logits = self.predict(x)
        state["aux_logits"].append(aux_logits)
        if self.feed:
            state["context"] = aux_logits
        return x


class AuxiliaryModel(nn.Module):
    """A backbone whose attention context is the prediction of a separate ``aux_model`` on the same image.

    ``backbone(x, context=...)`` must hand the context to every attention block. In training mode
    returns ``(logits, [aux_model_logits, *backbone_aux_logits])``; in eval mode the logits.
    """

    def __init__(self, backbone: nn.Module, aux_model: nn.Module):
        super().__init__()
        self.aux_model = aux_model
        self.backbone = backbone

    def forward(self, x: torch.Tensor):
        aux_logits = self.aux_model(x)
        out = self.backbone(x, context=aux_logits)
        if not self.training:
            return out
        logits, backbone_aux = out if isinstance(out, tuple) else (out, [])
        return logits, [aux_logits, *backbone_aux]
