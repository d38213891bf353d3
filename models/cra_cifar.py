"""Named CIFAR models of cra (Shen & Wen, "CNN optimization via Channel Reassessment Attention
module"), Table V: each architecture plain, with SE, and with CRA (CIFAR-10 and CIFAR-100;
``num_classes`` is required).

| Table V row        | plain                 | SE                       | CRA                       |
|--------------------|-----------------------|--------------------------|---------------------------|
| ResNet-56 / -110   | resnet{56,110}_cifar  | se_resnet{56,110}_cifar  | cra_resnet{56,110}_cifar  |
| ResNeXt-29         | resnext29_64x8d       | se_resnext29_64x8d       | cra_resnext29_64x8d       |
| (cited ResNeXt-29) | resnext29_8x64d       | se_resnext29_8x64d       | cra_resnext29_8x64d       |
| ShuffleNet-1x      | shufflenet_g3_cifar   | se_shufflenet_g3_cifar   | cra_shufflenet_g3_cifar   |
| VGG-16             | vgg16_bn_cifar        | se_vgg16_bn_cifar        | cra_vgg16_bn_cifar        |
| DenseNet-BC        | densenet_bc100_k12    | se_densenet_bc100_k12    | cra_densenet_bc100_k12    |

Choices pinned by the printed counts (thop Jan-2020 rules, profile ``thop-2001``):
- "ResNeXt-29" at 18.17M/3.03G is 64 groups of stage-1 width 8 (``resnext29_64x8d``); the standard
  8x64d model of the ResNeXt paper (34.43M/5.40G) is kept as ``resnext29_8x64d``.
- CRA: <8,8> on ResNet/ResNeXt, <4,4> on ShuffleNet/DenseNet/VGG (section III.B). On VGG's 2x2
  conv5 maps the <4,4> pooling replicates pixels: the 15.37M needs a 4x4 GDConv there too.
- SE: reduction 16 with biases (DenseNet: hidden width 3 on the 12 new maps), a 1x1-conv
  excitation and an ``nn.AvgPool2d`` squeeze over the whole map (``squeeze="avgpool"``, as the CIFAR
  SE codes' ``AvgPool2d(feature_size)``), which the Jan-2020 thop counts as C per call. That
  construction prints 8 of the 9 SE FLOP cells; SE-ShuffleNet (45.18M vs 45.17M) is the one it
  misses. The alternatives print fewer: an uncounted (functional) squeeze 7 of 9 (misses SE-ResNet-110
  C10 and SE-ResNet-56 C100), a counted ``nn.AdaptiveAvgPool2d`` none of the ResNets (+0.27M on
  SE-ResNet-56), a Linear excitation 5 of 9 or fewer (see tests/test_models_cra_cifar.py).
- CRA-ShuffleNet's 1.38M/44.92M is not reproduced: the natural placement (CRA on the residual
  branch of every unit) gives 1.15M/44.69M.
"""
from __future__ import annotations


from torch import nn

from .backbones.densenet import densenet_bc_cifar
from .backbones.resnet_cifar import resnet_cifar
from .backbones.resnext_cifar import resnext_cifar
from .backbones.shufflenet import shufflenet_cifar
from .backbones.vgg import vgg_bn_cifar
from .registry import attention_layer, register_model

PAPER = "cra"


def cifar_se(*, reduction: int = 16, hidden: int | None = None, excitation: str = "conv", squeeze: str = "avgpool"):
    """The SE of cra's CIFAR models: biases, 1x1-conv excitation, ``nn.AvgPool2d`` squeeze (the
    construction that prints 8 of Table V's 9 SE FLOP cells)."""
    return attention_layer("se", reduction=reduction, hidden=hidden, bias=True, excitation=excitation,
                           squeeze=squeeze)


def cra(size: int):
    return attention_layer("cra", size=size)


# ResNet-56 / ResNet-110 (option-A shortcuts, bias-free convs)

@register_model(paper=PAPER, backbone="resnet_cifar", attention=None)
def resnet56_cifar(*, num_classes: int) -> nn.Module:
    """ResNet-56, option A: 853,018 params (C10), 126.56M MACs."""
    return resnet_cifar(depth=56, num_classes=num_classes)


@register_model(paper=PAPER, backbone="resnet_cifar", attention="se")
def se_resnet56_cifar(*, num_classes: int, reduction: int = 16, excitation: str = "conv",
        squeeze: str = "avgpool") -> nn.Module:
    """SE-ResNet-56 (r = 16): 860,137 params (C10)."""
    return resnet_cifar(depth=56, num_classes=num_classes, attn_layer=cifar_se(reduction=reduction,
                                                                               excitation=excitation, squeeze=squeeze))


@register_model(paper=PAPER, backbone="resnet_cifar", attention="cra")
def cra_resnet56_cifar(*, num_classes: int, cra_size: int = 8) -> nn.Module:
    """CRA-ResNet-56 (<8,8>): 918,538 params (C10), 126.62M MACs."""
    return resnet_cifar(depth=56, num_classes=num_classes, attn_layer=cra(cra_size))


@register_model(paper=PAPER, backbone="resnet_cifar", attention=None)
def resnet110_cifar(*, num_classes: int) -> nn.Module:
    """ResNet-110, option A: 1,727,962 params (C10), 254.99M MACs."""
    return resnet_cifar(depth=110, num_classes=num_classes)


@register_model(paper=PAPER, backbone="resnet_cifar", attention="se")
def se_resnet110_cifar(*, num_classes: int, reduction: int = 16, excitation: str = "conv",
        squeeze: str = "avgpool") -> nn.Module:
    """SE-ResNet-110 (r = 16): 1,742,200 params (C10)."""
    return resnet_cifar(depth=110, num_classes=num_classes, attn_layer=cifar_se(reduction=reduction,
                                                                                excitation=excitation, squeeze=squeeze))


@register_model(paper=PAPER, backbone="resnet_cifar", attention="cra")
def cra_resnet110_cifar(*, num_classes: int, cra_size: int = 8) -> nn.Module:
    """CRA-ResNet-110 (<8,8>): 1,859,002 params (C10), 255.12M MACs."""
    return resnet_cifar(depth=110, num_classes=num_classes, attn_layer=cra(cra_size))


# ResNeXt-29: Table V's model (64 x 8d) and the standard one the paper cites (8 x 64d)

@register_model(paper=PAPER, backbone="resnext_cifar", attention=None)
def resnext29_64x8d(*, num_classes: int) -> nn.Module:
    """ResNeXt-29 64x8d, cra Table V's "ResNeXt-29": 18,169,674 params (C10), 3.03G MACs."""
    return resnext_cifar(cardinality=64, base_width=8, num_classes=num_classes)


@register_model(paper=PAPER, backbone="resnext_cifar", attention="se")
def se_resnext29_64x8d(*, num_classes: int, reduction: int = 16, excitation: str = "conv",
        squeeze: str = "avgpool") -> nn.Module:
    """SE-ResNeXt-29 64x8d (cra Table V): 18,691,482 params (C10)."""
    return resnext_cifar(cardinality=64, base_width=8, num_classes=num_classes,
                         attn_layer=cifar_se(reduction=reduction, excitation=excitation, squeeze=squeeze))


@register_model(paper=PAPER, backbone="resnext_cifar", attention="cra")
def cra_resnext29_64x8d(*, num_classes: int, cra_size: int = 8) -> nn.Module:
    """CRA-ResNeXt-29 64x8d (cra Table V, <8,8>): 18,519,114 params (C10)."""
    return resnext_cifar(cardinality=64, base_width=8, num_classes=num_classes, attn_layer=cra(cra_size))


@register_model(paper=PAPER, backbone="resnext_cifar", attention=None)
def resnext29_8x64d(*, num_classes: int) -> nn.Module:
    """ResNeXt-29 8x64d, the standard model (Xie et al.): 34,426,698 params (C10), 5.40G MACs."""
    return resnext_cifar(cardinality=8, base_width=64, num_classes=num_classes)


@register_model(paper=PAPER, backbone="resnext_cifar", attention="se")
def se_resnext29_8x64d(*, num_classes: int, reduction: int = 16, excitation: str = "conv",
        squeeze: str = "avgpool") -> nn.Module:
    """SE-ResNeXt-29 8x64d (standard width; not Table V's counts): 34,948,506 params (C10)."""
    return resnext_cifar(cardinality=8, base_width=64, num_classes=num_classes,
                         attn_layer=cifar_se(reduction=reduction, excitation=excitation, squeeze=squeeze))


@register_model(paper=PAPER, backbone="resnext_cifar", attention="cra")
def cra_resnext29_8x64d(*, num_classes: int, cra_size: int = 8) -> nn.Module:
    """CRA-ResNeXt-29 8x64d (standard width; not Table V's counts): 34,776,138 params (C10)."""
    return resnext_cifar(cardinality=8, base_width=64, num_classes=num_classes, attn_layer=cra(cra_size))


# ShuffleNet-1x, g = 3

@register_model(paper=PAPER, backbone="shufflenet_cifar", attention=None)
def shufflenet_g3_cifar(*, num_classes: int) -> nn.Module:
    """ShuffleNet 1x g=3 (pytorch-cifar100 layout): 1,012,108 params (C100), 44.55M MACs."""
    return shufflenet_cifar(groups=3, num_classes=num_classes)


@register_model(paper=PAPER, backbone="shufflenet_cifar", attention="se")
def se_shufflenet_g3_cifar(*, num_classes: int, reduction: int = 16, excitation: str = "conv",
        squeeze: str = "avgpool") -> nn.Module:
    """SE-ShuffleNet 1x g=3, SE on the residual branch: 1,630,913 params (C100), 45.18M MACs (printed 45.17M)."""
    return shufflenet_cifar(groups=3, num_classes=num_classes,
                            attn_layer=cifar_se(reduction=reduction, excitation=excitation, squeeze=squeeze))


@register_model(paper=PAPER, backbone="shufflenet_cifar", attention="cra")
def cra_shufflenet_g3_cifar(*, num_classes: int, cra_size: int = 4) -> nn.Module:
    """CRA-ShuffleNet 1x g=3, CRA on the residual branch: 1,146,340 params (C100; printed 1.38M)."""
    return shufflenet_cifar(groups=3, num_classes=num_classes, attn_layer=cra(cra_size))


# VGG-16 with BN

@register_model(paper=PAPER, backbone="vgg_bn_cifar", attention=None)
def vgg16_bn_cifar(*, num_classes: int) -> nn.Module:
    """VGG-16 (cfg D) with BN, 512-512 head: 15,299,748 params (C100), 315.18M MACs."""
    return vgg_bn_cifar(config="D", num_classes=num_classes)


@register_model(paper=PAPER, backbone="vgg_bn_cifar", attention="se")
def se_vgg16_bn_cifar(*, num_classes: int, reduction: int = 16, excitation: str = "conv",
        squeeze: str = "avgpool") -> nn.Module:
    """SE-VGG-16, SE after every conv + BN: 15,530,540 params (C100), 315.41M MACs."""
    return vgg_bn_cifar(config="D", num_classes=num_classes,
                        attn_layer=cifar_se(reduction=reduction, excitation=excitation, squeeze=squeeze))


@register_model(paper=PAPER, backbone="vgg_bn_cifar", attention="cra")
def cra_vgg16_bn_cifar(*, num_classes: int, cra_size: int = 4) -> nn.Module:
    """CRA-VGG-16, CRA <4,4> after every conv + BN: 15,371,556 params (C100), 315.25M MACs."""
    return vgg_bn_cifar(config="D", num_classes=num_classes, attn_layer=cra(cra_size))


# DenseNet-BC-100, k = 12

@register_model(paper=PAPER, backbone="densenet_bc_cifar", attention=None)
def densenet_bc100_k12(*, num_classes: int) -> nn.Module:
    """DenseNet-BC-100 (k = 12): 800,032 params (C100), 296.59M MACs."""
    return densenet_bc_cifar(depth=100, growth_rate=12, num_classes=num_classes)


@register_model(paper=PAPER, backbone="densenet_bc_cifar", attention="se")
def se_densenet_bc100_k12(*, num_classes: int, hidden: int = 3, excitation: str = "conv",
        squeeze: str = "avgpool") -> nn.Module:
    """SE-DenseNet-BC-100, SE (hidden width 3) on each layer's 12 new maps: 804,208 params (C100)."""
    return densenet_bc_cifar(depth=100, growth_rate=12, num_classes=num_classes, attn_position="output",
                             attn_layer=cifar_se(hidden=hidden, excitation=excitation, squeeze=squeeze))


@register_model(paper=PAPER, backbone="densenet_bc_cifar", attention="cra")
def cra_densenet_bc100_k12(*, num_classes: int, cra_size: int = 4) -> nn.Module:
    """CRA-DenseNet-BC-100, CRA <4,4> on each dense layer's input: 950,176 params (C100)."""
    return densenet_bc_cifar(depth=100, growth_rate=12, num_classes=num_classes, attn_position="input",
                             attn_layer=cra(cra_size))
