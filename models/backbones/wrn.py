"""Wide Residual Networks (Zagoruyko & Komodakis, 2016) for CIFAR, as cmpe-se builds them
(WRN-16-8, WRN-22-10, WRN-28-10).

Depth 6n+4: a 3x3 stem conv to 16 channels, three stages of n wide blocks of 16k/32k/64k channels
(k = ``widen_factor``), BN-ReLU-pool-FC head.

The wide block IS the pre-act basic block (BN-ReLU-conv3x3, BN-ReLU-[dropout]-conv3x3, shortcut
``x`` or a 1x1 projection of the pre-activated input), so it is not copied here:
``PreActBasicBlock`` carries WRN's ``dropout`` option and its single attention call site.

Choices pinned by the official CMPE-SE MXNet code (``cmpese_wrn.py``, ``cmpese_wrn_block.py``,
i.e. Gluon's ``CIFARWideResNet``):
- a parameter-free BN on the input, then the stem conv followed by a BN (no ReLU; ``stem_bn``);
- projection shortcuts are bias-free 1x1 convs without BN, on the pre-activated input; stage 1's
  first block has one (16 -> 16k channels);
- no dropout (the CMPE-SE blocks have none; ``dropout=0.0``).
"""
from __future__ import annotations

from ..registry import register_backbone
from .preact_resnet import PreActBasicBlock, PreActResNet


def wrn_layers(depth: int) -> int:
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"WRN depth must be 6n+4 with n >= 1, got {depth}")
    return (depth - 4) // 6


@register_backbone("wrn_cifar")
def wrn_cifar(*, num_classes: int = 10, depth: int = 28, widen_factor: int = 10, dropout: float = 0.0,
              attn_layer=None, **kwargs) -> PreActResNet:
    """CIFAR WRN-depth-k: 16k/32k/64k-wide stages of pre-act basic blocks."""
    n = wrn_layers(depth)
    if widen_factor < 1:
        raise ValueError(f"widen_factor must be >= 1, got {widen_factor}")
    widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
    return PreActResNet(PreActBasicBlock, (n, n, n), widths, num_classes, stem_bn=True, attn_layer=attn_layer,
                        dropout=dropout, **kwargs)
