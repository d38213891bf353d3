"""ImageNet ResNet / ResNeXt (He et al., 2016; Xie et al., 2017) in torchvision's layout.

One backbone, ``resnet``, built from the shared blocks of ``blocks.py``: a plain ResNet-50 has
torchvision's 25,557,032 parameters, ResNeXt-50 32x4d its 25,028,904, and ResNeXt-101 32x4d
(``groups=32, width_per_group=4``) timm's 44,177,704 (cra's "ResNeXt-101" is 32x4d, not
torchvision's 32x8d).

Layout choices, pinned to torchvision (the baselines cra's counts match):
- 7x7/2 stem conv (no bias) + BN + ReLU + 3x3/2 max-pool; bottleneck stride on the 3x3 conv;
  projection shortcuts (1x1 conv + BN); the global pooling is an ``nn.AdaptiveAvgPool2d`` module,
  which the 2020-era thop counts (cra's FLOPs include it);
- He-normal (fan-out) init for the backbone's convs, BN weight 1 and bias 0, PyTorch's default for
  the FC; ``zero_init_residual`` (off, as torchvision) zeroes each block's last BN weight. Attention
  modules keep their own, pinned init (the sibling CIFAR backbones follow the same rule).

``widen`` multiplies every stage's width (``planes``): csm's "WideResNet18 (widen=1.5)" is
``depth=18, widen=1.5``: stages of 96/192/384/768 channels. The stem keeps 64 channels, as the
wide ResNets of Zagoruyko & Komodakis widen the residual groups only, so stage 1's first block gets
a projection shortcut (64 -> 96). csm does not say; this is our construction.

Attention plugs in two ways:
- ``attn_layer``: a factory ``channels -> module`` for the call site of every block, or a sequence of
  four factories (``None`` = no attention) to give each stage its own (csm puts SAM in some stages only);
- ``stage_hooks``: four ``StageHook`` modules, one called after each stage (``x = hook(x, state)``).
  An attention class whose ``placement`` attribute is ``"between_stages"`` (BAM) given as
  ``attn_layer`` is placed as hooks after stages 1-3, where the BAM paper puts it.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Callable

import torch
from torch import nn

from ..registry import register_backbone
from .blocks import BasicBlock, Bottleneck, StageHook, init_backbone_convs, make_stage, projection

LAYERS = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)),
          50: (Bottleneck, (3, 4, 6, 3)), 101: (Bottleneck, (3, 4, 23, 3)), 152: (Bottleneck, (3, 8, 36, 3))}
STAGE_PLANES = (64, 128, 256, 512)
NUM_STAGES = len(STAGE_PLANES)

AttnFactory = Callable[..., nn.Module]


def attention_class(factory: AttnFactory | None) -> type | None:
    """The class a factory builds (it may be a ``functools.partial``)."""
    while factory is not None and hasattr(factory, "func"):
        factory = factory.func
    return factory if isinstance(factory, type) else None


def between_stages(factory: AttnFactory | None) -> bool:
    cls = attention_class(factory)
    return cls is not None and getattr(cls, "placement", "block") == "between_stages"


class ResNet(nn.Module):
    def __init__(self, block: type[nn.Module], layers: Sequence[int], num_classes: int = 1000, *,
                 attn_layer: AttnFactory | Sequence[AttnFactory | None] | None = None,
                 stage_hooks: Sequence[nn.Module | None] | None = None, groups: int = 1,
                 width_per_group: int = 64, widen: float = 1.0, zero_init_residual: bool = False,
                 norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d):
        super().__init__()
        if len(layers) != NUM_STAGES:
            raise ValueError(f"need {NUM_STAGES} stage depths, got {list(layers)}")
        if widen <= 0:
            raise ValueError(f"widen must be positive, got {widen}")
        stage_attn = self._stage_attention(attn_layer)
        hook_layer = attn_layer if between_stages(attn_layer) else None
        if hook_layer is not None and stage_hooks is not None:
            raise ValueError("give a between-stages attention either as attn_layer or as stage_hooks, not both")

        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, 7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stage_widths = []
        for i, (planes, blocks) in enumerate(zip(STAGE_PLANES, layers)):
            stage, self.inplanes = make_stage(
                block, self.inplanes, int(round(planes * widen)), blocks, 1 if i == 0 else 2,
                shortcut=functools.partial(projection, norm_layer=norm_layer),
                attn_layer=stage_attn[i], groups=groups, base_width=width_per_group, norm_layer=norm_layer)
            self.add_module(f"layer{i + 1}", stage)  # torchvision names: layer1..layer4
            stage_widths.append(self.inplanes)
        self.stage_widths = tuple(stage_widths)
        if hook_layer is not None:
            stage_hooks = [hook_layer(width) for width in stage_widths[:-1]] + [None]
        if stage_hooks is None:
            stage_hooks = [None] * NUM_STAGES
        if len(stage_hooks) != NUM_STAGES:
            raise ValueError(f"need {NUM_STAGES} stage hooks (None for none), got {len(stage_hooks)}")
        self.stage_hooks = nn.ModuleList([hook if hook is not None else StageHook() for hook in stage_hooks])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.inplanes, num_classes)

        init_backbone_convs(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    @staticmethod
    def _stage_attention(attn_layer) -> list[AttnFactory | None]:
        if attn_layer is None or between_stages(attn_layer):
            return [None] * NUM_STAGES
        if isinstance(attn_layer, str):
            raise ValueError("attn_layer is a factory (models.registry.attention_layer), not a name")
        if isinstance(attn_layer, Sequence):
            if len(attn_layer) != NUM_STAGES:
                raise ValueError(f"need {NUM_STAGES} per-stage attention factories, got {len(attn_layer)}")
            if any(between_stages(f) for f in attn_layer):
                raise ValueError("a between-stages attention (BAM) cannot sit at a block's call site")
            return list(attn_layer)
        return [attn_layer] * NUM_STAGES

    @property
    def stages(self) -> list[nn.Module]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def forward_features(self, x: torch.Tensor, context: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The four stage outputs (after each stage's hook)."""
        state = {"context": context, "aux_logits": []}
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = []
        for stage, hook in zip(self.stages, self.stage_hooks):
            x = hook(stage(x, context=state["context"]), state)
            features.append(x)
        return features

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = self.forward_features(x, context)[-1]
        return self.fc(self.avgpool(x).flatten(1))  # (N, num_classes)


@register_backbone("resnet")
def resnet(*, depth: int = 50, num_classes: int = 1000, attn_layer=None, **kwargs) -> ResNet:
    """ImageNet ResNet/ResNeXt of depth 18/34/50/101/152 (``groups``, ``width_per_group``, ``widen``)."""
    if depth not in LAYERS:
        raise ValueError(f"ImageNet ResNet depth must be one of {sorted(LAYERS)}, got {depth}")
    block, layers = LAYERS[depth]
    return ResNet(block, layers, num_classes, attn_layer=attn_layer, **kwargs)
