"""Named models of SE-R (Ye, "Introduce the Result Into Self-Attention", CIFAR-100).

All on the pytorch-cifar100 ResNet (``resnet_cifar100``) with SE (r = 8, biases) on every block:

- ``se_resnet{34,50,101}``: SE-ResNet, Tables 1-3 (no auxiliary head);
- ``se_a_resnet{34,50,101}``: SE-A-ResNet, Table 4: the same auxiliary heads as SE-R, trained with
  their losses, but not fed to the attention;
- ``se_r_resnet{34,50,101}``: SE-R-ResNet, Tables 1-10: auxiliary heads after ``aux_positions``
  (default stages 2 and 3) whose logits are concatenated to the SE squeeze vector (Eq. 4). Each
  stage's SE blocks receive the most recent auxiliary prediction (see ``models/aux.py``), so their
  first FC is (C + num_classes) -> C/8 in every stage after the first head;
- ``se_r_resnet50_googlenet``: Table 11's auxiliary model: torchvision's GoogLeNet
  (``num_classes``, ``aux_logits=False``, ``init_weights=True``: the standard ImageNet layout, 7x7
  stride-2 stem, no CIFAR adaptation, since the paper only says "GoogLeNet") sees the same image;
  its logits feed every SE block of all four stages and come back as the auxiliary output.

Output contract: eval mode returns the logits; training mode returns ``(logits, [aux_logits, ...])``
in position order for models with auxiliary outputs, the logits otherwise.
"""
from __future__ import annotations

from typing import Sequence

import torchvision
from torch import nn

from .aux import AuxClassifier, AuxiliaryModel
from .backbones.resnet_cifar100 import STAGE_PLANES, resnet_cifar100, stage_widths
from .registry import attention_layer, register_model

AUX_POSITIONS = (1, 2, 3)  # a head after stage 4 would have no later stage to feed


def _check_positions(aux_positions: Sequence[int]) -> tuple[int, ...]:
    positions = tuple(aux_positions)
    if not positions or len(set(positions)) != len(positions) or not set(positions) <= set(AUX_POSITIONS):
        raise ValueError(f"aux_positions must be a non-empty subset of {AUX_POSITIONS} without repeats, "
                         f"got {aux_positions!r}")
    return tuple(sorted(positions))


def _se_resnet(depth: int, *, num_classes: int, reduction: int, aux_positions: Sequence[int] = (),
               aux_dropout: float = 0.7, feed: bool = False) -> nn.Module:
    """SE-ResNet with optional auxiliary heads after ``aux_positions``, fed to SE when ``feed``."""
    positions = _check_positions(aux_positions) if aux_positions else ()
    widths = stage_widths(depth)
    hooks = [AuxClassifier(widths[stage - 1], num_classes, dropout=aux_dropout, feed=feed)
             if stage in positions else None for stage in range(1, len(STAGE_PLANES) + 1)]
    # Stages after the first fed head see a context: their SE blocks take num_classes more inputs.
    first_fed = min(positions) if feed else len(STAGE_PLANES)
    stage_attn_kwargs = [{"context_dim": num_classes} if stage > first_fed else None
                         for stage in range(1, len(STAGE_PLANES) + 1)]
    return resnet_cifar100(depth=depth, num_classes=num_classes,
                           attn_layer=attention_layer("se", reduction=reduction, bias=True),
                           stage_attn_kwargs=stage_attn_kwargs, stage_hooks=hooks)


@register_model(paper="se-r", backbone="resnet_cifar100", attention="se")
def se_resnet34(*, num_classes: int = 100, reduction: int = 8) -> nn.Module:
    """SE-ResNet34 (pytorch-cifar100 layout, r = 8): 21.655M params, 1.163G MACs."""
    return _se_resnet(34, num_classes=num_classes, reduction=reduction)


@register_model(paper="se-r", backbone="resnet_cifar100", attention="se")
def se_resnet50(*, num_classes: int = 100, reduction: int = 8) -> nn.Module:
    """SE-ResNet50 (pytorch-cifar100 layout, r = 8): 28.779M params, 1.315G MACs."""
    return _se_resnet(50, num_classes=num_classes, reduction=reduction)


@register_model(paper="se-r", backbone="resnet_cifar100", attention="se")
def se_resnet101(*, num_classes: int = 100, reduction: int = 8) -> nn.Module:
    """SE-ResNet101 (pytorch-cifar100 layout, r = 8): 52.273M params, 2.538G MACs."""
    return _se_resnet(101, num_classes=num_classes, reduction=reduction)


@register_model(paper="se-r", backbone="resnet_cifar100", attention="se")
def se_a_resnet34(*, num_classes: int = 100, reduction: int = 8, aux_dropout: float = 0.7,
                  aux_positions: Sequence[int] = (2, 3)) -> nn.Module:
    """SE-A-ResNet34: SE-ResNet34 with auxiliary heads not fed to the attention (Table 4)."""
    return _se_resnet(34, num_classes=num_classes, reduction=reduction, aux_positions=aux_positions,
                      aux_dropout=aux_dropout, feed=False)


@register_model(paper="se-r", backbone="resnet_cifar100", attention="se")
def se_a_resnet50(*, num_classes: int = 100, reduction: int = 8, aux_dropout: float = 0.7,
                  aux_positions: Sequence[int] = (2, 3)) -> nn.Module:
    """SE-A-ResNet50: SE-ResNet50 with auxiliary heads not fed to the attention (Table 4)."""
    return _se_resnet(50, num_classes=num_classes, reduction=reduction, aux_positions=aux_positions,
                      aux_dropout=aux_dropout, feed=False)


@register_model(paper="se-r", backbone="resnet_cifar100", attention="se")
def se_a_resnet101(*, num_classes: int = 100, reduction: int = 8, aux_dropout: float = 0.7,
                   aux_positions: Sequence[int] = (2, 3)) -> nn.Module:
    """SE-A-ResNet101: SE-ResNet101 with auxiliary heads not fed to the attention (Table 4)."""
    return _se_resnet(101, num_classes=num_classes, reduction=reduction, aux_positions=aux_positions,
                      aux_dropout=aux_dropout, feed=False)


@register_model(paper="se-r", backbone="resnet_cifar100", attention="se")
def se_r_resnet34(*, num_classes: int = 100, reduction: int = 8, aux_dropout: float = 0.7,
                  aux_positions: Sequence[int] = (2, 3)) -> nn.Module:
    """SE-R-ResNet34: auxiliary predictions fed to SE (r = 8): 26.145M params, 1.169G MACs."""
    return _se_resnet(34, num_classes=num_classes, reduction=reduction, aux_positions=aux_positions,
                      aux_dropout=aux_dropout, feed=True)


@register_model(paper="se-r", backbone="resnet_cifar100", attention="se")
def se_r_resnet50(*, num_classes: int = 100, reduction: int = 8, aux_dropout: float = 0.7,
                  aux_positions: Sequence[int] = (2, 3)) -> nn.Module:
    """SE-R-ResNet50: auxiliary predictions fed to SE (r = 8): 33.531M params, 1.323G MACs."""
    return _se_resnet(50, num_classes=num_classes, reduction=reduction, aux_positions=aux_positions,
                      aux_dropout=aux_dropout, feed=True)


@register_model(paper="se-r", backbone="resnet_cifar100", attention="se")
def se_r_resnet101(*, num_classes: int = 100, reduction: int = 8, aux_dropout: float = 0.7,
                   aux_positions: Sequence[int] = (2, 3)) -> nn.Module:
    """SE-R-ResNet101: auxiliary predictions fed to SE (r = 8): 57.243M params, 2.546G MACs."""
    return _se_resnet(101, num_classes=num_classes, reduction=reduction, aux_positions=aux_positions,
                      aux_dropout=aux_dropout, feed=True)


@register_model(paper="se-r", backbone="resnet_cifar100", attention="se")
def se_r_resnet50_googlenet(*, num_classes: int = 100, reduction: int = 8) -> nn.Module:
    """SE-R-ResNet50 with a GoogLeNet auxiliary model feeding every SE block (Table 11)."""
    aux_model = torchvision.models.googlenet(num_classes=num_classes, aux_logits=False, init_weights=True)
    backbone = resnet_cifar100(depth=50, num_classes=num_classes,
                               attn_layer=attention_layer("se", reduction=reduction, bias=True),
                               stage_attn_kwargs=[{"context_dim": num_classes}] * len(STAGE_PLANES))
    return AuxiliaryModel(backbone, aux_model)
