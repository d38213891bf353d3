"""Channel and spatial attention (Yang, Zhang & Yang, "Research on classification algorithms for
attention mechanism"): CAM, SAM and their composition CSM.

- CAM (Eqs. 3-4): ``M_c = sigmoid(W2 relu(W1 AvgPool(F)))``, ``W1: C -> C/r``, ``W2: C/r -> C``,
  ``F_1 = M_c * F``. This is SE; the paper gives no r, no bias choice and no initialisation. We use
  SE's ImageNet r = 16 with biases, i.e. exactly the ``se`` module. Supporting evidence: the paper's
  "ResNet-50+CAM" (Table I) and "ResNet-50+SE" (Table II) both have 23.21% top-1 error.
- SAM (Eq. 5, Fig. 3), the position attention of DANet (Fu et al., CVPR 2019), which the text follows
  step by step: 1x1 convs give ``B``, ``C``, ``D`` from the input ``A``; ``M_s[i, j] =
  exp(B_i . C_j) / sum_i exp(B_i . C_j)`` is an HW x HW map normalised over the source position
  ``i``; position ``j`` of the output aggregates ``D`` with those weights:
  ``E_j = gamma * sum_i M_s[i, j] D_i + A_j``.
- CSM (Eqs. 1-2): CAM then SAM; ``order="sam_cam"`` (registered as ``csm_reverse``) is Fig. 6's
  reversed order.

Choices the paper leaves open, each an explicit argument:
- ``key_reduction=8``: ``B`` and ``C`` have C/8 channels, as DANet. The paper writes
  ``{B, C, D} in R^{C x H x W}`` (no reduction; ``key_reduction=1``) but also calls the module
  lightweight; ``D`` keeps C channels as both the paper and DANet have it.
- residual with a learnable scale ``gamma`` initialised to 0, as DANet: at init SAM is the identity.
  The paper's Eq. (2) writes the output loosely as ``M_s(F_1) (x) F_1``; a SAM without the residual
  would replace every feature by a weighted average of D and lose the identity path.
- the three 1x1 convs have biases (DANet); PyTorch's default init.
- Placement is the backbone's concern: see ``models/csm.py`` (SAM only in the last stage).

Counting: thop counts SAM's three 1x1 convs, not its two HW x HW matrix products (functional
``bmm``): those add ``HW * HW * (C/key_reduction + C)`` MACs per module and image.
"""
from __future__ import annotations

import torch
from torch import nn

from ..registry import register_attention
from .se import SqueezeExcite


@register_attention("cam")
class ChannelAttention(SqueezeExcite):
    """CAM (Eqs. 3-4): SE with the paper's r (16 here) and biases; the squeeze is a counted module."""

    def __init__(self, channels: int, reduction: int = 16, *, bias: bool = True):
        super().__init__(channels, reduction, bias=bias)


@register_attention("sam")
class SpatialAttention(nn.Module):
    """SAM (Eq. 5): position attention over all H x W positions, with a residual scale ``gamma``."""

    def __init__(self, channels: int, key_reduction: int = 8, *, gamma_init: float = 0.0):
        super().__init__()
        key_channels = channels // key_reduction
        if key_channels < 1:
            raise ValueError(f"SAM key width {channels}//{key_reduction} is < 1")
        self.conv_b = nn.Conv2d(channels, key_channels, 1)
        self.conv_c = nn.Conv2d(channels, key_channels, 1)
        self.conv_d = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.full((1,), float(gamma_init)))

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """``M_s`` of Eq. (5): (N, HW, HW), entry [i, j] = softmax over i of B_i . C_j."""
        b = self.conv_b(x).flatten(2)  # (N, C', HW)
        c = self.conv_c(x).flatten(2)  # (N, C', HW)
        affinity = torch.bmm(b.transpose(1, 2), c)  # (N, HW_i, HW_j): B_i . C_j
        return affinity.softmax(dim=1)

    def forward(self, x: torch.Tensor, identity=None, context=None) -> torch.Tensor:
        n, ch, h, w = x.shape
        d = self.conv_d(x).flatten(2)  # (N, C, HW)
        aggregated = torch.bmm(d, self.attention_map(x))  # (N, C, HW_j) = sum_i D_i M_s[i, j]
        return self.gamma * aggregated.view(n, ch, h, w) + x


@register_attention("csm")
class ChannelSpatialAttention(nn.Module):
    """CSM (Eqs. 1-2): CAM then SAM (``order="cam_sam"``), or SAM then CAM (``"sam_cam"``, Fig. 6)."""

    def __init__(self, channels: int, reduction: int = 16, key_reduction: int = 8, *, order: str = "cam_sam",
                 bias: bool = True, gamma_init: float = 0.0):
        super().__init__()
        if order not in ("cam_sam", "sam_cam"):
            raise ValueError(f"order must be 'cam_sam' or 'sam_cam', got {order!r}")
        self.order = order
        self.cam = ChannelAttention(channels, reduction, bias=bias)
        self.sam = SpatialAttention(channels, key_reduction, gamma_init=gamma_init)

    def forward(self, x: torch.Tensor, identity=None, context=None) -> torch.Tensor:
        if self.order == "cam_sam":
            return self.sam(self.cam(x))
        return self.cam(self.sam(x))


@register_attention("csm_reverse")
class ChannelSpatialAttentionReversed(ChannelSpatialAttention):
    """SAM then CAM: the order ablation of Fig. 6."""

    def __init__(self, channels: int, reduction: int = 16, key_reduction: int = 8, *, bias: bool = True,
                 gamma_init: float = 0.0):
        super().__init__(channels, reduction, key_reduction, order="sam_cam", bias=bias, gamma_init=gamma_init)
