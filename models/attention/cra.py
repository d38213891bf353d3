"""Channel Reassessment Attention (Shen & Wen, "CNN optimization via Channel Reassessment
Attention module").

Average-pool each channel to <h, w>, score it with a global depthwise conv (GDConv, an h x w
depthwise conv with bias: the "+1" of the paper's C(hw+1) parameters), sigmoid, rescale.

Deliberate choices, pinned by the published counts (ARCHITECTURES.md):
- the pooling is functional (``F.adaptive_avg_pool2d``), so thop does not count it; the
  paper's tables count only the GDConv, not its stated formula 2C(3HW+hw);
- placement (after the last BN of a residual branch, before the add) is the backbone's call
  site, not this module's concern;
- a map smaller than <h,w> is pooled up (adaptive pooling repeats pixels): cra's VGG-16 uses
  <4,4> on its 2x2 conv5 maps, and the printed 15.37M/315.25M need that 4x4 GDConv there;
- the GDConv keeps PyTorch's default initialisation (the paper's "initialize as in [24]" is for
  the backbone's convolutions).
"""
from __future__ import annotations

from torch import nn
from torch.nn import functional as F

from ..registry import register_attention


@register_attention("cra")
class ChannelReassessment(nn.Module):
    def __init__(self, channels: int, size: int | tuple[int, int] = 7):
        super().__init__()
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.gdconv = nn.Conv2d(channels, channels, self.size, groups=channels, bias=True)
        self.gate = nn.Sigmoid()

    def forward(self, x, identity=None, context=None):
        u = F.adaptive_avg_pool2d(x, self.size)  # (N, C, h, w)
        v = self.gate(self.gdconv(u))  # (N, C, 1, 1)
        return x * v
