"""csm's models: regression goldens, placement, SAM against a direct computation of Eq. (5), gradients.

csm prints no parameter or FLOP counts, so nothing here is checked against the paper: the counts
below pin our construction (models/csm.py) so that a change to it is seen. MACs are thop-2001 at
1x3x224x224; thop does not see SAM's two HW x HW products (functional ``bmm``).
"""
from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

import repro_models as models
from repro_models.attention.csm import ChannelAttention, ChannelSpatialAttention, SpatialAttention
from repro_models.attention.se import SqueezeExcite
from repro_models.registry import NoAttention
from repro.counting import count_macs, count_params

torch.set_num_threads(1)

INPUT = (1, 3, 224, 224)
PROFILE = "thop-2001"

# name: (exact params, exact MACs thop-2001 @224). Not printed by the paper: regression goldens.
GOLDEN = {
    "resnet18": (11_689_512, 1_819_578_368),
    "seresnet18": (11_778_592, 1_820_507_008),
    "csm_resnet18": (12_435_234, 1_852_682_240),
    "resnet34": (21_797_672, 3_671_775_232),
    "seresnet34": (21_958_868, 3_673_473_024),
    "csm_resnet34": (22_943_831, 3_721_735_680),
    "csm_resnet50": (43_824_347, 4_895_206_400),
    "wide_resnet18": (25_875_816, 3_874_383_872),
    "se_wide_resnet18": (26_074_716, 3_875_907_584),
    "csm_wide_resnet18": (27_551_198, 3_948_254_720),
    "sam_resnet50": (41_293_355, 4_884_641_792),
    "cam_resnet50": (28_088_024, 4_124_126_976),
    "csm_reverse_resnet50": (43_824_347, 4_895_206_400),
}
# Table III (CIFAR-100): the same ResNets with the CIFAR stem; (exact params, exact MACs thop-2001 @32).
# resnet18_cifar / resnet50_cifar equal the kuangliu/pytorch-cifar ResNet18 / ResNet50 (100 classes).
CIFAR_INPUT = (1, 3, 32, 32)
GOLDEN_CIFAR = {
    "resnet18_cifar": (11_220_132, 556_757_504),
    "csm_resnet18_cifar": (11_965_854, 567_685_504),
    "resnet34_cifar": (21_328_292, 1_161_556_480),
    "csm_resnet34_cifar": (22_474_451, 1_178_084_608),
    "resnet50_cifar": (23_705_252, 1_305_118_720),
    "csm_resnet50_cifar": (41_972_567, 1_563_747_072),
    "wide_resnet18_cifar": (25_176_036, 1_227_598_592),
    "csm_wide_resnet18_cifar": (26_851_418, 1_251_985_408),
}
# Table II's ResNet-50 and ResNet-50+SE rows are cra's resnet50 / seresnet50 (same architecture).
SHARED_WITH_CRA = ("resnet50", "seresnet50")


@functools.lru_cache(maxsize=None)
def paper_model(name: str):
    torch.manual_seed(0)
    return models.create(name)


def test_every_named_model_is_registered():
    ours = {n for n, fn in models.MODELS.items() if fn.__module__ == "repro_models.csm"}
    assert ours == set(GOLDEN) | set(GOLDEN_CIFAR)
    assert all(models.MODEL_INFO[n]["paper"] == "csm" for n in ours)
    assert all(n in models.MODELS for n in SHARED_WITH_CRA)


@pytest.mark.parametrize("name", list(GOLDEN))
def test_golden_counts(name):
    params, macs = GOLDEN[name]
    model = paper_model(name)
    assert count_params(model) == params
    assert count_macs(model, INPUT, PROFILE) == macs


def test_cam_is_se():
    """Table I's ResNet-50+CAM and Table II's ResNet-50+SE both report 23.21%: the same module."""
    assert count_params(paper_model("cam_resnet50")) == count_params(paper_model("seresnet50"))
    torch.manual_seed(0)
    cam, se = ChannelAttention(64), SqueezeExcite(64, 16, bias=True)
    se.load_state_dict(cam.state_dict())
    x = torch.randn(2, 64, 5, 5)
    assert torch.equal(cam(x), se(x))


def test_sam_sits_in_the_last_stage_only():
    csm, sam = paper_model("csm_resnet50"), paper_model("sam_resnet50")
    for stage_index, (csm_stage, sam_stage) in enumerate(zip(csm.stages, sam.stages), start=1):
        for csm_block, sam_block in zip(csm_stage, sam_stage):
            if stage_index == 4:
                assert isinstance(csm_block.attn, ChannelSpatialAttention)
                assert isinstance(sam_block.attn, SpatialAttention)
            else:
                assert type(csm_block.attn) is ChannelAttention
                assert isinstance(sam_block.attn, NoAttention)
    moved = models.create("csm_resnet18", sam_stages=(3, 4))
    assert isinstance(moved.layer3[0].attn, ChannelSpatialAttention)
    with pytest.raises(ValueError):
        models.create("csm_resnet18", sam_stages=(5,))


def test_wide_resnet18_construction():
    model = paper_model("wide_resnet18")
    assert model.conv1.out_channels == 64  # the stem is not widened
    assert model.stage_widths == (96, 192, 384, 768)
    assert model.layer1[0].downsample is not None  # 64 -> 96 projection
    assert model.fc.in_features == 768


def direct_eq5(sam: SpatialAttention, x: torch.Tensor) -> torch.Tensor:
    """Eq. (5) position by position, written from the paper, not from the module's code."""
    n, channels, h, w = x.shape
    positions = [(r, c) for r in range(h) for c in range(w)]

    def conv1x1(conv, vec):  # vec: (C,) -> (C_out,)
        return conv.weight[:, :, 0, 0] @ vec + conv.bias

    out = torch.empty_like(x)
    for sample in range(n):
        feats = [x[sample, :, r, c] for r, c in positions]
        b = [conv1x1(sam.conv_b, f) for f in feats]
        c_ = [conv1x1(sam.conv_c, f) for f in feats]
        d = [conv1x1(sam.conv_d, f) for f in feats]
        for j, (rj, cj) in enumerate(positions):
            scores = torch.stack([torch.dot(b[i], c_[j]) for i in range(len(positions))])
            weights = torch.exp(scores) / torch.exp(scores).sum()  # M_s[i, j], normalised over i
            aggregated = sum(weights[i] * d[i] for i in range(len(positions)))
            out[sample, :, rj, cj] = sam.gamma * aggregated + x[sample, :, rj, cj]
    return out


def test_sam_matches_eq5():
    torch.manual_seed(0)
    sam = SpatialAttention(16, key_reduction=4, gamma_init=0.7).double()
    x = torch.randn(2, 16, 3, 4, dtype=torch.float64)
    with torch.no_grad():
        expected = direct_eq5(sam, x)
        actual = sam(x)
        attention = sam.attention_map(x)
    assert torch.allclose(actual, expected, atol=1e-10)
    assert attention.shape == (2, 12, 12)
    assert torch.allclose(attention.sum(dim=1), torch.ones(2, 12, dtype=torch.float64))  # over i
    assert not torch.allclose(attention.sum(dim=2), torch.ones(2, 12, dtype=torch.float64))


def test_sam_starts_as_identity():
    torch.manual_seed(0)
    x = torch.randn(2, 32, 4, 4)
    assert torch.equal(SpatialAttention(32)(x), x)  # gamma = 0 (DANet)


def test_order_matters():
    torch.manual_seed(0)
    forward = ChannelSpatialAttention(32, gamma_init=0.5)
    reverse = models.ATTENTIONS["csm_reverse"](32, gamma_init=0.5)
    reverse.load_state_dict(forward.state_dict())
    x = torch.randn(2, 32, 4, 4)
    with torch.no_grad():
        assert torch.allclose(forward(x), forward.sam(forward.cam(x)))
        assert torch.allclose(reverse(x), forward.cam(forward.sam(x)))
        assert not torch.allclose(forward(x), reverse(x))
    with pytest.raises(ValueError):
        ChannelSpatialAttention(32, order="parallel")


@pytest.mark.parametrize("name", list(GOLDEN))
def test_forward_backward_tiny(name):
    torch.manual_seed(0)
    model = models.create(name, num_classes=10).train()
    for m in model.modules():  # open SAM's residual branch so its convs get non-zero gradients
        if isinstance(m, SpatialAttention):
            nn.init.constant_(m.gamma, 0.5)
    logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    logits.logsumexp(dim=1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", list(GOLDEN_CIFAR))
def test_golden_counts_cifar(name):
    params, macs = GOLDEN_CIFAR[name]
    model = paper_model(name)
    assert count_params(model) == params
    assert count_macs(model, CIFAR_INPUT, PROFILE) == macs


def test_cifar_stem_and_map_sizes():
    """3x3/1 stem without max-pool: 32x32 inputs reach stage 4 as 4x4 maps (1x1 with the ImageNet stem)."""
    model, imagenet_stem = paper_model("csm_resnet18_cifar").eval(), paper_model("csm_resnet18").eval()
    assert (model.conv1.kernel_size, model.conv1.stride, model.conv1.bias) == ((3, 3), (1, 1), None)
    assert isinstance(model.maxpool, nn.Identity)
    with torch.no_grad():
        x = torch.randn(1, 3, 32, 32)
        assert [f.shape[-1] for f in model.forward_features(x)] == [32, 16, 8, 4]
        assert imagenet_stem.forward_features(x)[-1].shape[-1] == 1
    # everything after the stem is the ImageNet construction: same parameters but for conv1 and fc
    def body(m):
        return {k: v.shape for k, v in m.state_dict().items() if not k.startswith(("conv1.", "fc."))}

    for cifar_name, imagenet_name in [("resnet50_cifar", "resnet50"), ("csm_wide_resnet18_cifar", "csm_wide_resnet18")]:
        assert body(paper_model(cifar_name)) == body(paper_model(imagenet_name))
    wide = paper_model("wide_resnet18_cifar")
    assert wide.stage_widths == (96, 192, 384, 768) and wide.fc.out_features == 100


def test_cifar_csm_placement():
    """CAM in every block of stages 1-3, CAM then SAM in every block of stage 4."""
    model = paper_model("csm_resnet34_cifar")
    for stage_index, stage in enumerate(model.stages, start=1):
        for block in stage:
            if stage_index == 4:
                assert isinstance(block.attn, ChannelSpatialAttention) and block.attn.order == "cam_sam"
            else:
                assert type(block.attn) is ChannelAttention
    assert all(isinstance(b.attn, NoAttention) for s in paper_model("resnet34_cifar").stages for b in s)


@pytest.mark.parametrize("name", list(GOLDEN_CIFAR))
def test_forward_backward_cifar(name):
    torch.manual_seed(0)
    model = models.create(name).train()
    for m in model.modules():  # open SAM's residual branch so its convs get non-zero gradients
        if isinstance(m, SpatialAttention):
            nn.init.constant_(m.gamma, 0.5)
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 100) and torch.isfinite(logits).all()
    logits.logsumexp(dim=1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname
