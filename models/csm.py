"""csm's models (Yang, Zhang & Yang, Tables I-II, Fig. 6): ResNet-18/34/50 and WideResNet18
(widen 1.5), plain / + SE / + CSM, and ResNet-50 + SAM / + CAM / + CSM / + CSM reversed.

The paper prints no parameter or FLOP counts and no placement, so every model here is our
construction; counts are pinned as goldens in tests/test_models_csm.py.

Backbone: cra's ``resnet`` (torchvision ImageNet layout). WideResNet18 is ``depth=18, widen=1.5``:
stage widths 96/192/384/768 with the 64-channel stem (see ``backbones/resnet.py``).

Placement (our choice, the paper gives none):
- CAM (= SE, r = 16, biases) at the call site of every block, after the last BN of the residual
  branch, as SE and CBAM sit;
- SAM only in the blocks of the last stage (``sam_stages=(4,)``: 7x7 maps at 224x224, a 49 x 49
  affinity). A full HW x HW affinity in every block is not trainable (56x56 gives a 3136 x 3136 map
  per image and block) and SAM's C x C value conv would add ~20M parameters to ResNet-50 if every
  block had one. Stages 1-3 of a CSM model therefore hold CAM alone; ``sam_stages`` moves SAM.
- CSM = CAM then SAM in the SAM stages; ``csm_reverse`` = SAM then CAM there (Fig. 6).

Shared with cra: plain ResNet-50 is ``resnet50`` and ResNet-50+SE is ``seresnet50``
(``models/cra_imagenet.py``; same architecture, SE r = 16 with biases). The SE names follow timm
(``seresnet18``) because se-r registers ``se_resnet34/50`` for its CIFAR models.

CIFAR-100 (Table III, 32x32 inputs): ``*_cifar`` models are the same ResNets with the CIFAR stem
of the ResNet/WRN CIFAR literature (3x3 stride-1 conv, 64 channels, no bias, BN, ReLU; no max-pool),
so stage 4 sees 4x4 maps instead of 1x1 and SAM there is a 16 x 16 affinity. The paper says
nothing about its CIFAR networks; this is our construction. Everything after the stem is the
ImageNet ``resnet`` backbone unchanged (torchvision blocks without conv biases, projection
shortcuts, He init, ``widen``), so plain ResNet-18 has the 11,220,132 parameters (100 classes) of
the widely used kuangliu/pytorch-cifar layout. The stem is swapped after construction
(``_cifar_stem``) because ``backbones/resnet.py`` has no stem option; a ``stem="cifar"`` argument
there building the same two modules would give identical models. We do not use se-r's
``resnet_cifar100`` backbone: it hard-wires conv biases and a ReLU before the attention (its
SE-ResNet quirks) and has no ``widen``.
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .backbones.resnet import NUM_STAGES, ResNet, resnet
from .registry import attention_layer, register_model

WIDE_RESNET18 = {"depth": 18, "widen": 1.5}


def _per_stage(attention: str, sam_stages: Sequence[int], reduction: int, key_reduction: int) -> list:
    """One attention factory per stage: CAM where SAM is absent, the SAM-holding module in ``sam_stages``."""
    if not set(sam_stages) <= set(range(1, NUM_STAGES + 1)):
        raise ValueError(f"sam_stages must be within 1..{NUM_STAGES}, got {tuple(sam_stages)}")
    cam = attention_layer("cam", reduction=reduction)
    spatial = {"csm": attention_layer("csm", reduction=reduction, key_reduction=key_reduction),
               "csm_reverse": attention_layer("csm_reverse", reduction=reduction, key_reduction=key_reduction),
               "sam": attention_layer("sam", key_reduction=key_reduction)}[attention]
    elsewhere = None if attention == "sam" else cam
    return [spatial if stage in sam_stages else elsewhere for stage in range(1, NUM_STAGES + 1)]


def _csm_resnet(*, depth: int, num_classes: int, attention: str, widen: float = 1.0,
                sam_stages: Sequence[int] = (4,), reduction: int = 16, key_reduction: int = 8) -> nn.Module:
    return resnet(depth=depth, widen=widen, num_classes=num_classes,
                  attn_layer=_per_stage(attention, sam_stages, reduction, key_reduction))


def _cifar_stem(model: ResNet) -> ResNet:
    """Replace the ImageNet stem (7x7/2 conv + 3x3/2 max-pool) by the CIFAR one: 3x3/1 conv, no pool.

    The new conv gets the backbone's He (fan-out) init; ``bn1`` and ``relu`` stay as built.
    """
    model.conv1 = nn.Conv2d(3, model.conv1.out_channels, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


# plain ---------------------------------------------------------------------------------------------
@register_model(paper="csm", backbone="resnet", attention=None)
def resnet18(*, num_classes: int = 1000) -> nn.Module:
    """ResNet-18 (torchvision layout)."""
    return resnet(depth=18, num_classes=num_classes)


@register_model(paper="csm", backbone="resnet", attention=None)
def resnet34(*, num_classes: int = 1000) -> nn.Module:
    """ResNet-34 (torchvision layout)."""
    return resnet(depth=34, num_classes=num_classes)


@register_model(paper="csm", backbone="resnet", attention=None)
def wide_resnet18(*, num_classes: int = 1000, widen: float = 1.5) -> nn.Module:
    """WideResNet18 (widen 1.5): stage widths 96/192/384/768, 64-channel stem."""
    return resnet(depth=18, widen=widen, num_classes=num_classes)


# + SE (r = 16, biases) ---------------------------------------------------------------------------
@register_model(paper="csm", backbone="resnet", attention="se")
def seresnet18(*, num_classes: int = 1000, reduction: int = 16) -> nn.Module:
    """ResNet-18 + SE (r = 16)."""
    return resnet(depth=18, num_classes=num_classes, attn_layer=attention_layer("se", reduction=reduction))


@register_model(paper="csm", backbone="resnet", attention="se")
def seresnet34(*, num_classes: int = 1000, reduction: int = 16) -> nn.Module:
    """ResNet-34 + SE (r = 16)."""
    return resnet(depth=34, num_classes=num_classes, attn_layer=attention_layer("se", reduction=reduction))


@register_model(paper="csm", backbone="resnet", attention="se")
def se_wide_resnet18(*, num_classes: int = 1000, widen: float = 1.5, reduction: int = 16) -> nn.Module:
    """WideResNet18 (widen 1.5) + SE (r = 16)."""
    return resnet(depth=18, widen=widen, num_classes=num_classes,
                  attn_layer=attention_layer("se", reduction=reduction))


# + CSM (CAM in every block, CAM then SAM in the last stage) ---------------------------------------
@register_model(paper="csm", backbone="resnet", attention="csm")
def csm_resnet18(*, num_classes: int = 1000, sam_stages: Sequence[int] = (4,)) -> nn.Module:
    """ResNet-18 + CSM."""
    return _csm_resnet(depth=18, num_classes=num_classes, attention="csm", sam_stages=sam_stages)


@register_model(paper="csm", backbone="resnet", attention="csm")
def csm_resnet34(*, num_classes: int = 1000, sam_stages: Sequence[int] = (4,)) -> nn.Module:
    """ResNet-34 + CSM."""
    return _csm_resnet(depth=34, num_classes=num_classes, attention="csm", sam_stages=sam_stages)


@register_model(paper="csm", backbone="resnet", attention="csm")
def csm_resnet50(*, num_classes: int = 1000, sam_stages: Sequence[int] = (4,)) -> nn.Module:
    """ResNet-50 + CSM (Tables I and II)."""
    return _csm_resnet(depth=50, num_classes=num_classes, attention="csm", sam_stages=sam_stages)


@register_model(paper="csm", backbone="resnet", attention="csm")
def csm_wide_resnet18(*, num_classes: int = 1000, widen: float = 1.5, sam_stages: Sequence[int] = (4,)) -> nn.Module:
    """WideResNet18 (widen 1.5) + CSM."""
    return _csm_resnet(depth=18, widen=widen, num_classes=num_classes, attention="csm", sam_stages=sam_stages)


# Table I and Fig. 6 ablations on ResNet-50 --------------------------------------------------------
@register_model(paper="csm", backbone="resnet", attention="sam")
def sam_resnet50(*, num_classes: int = 1000, sam_stages: Sequence[int] = (4,)) -> nn.Module:
    """ResNet-50 + SAM (Table I): SAM in the blocks of ``sam_stages`` only, nothing elsewhere."""
    return _csm_resnet(depth=50, num_classes=num_classes, attention="sam", sam_stages=sam_stages)


@register_model(paper="csm", backbone="resnet", attention="cam")
def cam_resnet50(*, num_classes: int = 1000, reduction: int = 16) -> nn.Module:
    """ResNet-50 + CAM (Table I): CAM in every block; the same architecture as ``seresnet50``."""
    return resnet(depth=50, num_classes=num_classes, attn_layer=attention_layer("cam", reduction=reduction))


@register_model(paper="csm", backbone="resnet", attention="csm_reverse")
def csm_reverse_resnet50(*, num_classes: int = 1000, sam_stages: Sequence[int] = (4,)) -> nn.Module:
    """ResNet-50 + SAM-then-CAM (Fig. 6): CAM alone in stages 1-3, SAM then CAM in ``sam_stages``."""
    return _csm_resnet(depth=50, num_classes=num_classes, attention="csm_reverse", sam_stages=sam_stages)


# Table III: CIFAR-100, CIFAR stem (3x3/1 conv, no max-pool) ----------------------------------------
@register_model(paper="csm", backbone="resnet", attention=None)
def resnet18_cifar(*, num_classes: int = 100) -> nn.Module:
    """ResNet-18, CIFAR stem (Table III)."""
    return _cifar_stem(resnet(depth=18, num_classes=num_classes))


@register_model(paper="csm", backbone="resnet", attention=None)
def resnet34_cifar(*, num_classes: int = 100) -> nn.Module:
    """ResNet-34, CIFAR stem (Table III)."""
    return _cifar_stem(resnet(depth=34, num_classes=num_classes))


@register_model(paper="csm", backbone="resnet", attention=None)
def resnet50_cifar(*, num_classes: int = 100) -> nn.Module:
    """ResNet-50, CIFAR stem (Table III)."""
    return _cifar_stem(resnet(depth=50, num_classes=num_classes))


@register_model(paper="csm", backbone="resnet", attention=None)
def wide_resnet18_cifar(*, num_classes: int = 100, widen: float = 1.5) -> nn.Module:
    """WideResNet18 (widen 1.5), CIFAR stem (Table III): stage widths 96/192/384/768."""
    return _cifar_stem(resnet(depth=18, widen=widen, num_classes=num_classes))


@register_model(paper="csm", backbone="resnet", attention="csm")
def csm_resnet18_cifar(*, num_classes: int = 100, sam_stages: Sequence[int] = (4,), reduction: int = 16,
                       key_reduction: int = 8) -> nn.Module:
    """ResNet-18 + CSM, CIFAR stem (Table III): CAM in every block, CAM then SAM in stage 4 (4x4 maps)."""
    return _cifar_stem(_csm_resnet(depth=18, num_classes=num_classes, attention="csm", sam_stages=sam_stages,
                                   reduction=reduction, key_reduction=key_reduction))


@register_model(paper="csm", backbone="resnet", attention="csm")
def csm_resnet34_cifar(*, num_classes: int = 100, sam_stages: Sequence[int] = (4,), reduction: int = 16,
                       key_reduction: int = 8) -> nn.Module:
    """ResNet-34 + CSM, CIFAR stem (Table III)."""
    return _cifar_stem(_csm_resnet(depth=34, num_classes=num_classes, attention="csm", sam_stages=sam_stages,
                                   reduction=reduction, key_reduction=key_reduction))


@register_model(paper="csm", backbone="resnet", attention="csm")
def csm_resnet50_cifar(*, num_classes: int = 100, sam_stages: Sequence[int] = (4,), reduction: int = 16,
                       key_reduction: int = 8) -> nn.Module:
    """ResNet-50 + CSM, CIFAR stem (Table III)."""
    return _cifar_stem(_csm_resnet(depth=50, num_classes=num_classes, attention="csm", sam_stages=sam_stages,
                                   reduction=reduction, key_reduction=key_reduction))


@register_model(paper="csm", backbone="resnet", attention="csm")
def csm_wide_resnet18_cifar(*, num_classes: int = 100, widen: float = 1.5, sam_stages: Sequence[int] = (4,),
                            reduction: int = 16, key_reduction: int = 8) -> nn.Module:
    """WideResNet18 (widen 1.5) + CSM, CIFAR stem (Table III)."""
    return _cifar_stem(_csm_resnet(depth=18, widen=widen, num_classes=num_classes, attention="csm",
                                   sam_stages=sam_stages, reduction=reduction, key_reduction=key_reduction))
