"""cra's ImageNet models: golden counts (Tables I-IV), findings, gradients, RetinaNet (Table VI).

Counts: parameters (``model.parameters()``) and MACs under the ``thop-2001`` profile (the Jan-2020
thop rules cra's FLOPs match) on 1x3x224x224. Each exact integer is ours; each must round to the
printed value, except the three findings below, where the test pins our value and that it does
NOT round to the printed one.
"""
from __future__ import annotations

import functools

import pytest
import timm
import torch
import torchvision

import repro_models as models
from repro_models.attention.bam import BottleneckAttention
from repro_models.attention.cbam import ConvBlockAttention
from repro_models.attention.cra import ChannelReassessment
from repro_models.backbones.blocks import StageHook
from repro_models.backbones.resnet import resnet
from repro_models.registry import NoAttention, attention_layer
from repro.counting import count_macs, count_params

torch.set_num_threads(1)

INPUT = (1, 3, 224, 224)
PROFILE = "thop-2001"


def printed(value: int, unit: float) -> str:
    """A count rounded to two decimals, as the paper prints it (25.56M -> "25.56")."""
    return f"{value / unit:.2f}"


# name: (exact params, exact MACs thop-2001 @224, printed params M, printed FLOPs G), Tables I-III
TABLES = {
    "resnet50": (25_557_032, 4_113_562_624, "25.56", "4.11"),
    "seresnet50": (28_088_024, 4_124_126_976, "28.09", "4.12"),
    "cra_resnet50": (26_312_232, 4_114_317_824, "26.31", "4.11"),
    "resnet101": (44_549_160, 7_836_019_712, "44.55", "7.84"),
    "seresnet101": (49_326_872, 7_854_470_144, "49.33", "7.85"),
    "cra_resnet101": (46_174_760, 7_837_645_312, "46.17", "7.84"),
    "resnext50_32x4d": (25_028_904, 4_261_431_296, "25.03", "4.26"),
    "seresnext50_32x4d": (27_559_896, 4_271_995_648, "27.56", "4.27"),
    "cra_resnext50_32x4d": (25_784_104, 4_262_186_496, "25.78", "4.26"),
    "resnext101_32x4d": (44_177_704, 8_014_596_096, "44.18", "8.01"),
    "seresnext101_32x4d": (48_955_416, 8_033_046_528, "48.96", "8.03"),
    "cra_resnext101_32x4d": (45_803_304, 8_016_221_696, "45.80", "8.02"),
    "bam_resnet50": (25_915_099, 4_196_676_352, "25.93", "4.11"),
    "cbam_resnet50": (28_073_576, 4_130_511_616, "28.07", "4.13"),  # bias-free MLP, as cra's spec builds it
    "gala_resnet50": (29_377_608, 4_330_351_616, "29.42", "4.13"),
}
# Printed values no natural construction reproduces (ARCHITECTURES.md): (params?, FLOPs?) not matched.
# - BAM (official layout, after stages 1-3): 25.92M / 4.20G. 4.11G is plain ResNet-50, i.e. BAM built
#   but never run; BN placement (paper vs code) or BAM after stage 4 too do not give 25.93M either.
# - GALA (paper's equations, r = 16): 29.38M; its full-resolution 1x1 local convs cost ~0.2G MACs,
#   so no GALA with a C -> C/16 local pathway prints 4.13G.
# CBAM's printed 28.07M is the bias-free MLP (timm's layout), the variant cra's spec builds; the official
# layout (MLP with biases, the model's default) has 28.09M (test below).
NOT_REPRODUCED = {"bam_resnet50": (True, True), "gala_resnet50": (True, True)}
SPEC_KWARGS = {"cbam_resnet50": {"bias": False}}  # the model_kwargs of the spec row, where it sets any
# Table IV: CRA-ResNet-50 params at <h, w> (FLOPs not printed there); "w/o" is resnet50.
TABLE_IV = {7: (26_312_232, "26.31"), 5: (25_949_736, "25.95"), 3: (25_708_072, "25.71"),
            1: (25_587_240, "25.59")}
CLASSIFIERS = list(TABLES)
# Not printed: regression goldens of our construction (num_classes = 91, P6/P7 from C5; frozen BN
# statistics and affine terms are buffers). torchvision's v1 retinanet_resnet50_fpn (P6 from P5) has
# 34,014,999: the 3x3 2048 -> 256 P6 conv is the difference.
DETECTORS = {
    "retinanet_resnet50": 38_143_767, "retinanet_cra_resnet50": 38_898_967,
    "retinanet_resnet101": 57_083_671, "retinanet_cra_resnet101": 58_709_271,
}


@functools.lru_cache(maxsize=None)
def paper_model(name: str, **kwargs):
    """One shared instance per name at the paper's defaults (only counted, never mutated)."""
    torch.manual_seed(0)
    return models.create(name, **kwargs)


def test_every_named_model_is_registered():
    ours = {n for n, fn in models.MODELS.items()
            if fn.__module__ in ("repro_models.cra_imagenet", "repro_models.detection")}
    assert ours == set(CLASSIFIERS) | set(DETECTORS)
    assert all(models.MODEL_INFO[n]["paper"] == "cra" for n in ours)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_counts(name):
    params, macs, printed_params, printed_flops = TABLES[name]
    model = paper_model(name, **SPEC_KWARGS.get(name, {}))
    assert count_params(model) == params
    assert count_macs(model, INPUT, PROFILE) == macs
    params_off, flops_off = NOT_REPRODUCED.get(name, (False, False))
    assert (printed(params, 1e6) != printed_params) == params_off
    assert (printed(macs, 1e9) != printed_flops) == flops_off


@pytest.mark.parametrize("size", list(TABLE_IV))
def test_table_iv_cra_size(size):
    params, printed_params = TABLE_IV[size]
    model = paper_model("cra_resnet50", cra_size=size)
    assert count_params(model) == params
    assert printed(params, 1e6) == printed_params
    assert printed(count_macs(model, INPUT, PROFILE), 1e9) == "4.11"
    # C(hw + 1) per block: the "+1" is the GDConv bias
    block_channels = [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3
    assert params - TABLES["resnet50"][0] == sum(c * (size * size + 1) for c in block_channels)


def test_cbam_printed_params_need_a_bias_free_mlp():
    official = paper_model("cbam_resnet50")  # MLP with biases
    assert (count_params(official), count_macs(official, INPUT, PROFILE)) == (28_089_624, 4_130_543_616)
    assert printed(count_params(official), 1e6) == "28.09"  # not the printed 28.07


def test_spec_rows_use_the_kwargs_the_goldens_assume():
    from repro.catalog import load_catalog

    rows = {r.model: r.model_kwargs or {} for r in load_catalog().papers["cra"].tables["table3"].rows}
    assert {name: rows[name] for name in SPEC_KWARGS} == SPEC_KWARGS


def test_backbone_matches_torchvision_and_timm():
    ours, ref = resnet(depth=50), torchvision.models.resnet50()
    assert list(ours.state_dict()) == list(ref.state_dict())  # checkpoints load by name
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    assert count_params(resnet(depth=50, groups=32, width_per_group=4)) == count_params(
        torchvision.models.resnext50_32x4d())
    assert count_params(resnet(depth=101, groups=32, width_per_group=4)) == count_params(
        timm.create_model("resnext101_32x4d"))  # 44.18M; torchvision's 32x8d has 88.79M


def test_bam_sits_between_stages_1_to_3():
    model = paper_model("bam_resnet50")
    hooks = list(model.stage_hooks)
    assert [type(h) for h in hooks] == [BottleneckAttention] * 3 + [StageHook]
    assert [h.channel_gate[0].in_features for h in hooks[:3]] == [256, 512, 1024]
    assert all(isinstance(block.attn, NoAttention) for stage in model.stages for block in stage)
    # the grid entry point places it the same way
    assert count_params(models.create("resnet", attention="bam", depth=50)) == TABLES["bam_resnet50"][0]


def test_attention_inits_are_pinned():
    torch.manual_seed(0)
    cbam = ConvBlockAttention(64)
    assert torch.all(cbam.spatial_bn.weight == 0) and cbam.spatial_bn.momentum == 0.01
    bam = BottleneckAttention(64)
    biases = [m.bias for m in bam.modules() if getattr(m, "bias", None) is not None]
    assert len(biases) == 10 and all(torch.all(b == 0) for b in biases)  # 2 FC, 4 conv, 4 BN
    gala = models.ATTENTIONS["gala"](64)
    assert torch.all(gala.additive == 1) and torch.all(gala.multiplicative == 1)
    # the backbone's He init does not overwrite an attention module's own init
    model = resnet(depth=50, attn_layer=attention_layer("cbam"))
    assert torch.all(model.layer1[0].attn.spatial_bn.weight == 0)


def test_bam_combine_modes_differ():
    torch.manual_seed(0)
    x = torch.randn(2, 32, 8, 8)
    product, summed = BottleneckAttention(32).eval(), BottleneckAttention(32, combine="sum").eval()
    summed.load_state_dict(product.state_dict())
    with torch.no_grad():
        for m in product.modules():
            if isinstance(m, torch.nn.Linear):
                m.bias.fill_(0.3)
        summed.load_state_dict(product.state_dict())
        assert not torch.allclose(product(x, {}), summed(x, {}))


def test_unsupported_options_raise():
    with pytest.raises(ValueError):
        resnet(depth=42)
    with pytest.raises(ValueError):
        BottleneckAttention(64, combine="max")
    with pytest.raises(ValueError):
        ConvBlockAttention(64, kernel_size=6)
    with pytest.raises(ValueError):
        models.ATTENTIONS["gala"](64, squash="relu")
    with pytest.raises(ValueError):  # BAM belongs between stages, not at a block's call site
        resnet(depth=50, attn_layer=[attention_layer("bam")] * 4)


def assert_every_parameter_gets_a_gradient(model, zero_ok=()):
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        if not any(part in name for part in zero_ok):
            assert p.grad.abs().sum() > 0, name


# CRA <7,7> needs 7x7 stage-4 maps (224 input); the tiny-input grid uses <2,2> (64 input -> 2x2).
TINY_KWARGS = {name: {"cra_size": 2} for name in CLASSIFIERS if name.startswith("cra_")}
# CBAM's spatial BN weight starts at 0 (official init): the 7x7 conv gets an exactly zero gradient.
ZERO_GRAD_OK = {"cbam_resnet50": ("spatial_conv",)}


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_forward_backward_tiny(name):
    torch.manual_seed(0)
    model = models.create(name, num_classes=10, **TINY_KWARGS.get(name, {})).train()
    logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    logits.logsumexp(dim=1).sum().backward()
    assert_every_parameter_gets_a_gradient(model, ZERO_GRAD_OK.get(name, ()))


def test_cra_7x7_forward_backward_at_224():
    torch.manual_seed(0)
    model = models.create("cra_resnet50", num_classes=10).train()
    assert {m.gdconv.kernel_size for m in model.modules() if isinstance(m, ChannelReassessment)} == {(7, 7)}
    logits = model(torch.randn(2, 3, 224, 224))
    logits.logsumexp(dim=1).sum().backward()
    assert torch.isfinite(logits).all()
    assert_every_parameter_gets_a_gradient(model)


# RetinaNet (Table VI) ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(DETECTORS))
def test_retinanet_builds(name):
    torch.manual_seed(0)
    model = models.create(name)
    assert count_params(model) == DETECTORS[name]
    assert model.head.classification_head.num_classes == 91
    body = model.backbone.body
    # stem and stage 1 frozen, stages 2-4 trained; BN frozen everywhere in the body
    assert not any(p.requires_grad for n, p in body.named_parameters() if n.startswith(("conv1", "layer1")))
    assert all(p.requires_grad for n, p in body.named_parameters() if n.startswith(("layer2", "layer3", "layer4")))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())
    cra = [m for m in body.modules() if isinstance(m, ChannelReassessment)]
    assert len(cra) == (0 if "cra" not in name else 16 if "50" in name else 33)
    assert all(m.size == (7, 7) for m in cra)


def test_retinanet_cra_train_step_and_eval():
    torch.manual_seed(0)
    model = models.create("retinanet_cra_resnet50", min_size=224, max_size=224)
    images = [torch.rand(3, 224, 224), torch.rand(3, 224, 224)]
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 120.0, 150.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[50.0, 40.0, 200.0, 210.0], [0.0, 0.0, 60.0, 60.0]]),
                "labels": torch.tensor([18, 90])}]
    trained = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trained]
    optimizer = torch.optim.SGD(trained, lr=0.01, momentum=0.9)
    model.train()
    losses = model(images, targets)
    assert set(losses) == {"classification", "bbox_regression"}
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    optimizer.zero_grad()
    loss.backward()
    gdconv = model.backbone.body.layer4[0].attn.gdconv.weight
    assert gdconv.grad is not None and gdconv.grad.abs().sum() > 0
    optimizer.step()
    changed = [not torch.equal(a, b) for a, b in zip(before, trained)]
    assert sum(changed) == len(changed)
    model.eval()
    with torch.no_grad():
        detections = model(images)
    assert len(detections) == 2
    assert all(set(d) == {"boxes", "scores", "labels"} and d["boxes"].shape[-1] == 4 for d in detections)
