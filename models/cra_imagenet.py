"""cra's ImageNet models (Shen & Wen, Tables I-IV): ResNet-50/101 and ResNeXt-50/101 (32x4d), plain,
with SE and with CRA, and ResNet-50 with BAM, CBAM and GALA.

Every model is the ``resnet`` backbone (torchvision layout) with one attention. Counts (params; MACs
under the ``thop-2001`` profile at 1x3x224x224) are pinned in tests/test_models_cra_imagenet.py;
all of Tables I-IV match as printed except BAM (25.93M / 4.11G) and GALA (29.42M / 4.13G); CBAM's
28.07M needs its bias-free MLP (``bias=False``): see the attention modules' docstrings.

Names: se-r already registers ``se_resnet34/50/101`` for its CIFAR SE-ResNets, so the ImageNet
SE models take timm's names ``seresnet50``, ``seresnext50_32x4d``, ...; CRA models are
``cra_resnet50`` etc. with ``cra_size`` (the <h, w> of Table IV, default <7, 7>).
"""
from __future__ import annotations

from torch import nn

from .backbones.resnet import resnet
from .registry import attention_layer, register_model

RESNEXT_32X4D = {"groups": 32, "width_per_group": 4}


def _cra(size: int) -> dict:
    return {"attn_layer": attention_layer("cra", size=size)}


def _se(reduction: int) -> dict:
    return {"attn_layer": attention_layer("se", reduction=reduction, bias=True)}


# plain -----------------------------------------------------------------------------------------
@register_model(paper="cra", backbone="resnet", attention=None)
def resnet50(*, num_classes: int = 1000) -> nn.Module:
    """ResNet-50 (torchvision layout): 25.56M params, 4.11G MACs."""
    return resnet(depth=50, num_classes=num_classes)


@register_model(paper="cra", backbone="resnet", attention=None)
def resnet101(*, num_classes: int = 1000) -> nn.Module:
    """ResNet-101 (torchvision layout): 44.55M params, 7.84G MACs."""
    return resnet(depth=101, num_classes=num_classes)


@register_model(paper="cra", backbone="resnet", attention=None)
def resnext50_32x4d(*, num_classes: int = 1000) -> nn.Module:
    """ResNeXt-50 32x4d (torchvision layout): 25.03M params, 4.26G MACs."""
    return resnet(depth=50, num_classes=num_classes, **RESNEXT_32X4D)


@register_model(paper="cra", backbone="resnet", attention=None)
def resnext101_32x4d(*, num_classes: int = 1000) -> nn.Module:
    """ResNeXt-101 32x4d (timm's resnext101_32x4d): 44.18M params, 8.01G MACs."""
    return resnet(depth=101, num_classes=num_classes, **RESNEXT_32X4D)


# SE (r = 16, with biases) ----------------------------------------------------------------------
@register_model(paper="cra", backbone="resnet", attention="se")
def seresnet50(*, num_classes: int = 1000, reduction: int = 16) -> nn.Module:
    """SE-ResNet-50 (ImageNet, r = 16): 28.09M params, 4.12G MACs."""
    return resnet(depth=50, num_classes=num_classes, **_se(reduction))


@register_model(paper="cra", backbone="resnet", attention="se")
def seresnet101(*, num_classes: int = 1000, reduction: int = 16) -> nn.Module:
    """SE-ResNet-101 (ImageNet, r = 16): 49.33M params, 7.85G MACs."""
    return resnet(depth=101, num_classes=num_classes, **_se(reduction))


@register_model(paper="cra", backbone="resnet", attention="se")
def seresnext50_32x4d(*, num_classes: int = 1000, reduction: int = 16) -> nn.Module:
    """SE-ResNeXt-50 32x4d (ImageNet, r = 16): 27.56M params, 4.27G MACs."""
    return resnet(depth=50, num_classes=num_classes, **RESNEXT_32X4D, **_se(reduction))


@register_model(paper="cra", backbone="resnet", attention="se")
def seresnext101_32x4d(*, num_classes: int = 1000, reduction: int = 16) -> nn.Module:
    """SE-ResNeXt-101 32x4d (ImageNet, r = 16): 48.96M params, 8.03G MACs."""
    return resnet(depth=101, num_classes=num_classes, **RESNEXT_32X4D, **_se(reduction))


# CRA (<h, w> = <7, 7> unless given) --------------------------------------------------------------
@register_model(paper="cra", backbone="resnet", attention="cra")
def cra_resnet50(*, num_classes: int = 1000, cra_size: int = 7) -> nn.Module:
    """CRA-ResNet-50: 26.31M params at <7,7> (25.95M / 25.71M / 25.59M at <5,5> / <3,3> / <1,1>)."""
    return resnet(depth=50, num_classes=num_classes, **_cra(cra_size))


@register_model(paper="cra", backbone="resnet", attention="cra")
def cra_resnet101(*, num_classes: int = 1000, cra_size: int = 7) -> nn.Module:
    """CRA-ResNet-101 <7,7>: 46.17M params, 7.84G MACs."""
    return resnet(depth=101, num_classes=num_classes, **_cra(cra_size))


@register_model(paper="cra", backbone="resnet", attention="cra")
def cra_resnext50_32x4d(*, num_classes: int = 1000, cra_size: int = 7) -> nn.Module:
    """CRA-ResNeXt-50 32x4d <7,7>: 25.78M params, 4.26G MACs."""
    return resnet(depth=50, num_classes=num_classes, **RESNEXT_32X4D, **_cra(cra_size))


@register_model(paper="cra", backbone="resnet", attention="cra")
def cra_resnext101_32x4d(*, num_classes: int = 1000, cra_size: int = 7) -> nn.Module:
    """CRA-ResNeXt-101 32x4d <7,7>: 45.80M params, 8.02G MACs."""
    return resnet(depth=101, num_classes=num_classes, **RESNEXT_32X4D, **_cra(cra_size))


# Table III: other attentions on ResNet-50 ----------------------------------------------------------
@register_model(paper="cra", backbone="resnet", attention="bam")
def bam_resnet50(*, num_classes: int = 1000, combine: str = "product") -> nn.Module:
    """BAM-ResNet-50 (BAM after stages 1-3, official layout): 25.92M / 4.20G (printed 25.93M / 4.11G)."""
    return resnet(depth=50, num_classes=num_classes, attn_layer=attention_layer("bam", combine=combine))


@register_model(paper="cra", backbone="resnet", attention="cbam")
def cbam_resnet50(*, num_classes: int = 1000, bias: bool = True) -> nn.Module:
    """CBAM-ResNet-50: official layout 28.09M / 4.13G; ``bias=False`` (timm's, cra's spec) 28.07M / 4.13G."""
    return resnet(depth=50, num_classes=num_classes, attn_layer=attention_layer("cbam", bias=bias))


@register_model(paper="cra", backbone="resnet", attention="gala")
def gala_resnet50(*, num_classes: int = 1000) -> nn.Module:
    """GALA-ResNet-50 (r = 16): 29.38M / 4.33G (printed 29.42M / 4.13G)."""
    return resnet(depth=50, num_classes=num_classes, attn_layer=attention_layer("gala"))
