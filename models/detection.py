"""RetinaNet (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017) with our ResNet-50/101
and CRA-ResNet-50/101 bodies: cra's COCO experiment (Table VI).

torchvision does the detector: ``BackboneWithFPN`` (FPN on C3-C5) and ``RetinaNet`` (its default
anchors, heads, focal loss, box coder and post-processing). Only the body is ours: the ``resnet``
backbone, with or without CRA, in torchvision's parameter names, so an ImageNet checkpoint of
``resnet50`` / ``cra_resnet50`` loads into ``backbone.body`` (the FC is dropped).

Choices (cra says only "RetinaNet, ResNet-50/101 and their CRA backbones, pre-trained on ImageNet"):
- P3-P5 from C3-C5; P6 and P7 from C5 (``LastLevelP6P7(2048, 256)``), as the RetinaNet paper and
  Detectron; torchvision's v1 ``retinanet_resnet50_fpn`` takes them from P5 instead;
- the body's BNs are frozen (``FrozenBatchNorm2d``) and the stem and stage 1 are not trained
  (``trainable_layers=3``), as torchvision and Detectron do with an ImageNet-pretrained body at
  batch 16 (2 images per GPU);
- CRA keeps <7,7> (``cra_size``), the size the ImageNet-pretrained GDConv kernels were trained at.
  Detection inputs vary in size (shorter side 800 gives C5 maps of about 25 x 34): CRA's adaptive
  average pooling brings every map to 7 x 7 before the 7 x 7 depthwise conv. Inputs whose C5 map is
  smaller than 7 x 7 (images under 224 pixels) are rejected by CRA;
- labels follow torchvision's COCO convention: ``num_classes=91``, a box's label is its original
  COCO category id (1-90, with the 10 unused ids left empty); index 0 is never a target. The 80
  used ids are what COCO evaluation reports.
"""
from __future__ import annotations

from torchvision.models.detection import RetinaNet
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

from .backbones.resnet import ResNet, resnet
from .registry import attention_layer, register_model

FPN_CHANNELS = 256
RETURNED_STAGES = (2, 3, 4)  # C3, C4, C5
TRAINABLE_PREFIXES = ("layer4", "layer3", "layer2", "layer1", "conv1")


def resnet_fpn(body: ResNet, *, trainable_layers: int = 3) -> BackboneWithFPN:
    """torchvision's FPN on stages 2-4 of ``body``, P6/P7 from C5; freezes all but the last stages."""
    if not 0 <= trainable_layers <= len(TRAINABLE_PREFIXES):
        raise ValueError(f"trainable_layers must be in 0..{len(TRAINABLE_PREFIXES)}, got {trainable_layers}")
    if any(sum(p.numel() for p in hook.parameters()) for hook in body.stage_hooks):
        raise ValueError("the FPN body runs layer1..layer4 only; stage hooks (BAM) would be skipped")
    trained = TRAINABLE_PREFIXES[:trainable_layers]
    for name, parameter in body.named_parameters():
        if not name.startswith(trained):
            parameter.requires_grad_(False)
    widths = body.stage_widths
    return BackboneWithFPN(
        body, return_layers={f"layer{k}": str(i) for i, k in enumerate(RETURNED_STAGES)},
        in_channels_list=[widths[k - 1] for k in RETURNED_STAGES], out_channels=FPN_CHANNELS,
        extra_blocks=LastLevelP6P7(widths[-1], FPN_CHANNELS))


def _retinanet(depth: int, *, num_classes: int, cra_size: int | None, trainable_layers: int,
               min_size: int, max_size: int) -> RetinaNet:
    attn = attention_layer("cra", size=cra_size) if cra_size is not None else None
    body = resnet(depth=depth, num_classes=1000, attn_layer=attn, norm_layer=FrozenBatchNorm2d)
    return RetinaNet(resnet_fpn(body, trainable_layers=trainable_layers), num_classes,
                     min_size=min_size, max_size=max_size)


@register_model(paper="cra", backbone="resnet", attention=None)
def retinanet_resnet50(*, num_classes: int = 91, trainable_layers: int = 3, min_size: int = 800,
                       max_size: int = 1333) -> RetinaNet:
    """RetinaNet with a ResNet-50 FPN body (Table VI)."""
    return _retinanet(50, num_classes=num_classes, cra_size=None, trainable_layers=trainable_layers,
                      min_size=min_size, max_size=max_size)


@register_model(paper="cra", backbone="resnet", attention="cra")
def retinanet_cra_resnet50(*, num_classes: int = 91, cra_size: int = 7, trainable_layers: int = 3,
                           min_size: int = 800, max_size: int = 1333) -> RetinaNet:
    """RetinaNet with a CRA-ResNet-50 <7,7> FPN body (Table VI)."""
    return _retinanet(50, num_classes=num_classes, cra_size=cra_size, trainable_layers=trainable_layers,
                      min_size=min_size, max_size=max_size)


@register_model(paper="cra", backbone="resnet", attention=None)
def retinanet_resnet101(*, num_classes: int = 91, trainable_layers: int = 3, min_size: int = 800,
                        max_size: int = 1333) -> RetinaNet:
    """RetinaNet with a ResNet-101 FPN body (Table VI)."""
    return _retinanet(101, num_classes=num_classes, cra_size=None, trainable_layers=trainable_layers,
                      min_size=min_size, max_size=max_size)


@register_model(paper="cra", backbone="resnet", attention="cra")
def retinanet_cra_resnet101(*, num_classes: int = 91, cra_size: int = 7, trainable_layers: int = 3,
                            min_size: int = 800, max_size: int = 1333) -> RetinaNet:
    """RetinaNet with a CRA-ResNet-101 <7,7> FPN body (Table VI)."""
    return _retinanet(101, num_classes=num_classes, cra_size=cra_size, trainable_layers=trainable_layers,
                      min_size=min_size, max_size=max_size)
