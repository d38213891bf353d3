"""Competitive Squeeze-Excitation (Hu, Wen, Luo, Dai, Ma, Yu, "Competitive Inner-Imaging Squeeze
and Excitation for Residual Network"; official code: MXNet Gluon, scut-aitcm/CompetitiveSENet).

The residual branch ``x`` (U_r) is rescaled channel-wise by an excitation computed from both
the squeezed residual and the squeezed shortcut output ``identity`` (X_id), which the block's
call site hands over: ``out = self.attn(out, identity=identity, context=context)``.

Modes (t = ``reduction``, C = ``channels``, eps = ``channels // filter_reduction`` filters):
- ``double_fc`` (Eq. 7): ReLU(W1_r u) and ReLU(W1_id x), each C -> C/t, concatenated, then
  W2 2C/t -> C and a sigmoid.
- ``pair_2x1`` (Eqs. 10-12): stack the squeezes as a (2, C) map, eps 2x1 convs, BN, average over
  the eps maps -> C values -> FC C -> C/t -> ReLU -> FC C/t -> C -> sigmoid.
- ``pair_1x1`` (Eqs. 13-14): as above with 1x1 convs; the averaged (2, C) map is flattened, so
  the first FC is 2C -> C/t.
- ``fold_3x3`` (Eqs. 15-16): fold the pair view to (n, m), n * m = 2C, rows alternating m
  residual and m identity squeezes; eps unpadded 3x3 convs, BN, average -> (n-2)(m-2) values ->
  FC -> C/t -> ReLU -> FC -> C -> sigmoid. The shape is given by exactly one of ``fold_m``
  (columns fixed, n = 2C/m: the paper's (2C/16, 16) for pre-act ResNet) or ``fold_n`` (rows
  fixed, m = 2C/n: the paper's (20, C/10) for WRN).

Choices pinned by the MXNet code (each verified against the published parameter counts in
tests/test_models_cmpe_se.py):
- every FC and every inner-imaging conv is bias-free (``bias=False``); the inner-imaging conv is
  followed by a BatchNorm over its eps maps, then the mean over them (conv -> BN -> mean);
- eps = block width / t: ``channels // 16`` for basic and wide blocks, but the block width of a
  bottleneck is ``channels / 4``, so bottleneck models pass ``filter_reduction=64`` (the MXNet
  bottleneck uses ``planes // 16`` filters). The default ``filter_reduction=reduction`` is right
  only for non-bottleneck blocks: this module cannot see the block width;
- integer division everywhere (``C // t``), as Python 2 did in the official code;
- the fold: the MXNet ``ResFoldReimageLayer``/``WRNFoldReimageLayer`` both give row 2g the
  residual squeezes of channels [g*m, (g+1)*m) and row 2g+1 the identity squeezes of the same
  channels (Eq. 15); ``fold_pair_view`` does exactly that.

Deliberate deviations from the MXNet code (none changes a parameter count):
- the pair views are laid out as the paper's (2, C) map with 2x1 kernels (Eq. 10); MXNet stacks a
  (C, 2) map and scans it with 1x2 kernels. Same function; for ``pair_1x1`` the flattened order
  (all residual values, then all identity values, instead of interleaved) only permutes the
  first FC's input columns;
- ``double_fc`` uses ``nn.Linear`` where MXNet uses 1x1 convs on the pooled (N, C, 1, 1) maps
  (same weights, no bias either way).
"""
from __future__ import annotations

import torch
from torch import nn

from ..registry import register_attention

MODES = ("double_fc", "pair_2x1", "pair_1x1", "fold_3x3")


def fold_pair_view(residual: torch.Tensor, identity: torch.Tensor, cols: int) -> torch.Tensor:
    """Eq. 15: fold squeezes (N, C) + (N, C) into a (N, 1, 2C/cols, cols) map.

    Row 2g holds residual channels [g*cols, (g+1)*cols), row 2g+1 the identity channels of the
    same range, so the rows alternate residual / identity.
    """
    n, channels = residual.shape
    if channels % cols:
        raise ValueError(f"fold width {cols} does not divide {channels} channels")
    groups = channels // cols
    pairs = torch.stack([residual.reshape(n, groups, cols), identity.reshape(n, groups, cols)], dim=2)  # (N, C/m, 2, m)
    return pairs.reshape(n, 1, 2 * groups, cols)  # (N, 1, 2C/m, m)


def fold_shape(channels: int, fold_n: int | None, fold_m: int | None) -> tuple[int, int]:
    """(n, m) of the folded map for ``channels``; exactly one of ``fold_n``/``fold_m`` is given."""
    if (fold_n is None) == (fold_m is None):
        raise ValueError("fold_3x3 needs exactly one of fold_n (rows, m = 2C/n) or fold_m (columns, n = 2C/m)")
    if fold_m is not None:
        if fold_m < 1 or channels % fold_m:
            raise ValueError(f"fold (n = 2C/{fold_m}, m = {fold_m}) is impossible for C = {channels}: "
                             f"m must divide C")
        n, m = 2 * channels // fold_m, fold_m
    else:
        if fold_n < 2 or fold_n % 2 or channels % (fold_n // 2):
            raise ValueError(f"fold (n = {fold_n}, m = 2C/{fold_n}) is impossible for C = {channels}: "
                             f"n must be even and n/2 must divide C (rows alternate residual/identity)")
        n, m = fold_n, 2 * channels // fold_n
    if n < 3 or m < 3:
        raise ValueError(f"fold ({n} x {m}) of C = {channels} is too small for an unpadded 3x3 conv")
    return n, m


@register_attention("cmpe_se")
class CompetitiveSE(nn.Module):
    def __init__(self, channels: int, mode: str = "double_fc", reduction: int = 16, *,
                 filter_reduction: int | None = None, fold_n: int | None = None, fold_m: int | None = None,
                 bias: bool = False):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"cmpe_se mode must be one of {MODES}, got {mode!r}")
        if mode != "fold_3x3" and (fold_n is not None or fold_m is not None):
            raise ValueError(f"fold_n/fold_m apply only to mode 'fold_3x3', not {mode!r}")
        if mode == "double_fc" and filter_reduction is not None:
            raise ValueError("filter_reduction sets the inner-imaging filters; mode 'double_fc' has none")
        hidden = channels // reduction
        if hidden < 1:
            raise ValueError(f"CMPE-SE hidden width {channels}//{reduction} is < 1")
        self.mode = mode
        self.channels = channels
        self.squeeze = nn.AdaptiveAvgPool2d(1)
        self.relu = nn.ReLU(inplace=True)
        self.gate = nn.Sigmoid()
        if mode == "double_fc":
            self.fc_residual = nn.Linear(channels, hidden, bias=bias)
            self.fc_identity = nn.Linear(channels, hidden, bias=bias)
            self.fc_excite = nn.Linear(2 * hidden, channels, bias=bias)
            return
        filters = channels // (filter_reduction or reduction)
        if filters < 1:
            raise ValueError(f"CMPE-SE inner-imaging filters {channels}//{filter_reduction or reduction} is < 1")
        self.fold = None
        if mode == "pair_2x1":
            kernel, in_features = (2, 1), channels
        elif mode == "pair_1x1":
            kernel, in_features = (1, 1), 2 * channels
        else:
            n, m = fold_shape(channels, fold_n, fold_m)
            self.fold = (n, m)
            kernel, in_features = (3, 3), (n - 2) * (m - 2)
        self.imaging = nn.Conv2d(1, filters, kernel, bias=False)  # unpadded, as in MXNet
        self.imaging_bn = nn.BatchNorm2d(filters)
        self.fc1 = nn.Linear(in_features, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, channels, bias=bias)

    def inner_image(self, residual: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        """The map the inner-imaging conv scans: (N, 1, 2, C) pair view or (N, 1, n, m) fold."""
        if self.fold is not None:
            return fold_pair_view(residual, identity, self.fold[1])
        return torch.stack([residual, identity], dim=1)[:, None]  # (N, 1, 2, C): Eq. 10

    def forward(self, x, identity=None, context=None):
        if identity is None:
            raise ValueError("cmpe_se needs the block's shortcut output: call it with identity=")
        if identity.shape[1] != x.shape[1]:
            raise ValueError(f"cmpe_se: identity has {identity.shape[1]} channels, residual {x.shape[1]}")
        u = self.squeeze(x).flatten(1)  # (N, C)
        v = self.squeeze(identity).flatten(1)  # (N, C)
        if self.mode == "double_fc":
            joint = torch.cat([self.relu(self.fc_residual(u)), self.relu(self.fc_identity(v))], dim=1)  # (N, 2C/t)
            s = self.gate(self.fc_excite(joint))
        else:
            maps = self.imaging_bn(self.imaging(self.inner_image(u, v)))  # (N, eps, H', W')
            relation = maps.mean(dim=1).flatten(1)  # (N, H'W'): Eqs. 11, 13, 16 average the eps maps
            s = self.gate(self.fc2(self.relu(self.fc1(relation))))
        return x * s[:, :, None, None]
