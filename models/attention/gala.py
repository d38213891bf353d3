"""Global-and-Local Attention (Linsley, Shiebler, Eberhardt & Serre, "Learning what and where to
attend", ICLR 2019; arXiv 1805.08819, which cra cites as "Global-and-local attention networks").

GALA extends SE with a local (saliency) pathway and mixes the two with learned per-channel weights:

    G = W2 relu(W1 GAP(U))                       global pathway, C x 1 x 1  (SE's MLP, C -> C/r -> C)
    S = conv_collapse(relu(conv_shrink(U)))      local pathway, 1 x H x W   (1x1 convs C -> C/r -> 1)
    A = tanh(a * (G + S) + m * (G * S))          a, m in R^C, G and S broadcast to C x H x W
    out = U * A

at the block's call site (after the last BN of the residual branch, before the add), as SE.

Choices the paper leaves open, pinned here:
- r = 16 in both pathways (SE's ImageNet reduction). The official TPU code (serre-lab/gala_tpu)
  uses r = 4 and an extra 5x5 conv in the local pathway: about 72M parameters on ResNet-50 by our
  arithmetic, far from any printed count;
- every FC and 1x1 conv has a bias; the global pooling is a counted ``nn.AdaptiveAvgPool2d``;
- ``a`` and ``m`` start at 1 (the TPU code draws them at random); other weights keep PyTorch's
  default init;
- the squashing is the paper's tanh (the TPU code uses a sigmoid): ``squash`` selects.

Measured on ResNet-50 (thop-2001, 224x224): 29,377,608 params and 4,330,351,616 MACs. cra's Table III
prints 29.42M / 4.13G. The local pathway's 1x1 convs run at full resolution and cost about 0.2G MACs,
so no GALA with a C -> C/16 local pathway prints 4.13G; the params are 0.04M short as well.
"""
from __future__ import annotations

import torch
from torch import nn

from ..registry import register_attention


@register_attention("gala")
class GlobalLocalAttention(nn.Module):
    def __init__(self, channels: int, reduction: int = 16, *, bias: bool = True, squash: str = "tanh",
                 mix_init: float = 1.0):
        super().__init__()
        if squash not in ("tanh", "sigmoid"):
            raise ValueError(f"squash must be 'tanh' (paper) or 'sigmoid' (TPU code), got {squash!r}")
        hidden = channels // reduction
        if hidden < 1:
            raise ValueError(f"GALA hidden width {channels}//{reduction} is < 1")
        self.squeeze = nn.AdaptiveAvgPool2d(1)
        self.global_mlp = nn.Sequential(nn.Linear(channels, hidden, bias=bias), nn.ReLU(inplace=True),
                                        nn.Linear(hidden, channels, bias=bias))
        self.local_convs = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=bias), nn.ReLU(inplace=True),
                                         nn.Conv2d(hidden, 1, 1, bias=bias))
        self.additive = nn.Parameter(torch.full((channels,), float(mix_init)))
        self.multiplicative = nn.Parameter(torch.full((channels,), float(mix_init)))
        self.gate = nn.Tanh() if squash == "tanh" else nn.Sigmoid()

    def forward(self, x: torch.Tensor, identity=None, context=None) -> torch.Tensor:
        global_map = self.global_mlp(self.squeeze(x).flatten(1))[:, :, None, None]  # (N, C, 1, 1)
        local_map = self.local_convs(x)  # (N, 1, H, W)
        a = self.additive[None, :, None, None]
        m = self.multiplicative[None, :, None, None]
        return x * self.gate(a * (global_map + local_map) + m * (global_map * local_map))
