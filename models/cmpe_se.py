"""Named models of cmpe-se (Hu et al., "Competitive Inner-Imaging Squeeze and Excitation for
Residual Network"): Tables 1-5.

- Table 1: pre-act ResNet-110 (basic) / ResNet-164 (bottleneck), plain, SE, CMPE-SE (CIFAR).
- Tables 2, 3, 5: WRN-16-8 / 22-10 / 28-10, plain, SE, CMPE-SE (CIFAR, SVHN).
- Table 4: pre-act ResNet-50 (ImageNet), plain, SE, CMPE-SE.

The paper's defaults, pinned here (section 3, 4.1 and the MXNet code):
- reduction t = 16 for SE and CMPE-SE; plain SE is ``models/attention/se.py`` with ``bias=False``
  (the MXNet SE dense layers have no bias) on the residual branch only;
- CMPE-SE ``mode`` is one of ``double_fc`` (the basic mode, the default), ``pair_2x1``,
  ``pair_1x1``, ``fold_3x3``; inner-imaging filters eps = block width / t, i.e.
  ``filter_reduction`` = 16 for basic/wide blocks and 64 (= 4t) for bottlenecks;
- fold shape (``fold_3x3`` only; Table 5 gives the alternatives): (n = 2C/16, m = 16) for pre-act
  ResNet (``fold_m=16``), (n = 20, m = C/10) for WRN (``fold_n=20``).

Finding (WRN-16-8): the stated WRN fold (20, C/10) is impossible for WRN-16-8 (C = 128/256/512 is
not a multiple of 10; the MXNet reshape would fail), so ``cmpe_se_wrn16_8(fold_n=20)`` raises. Its
default is (16, C/8) (``fold_n=16``): the MXNet code comments its fold group as the width factor
("reimage_k = 10  # width_factor wrn28-10"), which for WRN-16-8 is 8 -> (2*8, C/8); it gives
11.09M (MXNet count), matching Table 2's 11.1M (so does (32, C/16)).

Parameter counts: the brackets of Tables 1-2 are MXNet Gluon counts (BN running mean/var
included; ``count_params(model, "mxnet")``) of the CIFAR-10 models (``num_classes=10``); see
tests/test_models_cmpe_se.py for which ones reproduce.
"""
from __future__ import annotations

from torch import nn

from .backbones.preact_resnet import preact_resnet_cifar, preact_resnet_imagenet
from .backbones.wrn import wrn_cifar
from .registry import attention_layer, register_model

REDUCTION = 16
RESNET_FOLD = {"fold_m": 16}  # (n = 2C/16, m = 16)
WRN_FOLD = {"fold_n": 20}  # (n = 20, m = C/10)
WRN16_8_FOLD = {"fold_n": 16}  # (n = 16, m = C/8): see the module docstring


def se_layer(reduction: int = REDUCTION):
    return attention_layer("se", reduction=reduction, bias=False)


def cmpe_se_layer(mode: str, reduction: int, fold_n: int | None, fold_m: int | None, *, bottleneck: bool,
                  default_fold: dict[str, int]):
    """The CMPE-SE factory with the paper's defaults; fold options only for ``fold_3x3``."""
    kwargs: dict = {"mode": mode, "reduction": reduction}
    if mode != "double_fc":
        kwargs["filter_reduction"] = reduction * (4 if bottleneck else 1)  # eps = block width / t
    if builds_default_fold(mode, fold_n, fold_m):
        kwargs.update(default_fold)
    elif fold_n is not None or fold_m is not None:
        kwargs.update(fold_n=fold_n, fold_m=fold_m)  # the attention rejects them outside fold_3x3
    return attention_layer("cmpe_se", **kwargs)


def builds_default_fold(mode: str | None, fold_n: int | None, fold_m: int | None) -> bool:
    """``fold_3x3`` with no fold given: the model's default fold (one rule for building and for job identity)."""
    return mode == "fold_3x3" and fold_n is None and fold_m is None


def fold_spelling(default_fold: dict[str, int]):
    """``mode: fold_3x3`` with no fold given builds the default fold: spelled out, it is the same job as
    the column that names that fold (cmpe-se Table 5's WRN-16-8 (20, C/10) and (16, C/8) cells)."""

    def canonical(options: dict) -> dict:
        if builds_default_fold(options.get("mode"), options.get("fold_n"), options.get("fold_m")):
            return {**options, **default_fold}
        return options

    return canonical


# Table 1: pre-act ResNet-110 / 164 (CIFAR)

@register_model(paper="cmpe-se", backbone="preact_resnet_cifar")
def preact_resnet110(*, num_classes: int = 10) -> nn.Module:
    """Pre-act ResNet-110 (basic blocks), CIFAR."""
    return preact_resnet_cifar(num_classes=num_classes, depth=110, block="basic")


@register_model(paper="cmpe-se", backbone="preact_resnet_cifar")
def preact_resnet164(*, num_classes: int = 10) -> nn.Module:
    """Pre-act ResNet-164 (bottleneck blocks), CIFAR."""
    return preact_resnet_cifar(num_classes=num_classes, depth=164, block="bottleneck")


@register_model(paper="cmpe-se", backbone="preact_resnet_cifar", attention="se")
def se_preact_resnet110(*, num_classes: int = 10, reduction: int = REDUCTION) -> nn.Module:
    """SE pre-act ResNet-110 (SE without bias, t = 16), CIFAR."""
    return preact_resnet_cifar(num_classes=num_classes, depth=110, block="basic", attn_layer=se_layer(reduction))


@register_model(paper="cmpe-se", backbone="preact_resnet_cifar", attention="se")
def se_preact_resnet164(*, num_classes: int = 10, reduction: int = REDUCTION) -> nn.Module:
    """SE pre-act ResNet-164 (SE without bias, t = 16), CIFAR."""
    return preact_resnet_cifar(num_classes=num_classes, depth=164, block="bottleneck",
                               attn_layer=se_layer(reduction))


@register_model(paper="cmpe-se", backbone="preact_resnet_cifar", attention="cmpe_se",
                canonical=fold_spelling(RESNET_FOLD))
def cmpe_se_preact_resnet110(*, num_classes: int = 10, mode: str = "double_fc", reduction: int = REDUCTION,
                             fold_n: int | None = None, fold_m: int | None = None) -> nn.Module:
    """CMPE-SE pre-act ResNet-110, CIFAR (the paper reports mode pair_1x1; fold_3x3 cannot fold C = 16)."""
    attn = cmpe_se_layer(mode, reduction, fold_n, fold_m, bottleneck=False, default_fold=RESNET_FOLD)
    return preact_resnet_cifar(num_classes=num_classes, depth=110, block="basic", attn_layer=attn)


@register_model(paper="cmpe-se", backbone="preact_resnet_cifar", attention="cmpe_se",
                canonical=fold_spelling(RESNET_FOLD))
def cmpe_se_preact_resnet164(*, num_classes: int = 10, mode: str = "double_fc", reduction: int = REDUCTION,
                             fold_n: int | None = None, fold_m: int | None = None) -> nn.Module:
    """CMPE-SE pre-act ResNet-164, CIFAR; fold_3x3 default (2C/16, 16)."""
    attn = cmpe_se_layer(mode, reduction, fold_n, fold_m, bottleneck=True, default_fold=RESNET_FOLD)
    return preact_resnet_cifar(num_classes=num_classes, depth=164, block="bottleneck", attn_layer=attn)


# Tables 2, 3, 5: WRN (CIFAR, SVHN)

@register_model(paper="cmpe-se", backbone="wrn_cifar")
def wrn16_8(*, num_classes: int = 10) -> nn.Module:
    """WRN-16-8, CIFAR."""
    return wrn_cifar(num_classes=num_classes, depth=16, widen_factor=8)


@register_model(paper="cmpe-se", backbone="wrn_cifar")
def wrn22_10(*, num_classes: int = 10) -> nn.Module:
    """WRN-22-10, CIFAR."""
    return wrn_cifar(num_classes=num_classes, depth=22, widen_factor=10)


@register_model(paper="cmpe-se", backbone="wrn_cifar")
def wrn28_10(*, num_classes: int = 10) -> nn.Module:
    """WRN-28-10, CIFAR."""
    return wrn_cifar(num_classes=num_classes, depth=28, widen_factor=10)


@register_model(paper="cmpe-se", backbone="wrn_cifar", attention="se")
def se_wrn16_8(*, num_classes: int = 10, reduction: int = REDUCTION) -> nn.Module:
    """SE-WRN-16-8 (SE without bias, t = 16), CIFAR."""
    return wrn_cifar(num_classes=num_classes, depth=16, widen_factor=8, attn_layer=se_layer(reduction))


@register_model(paper="cmpe-se", backbone="wrn_cifar", attention="se")
def se_wrn22_10(*, num_classes: int = 10, reduction: int = REDUCTION) -> nn.Module:
    """SE-WRN-22-10 (SE without bias, t = 16), CIFAR."""
    return wrn_cifar(num_classes=num_classes, depth=22, widen_factor=10, attn_layer=se_layer(reduction))


@register_model(paper="cmpe-se", backbone="wrn_cifar", attention="se")
def se_wrn28_10(*, num_classes: int = 10, reduction: int = REDUCTION) -> nn.Module:
    """SE-WRN-28-10 (SE without bias, t = 16), CIFAR."""
    return wrn_cifar(num_classes=num_classes, depth=28, widen_factor=10, attn_layer=se_layer(reduction))


@register_model(paper="cmpe-se", backbone="wrn_cifar", attention="cmpe_se",
                canonical=fold_spelling(WRN16_8_FOLD))
def cmpe_se_wrn16_8(*, num_classes: int = 10, mode: str = "double_fc", reduction: int = REDUCTION,
                    fold_n: int | None = None, fold_m: int | None = None) -> nn.Module:
    """CMPE-SE-WRN-16-8, CIFAR; fold_3x3 default (16, C/8): the stated (20, C/10) is impossible."""
    attn = cmpe_se_layer(mode, reduction, fold_n, fold_m, bottleneck=False, default_fold=WRN16_8_FOLD)
    return wrn_cifar(num_classes=num_classes, depth=16, widen_factor=8, attn_layer=attn)


@register_model(paper="cmpe-se", backbone="wrn_cifar", attention="cmpe_se",
                canonical=fold_spelling(WRN_FOLD))
def cmpe_se_wrn22_10(*, num_classes: int = 10, mode: str = "double_fc", reduction: int = REDUCTION,
                     fold_n: int | None = None, fold_m: int | None = None) -> nn.Module:
    """CMPE-SE-WRN-22-10, CIFAR; fold_3x3 default (20, C/10)."""
    attn = cmpe_se_layer(mode, reduction, fold_n, fold_m, bottleneck=False, default_fold=WRN_FOLD)
    return wrn_cifar(num_classes=num_classes, depth=22, widen_factor=10, attn_layer=attn)


@register_model(paper="cmpe-se", backbone="wrn_cifar", attention="cmpe_se",
                canonical=fold_spelling(WRN_FOLD))
def cmpe_se_wrn28_10(*, num_classes: int = 10, mode: str = "double_fc", reduction: int = REDUCTION,
                     fold_n: int | None = None, fold_m: int | None = None) -> nn.Module:
    """CMPE-SE-WRN-28-10, CIFAR/SVHN; fold_3x3 default (20, C/10)."""
    attn = cmpe_se_layer(mode, reduction, fold_n, fold_m, bottleneck=False, default_fold=WRN_FOLD)
    return wrn_cifar(num_classes=num_classes, depth=28, widen_factor=10, attn_layer=attn)


# Table 4: pre-act ResNet-50 (ImageNet)

@register_model(paper="cmpe-se", backbone="preact_resnet_imagenet")
def preact_resnet50(*, num_classes: int = 1000) -> nn.Module:
    """Pre-act ResNet-50, ImageNet (Gluon resnet50_v2 layout)."""
    return preact_resnet_imagenet(num_classes=num_classes, depth=50)


@register_model(paper="cmpe-se", backbone="preact_resnet_imagenet", attention="se")
def se_preact_resnet50(*, num_classes: int = 1000, reduction: int = REDUCTION) -> nn.Module:
    """SE pre-act ResNet-50 (SE without bias, t = 16), ImageNet."""
    return preact_resnet_imagenet(num_classes=num_classes, depth=50, attn_layer=se_layer(reduction))


@register_model(paper="cmpe-se", backbone="preact_resnet_imagenet", attention="cmpe_se",
                canonical=fold_spelling(RESNET_FOLD))
def cmpe_se_preact_resnet50(*, num_classes: int = 1000, mode: str = "double_fc", reduction: int = REDUCTION,
                            fold_n: int | None = None, fold_m: int | None = None) -> nn.Module:
    """CMPE-SE pre-act ResNet-50, ImageNet; fold_3x3 default (2C/16, 16)."""
    attn = cmpe_se_layer(mode, reduction, fold_n, fold_m, bottleneck=True, default_fold=RESNET_FOLD)
    return preact_resnet_imagenet(num_classes=num_classes, depth=50, attn_layer=attn)
