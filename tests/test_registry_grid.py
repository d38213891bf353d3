"""Every backbone x attention pair: builds, runs forward and backward on a tiny input, and every
parameter gets a gradient — or refuses the pair with a ValueError (never silently)."""
from __future__ import annotations

import pytest
import torch

import repro_models as models

# the smallest member of each backbone family, and its input size
TINY = {
    "densenet_bc_cifar": ({"depth": 10, "growth_rate": 4}, 32),
    "preact_resnet_cifar": ({"depth": 8, "block": "basic"}, 32),
    "preact_resnet_imagenet": ({"depth": 18}, 64),
    "resnet": ({"depth": 18}, 64),
    "resnet_cifar": ({"depth": 8}, 32),
    "resnet_cifar100": ({"depth": 18}, 32),
    "resnext_cifar": ({"depth": 11, "cardinality": 2, "base_width": 4}, 32),
    "shufflenet_cifar": ({}, 32),
    "vgg_bn_cifar": ({"config": "A"}, 32),
    "wrn_cifar": ({"depth": 10, "widen_factor": 1}, 32),
}
OPTIONS = {"cra": {"size": 2}, "sam": {"key_reduction": 1},
           **{a: {"reduction": 2} for a in ("se", "cam", "cbam", "gala", "cmpe_se", "bam")},
           **{a: {"reduction": 2, "key_reduction": 1} for a in ("csm", "csm_reverse")}}
# CMPE-SE squeezes the shortcut: topologies without one (DenseNet, VGG, ShuffleNet's concat units)
# are refused with a ValueError (at build or at the first forward), never run without the identity.
REFUSED = {("densenet_bc_cifar", "cmpe_se"), ("vgg_bn_cifar", "cmpe_se"), ("shufflenet_cifar", "cmpe_se")}


def test_every_backbone_has_a_tiny_config():
    assert set(TINY) == set(models.BACKBONES)


PAIRS = [(b, a) for b in sorted(models.BACKBONES) for a in sorted(models.ATTENTIONS)]


@pytest.mark.parametrize("backbone, attention", PAIRS, ids=[f"{b}+{a}" for b, a in PAIRS])
def test_backbone_attention_pair(backbone, attention):
    kwargs, size = TINY[backbone]
    torch.manual_seed(0)
    build = lambda: models.create(backbone, num_classes=5, attention=attention,  # noqa: E731
                                  attention_kwargs=OPTIONS.get(attention), **kwargs)
    if (backbone, attention) in REFUSED:
        with pytest.raises(ValueError, match="identity"):
            build()(torch.randn(2, 3, size, size))
        return
    model = build().train()
    out = model(torch.randn(2, 3, size, size))
    logits = out[0] if isinstance(out, tuple) else out
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    logits.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing


def test_registering_twice_raises():
    with pytest.raises(ValueError, match="registered twice"):
        models.registry.register_attention("se")(object)
    with pytest.raises(ValueError, match="unknown model"):
        models.create("no_such_model")
    with pytest.raises(ValueError, match="named model"):
        models.create("se_r_resnet50", attention="cra")
