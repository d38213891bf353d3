"""Squeeze-and-Excitation (Hu et al., 2018), with an optional context input (SE-R, Ye).

SE-R ("Introduce the Result Into Self-Attention") concatenates a prediction vector T (the
auxiliary classifier's logits) to the squeezed vector z before the excitation:
``s = sigmoid(W2 relu(W1 [z; T]))``. With ``context_dim=0`` this is plain SE.

Every choice that reference implementations disagree on is an explicit argument:
- ``reduction``: hidden width is ``channels // reduction`` (no rounding to multiples of 8;
  timm's rounding is wrong on 16/32/64-channel CIFAR stages). ``hidden`` overrides it.
- ``bias``: SE-R/pytorch-cifar100 and torchvision-era SENet use biases; the CMPE-SE MXNet code
  does not.
- ``squeeze``: ``"module"`` makes the global average pooling an ``nn.AdaptiveAvgPool2d`` module,
  which the 2020-era thop counters count (se-r's and cra's ImageNet MACs include it);
  ``"functional"`` pools with ``x.mean``, which no counter sees; ``"avgpool"`` is an
  ``nn.AvgPool2d`` over the whole map (the CIFAR SE codes' ``AvgPool2d(feature_size)``), which the
  2020-era counters count as 1 per output element, C per call (cra's CIFAR FLOPs: 8 of 9 SE cells).
- ``excitation``: ``"linear"`` (nn.Linear) or ``"conv"`` (1x1 conv); thop counts them alike
  except under the Jan-2020 rules, so the choice moves some CIFAR FLOP counts by 0.01M.
"""
from __future__ import annotations

import torch
from torch import nn

from ..registry import register_attention


def _mean_pool(x):
    return x.mean(dim=(2, 3), keepdim=True)  # (N, C, 1, 1), invisible to thop


class _WholeMapAvgPool(nn.Module):
    """Global average pooling by an ``nn.AvgPool2d`` sized to the map at each call: the counters
    dispatch on the exact module type, so the pooling itself must be a plain ``nn.AvgPool2d``."""

    def __init__(self):
        super().__init__()
        self.pool = nn.AvgPool2d(1)

    def forward(self, x):
        self.pool.kernel_size = self.pool.stride = tuple(x.shape[2:])  # one window over the whole map
        return self.pool(x)  # (N, C, 1, 1)


@register_attention("se")
class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 16, *, hidden: int | None = None,
                 bias: bool = True, context_dim: int = 0, excitation: str = "linear", squeeze: str = "module"):
        super().__init__()
        if excitation not in ("linear", "conv"):
            raise ValueError(f"excitation must be 'linear' or 'conv', got {excitation!r}")
        if squeeze not in ("module", "functional", "avgpool"):
            raise ValueError(f"squeeze must be 'module', 'functional' or 'avgpool', got {squeeze!r}")
        hidden = hidden if hidden is not None else channels // reduction
        if hidden < 1:
            raise ValueError(f"SE hidden width {channels}//{reduction} is < 1")
        self.context_dim = context_dim
        self.excitation = excitation
        self.squeeze = {"module": nn.AdaptiveAvgPool2d(1), "functional": _mean_pool,
                        "avgpool": _WholeMapAvgPool()}[squeeze]
        in_features = channels + context_dim
        if excitation == "linear":
            self.fc1 = nn.Linear(in_features, hidden, bias=bias)
            self.fc2 = nn.Linear(hidden, channels, bias=bias)
        else:
            self.fc1 = nn.Conv2d(in_features, hidden, 1, bias=bias)
            self.fc2 = nn.Conv2d(hidden, channels, 1, bias=bias)
        self.relu = nn.ReLU(inplace=True)
        self.gate = nn.Sigmoid()

    def forward(self, x, identity=None, context=None):
        z = self.squeeze(x).flatten(1)  # (N, C)
        if self.context_dim:
            if context is None:
                raise ValueError("this SE block was built with context_dim > 0 but got no context")
            z = torch.cat([z, context], dim=1)  # (N, C + n): Eq. (4) of SE-R
        if self.excitation == "conv":
            z = z[:, :, None, None]
        s = self.gate(self.fc2(self.relu(self.fc1(z))))
        return x * s.reshape(x.shape[0], -1, 1, 1)
