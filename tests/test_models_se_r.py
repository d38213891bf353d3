"""SE-R models: golden counts (Tables 1-2), output contract, feeding rule, gradients."""
from __future__ import annotations

import functools

import pytest
import torch

import repro_models as models
from repro_models.aux import AuxClassifier
from repro.counting import count_macs, count_params

torch.set_num_threads(1)

INPUT = (1, 3, 32, 32)
PROFILE = "thop-2004"

# name: (exact params, exact MACs under thop-2004 on 1x3x32x32, published M params, published G MACs)
PUBLISHED = {
    "se_resnet34": (21_655_420, 1_163_289_280, 21.655, 1.163),
    "se_resnet50": (28_778_692, 1_315_158_784, 28.779, 1.315),
    "se_resnet101": (52_272_964, 2_537_914_112, 52.273, 2.538),
    "se_r_resnet34": (26_144_836, 1_168_521_408, 26.145, 1.169),
    "se_r_resnet50": (33_530_764, 1_322_865_408, 33.531, 1.323),
    "se_r_resnet101": (57_242_636, 2_545_838_336, 57.243, 2.546),
}
# Not printed in the paper: regression goldens of our construction.
UNPUBLISHED = {
    "se_a_resnet34": (26_106_436, 1_168_483_008),
    "se_a_resnet50": (33_377_164, 1_322_711_808),
    "se_a_resnet101": (56_871_436, 2_545_467_136),
    "se_r_resnet50_googlenet": (34_669_896, 1_346_141_920),
}
NAMED = ["se_resnet34", "se_resnet50", "se_resnet101", "se_a_resnet34", "se_a_resnet50", "se_a_resnet101",
         "se_r_resnet34", "se_r_resnet50", "se_r_resnet101", "se_r_resnet50_googlenet"]
WITH_AUX = {name: 2 for name in NAMED if name.startswith(("se_a_", "se_r_"))} | {"se_r_resnet50_googlenet": 1}


@functools.lru_cache(maxsize=None)
def paper_model(name: str):
    """One shared instance per name at the paper's defaults (only counted, never mutated)."""
    torch.manual_seed(0)
    return models.create(name)


def test_every_named_model_is_registered():
    assert set(NAMED) == {n for n, info in models.MODEL_INFO.items() if info["paper"] == "se-r"}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_counts(name):
    params, macs, published_m, published_g = PUBLISHED[name]
    model = paper_model(name)
    assert count_params(model) == params
    assert count_macs(model, INPUT, PROFILE) == macs
    assert round(params / 1e6, 3) == published_m
    assert round(macs / 1e9, 3) == published_g


@pytest.mark.parametrize("name", list(UNPUBLISHED))
def test_unpublished_counts(name):
    params, macs = UNPUBLISHED[name]
    model = paper_model(name)
    assert (count_params(model), count_macs(model, INPUT, PROFILE)) == (params, macs)


def test_backbone_by_name_matches_named_model():
    model = models.create("resnet_cifar100", attention="se", attention_kwargs={"reduction": 8}, depth=50)
    assert count_params(model) == PUBLISHED["se_resnet50"][0]


def test_backbone_pins_reference_layout():
    model = paper_model("se_resnet50")
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1) and model.conv1.bias is not None
    block = model.stages[1][0]
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)  # stride on the 3x3
    assert block.conv1.bias is not None and block.downsample[0].bias is not None
    assert isinstance(block.residual_act, torch.nn.ReLU)
    assert block.attn.fc1.out_features == 512 // 8 and block.attn.fc1.bias is not None


def _loss(out):
    logits, aux = out if isinstance(out, tuple) else (out, [])
    return logits.square().mean() + sum(a.square().mean() for a in aux)


@pytest.mark.parametrize("name", NAMED)
def test_train_forward_backward_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = models.create(name, num_classes=10).train()
    out = model(torch.randn(2, 3, 32, 32))
    _loss(out).backward()
    logits, aux = out if isinstance(out, tuple) else (out, [])
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    assert all(a.shape == (2, 10) and torch.isfinite(a).all() for a in aux)
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


@pytest.mark.parametrize("name", ["se_resnet34", "se_a_resnet34", "se_r_resnet34", "se_r_resnet50_googlenet"])
def test_output_contract(name):
    model = models.create(name, num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    out = model.train()(x)
    if name in WITH_AUX:
        logits, aux = out
        assert isinstance(logits, torch.Tensor) and isinstance(aux, list) and len(aux) == WITH_AUX[name]
    else:
        assert isinstance(out, torch.Tensor)
    with torch.no_grad():
        assert isinstance(model.eval()(x), torch.Tensor)


def test_aux_logits_come_in_position_order():
    model = models.create("se_r_resnet34", num_classes=10, aux_positions=(3, 1)).train()
    seen = []
    for hook in model.stage_hooks:
        if isinstance(hook, AuxClassifier):
            hook.fc2.register_forward_hook(lambda m, args, out: seen.append(out))
    _, aux = model(torch.randn(2, 3, 32, 32))
    assert len(aux) == 2 and aux[0] is seen[0] and aux[1] is seen[1]
    assert [i for i, h in enumerate(model.stage_hooks, 1) if isinstance(h, AuxClassifier)] == [1, 3]


def _se_inputs(model):
    """fc1 in_features of the first SE block of each stage."""
    return [stage[0].attn.fc1.in_features for stage in model.stages]


@pytest.mark.parametrize("name, positions, expected", [
    ("se_r_resnet50", (2, 3), [256, 512, 1024 + 100, 2048 + 100]),
    ("se_r_resnet50", (2,), [256, 512, 1024 + 100, 2048 + 100]),
    ("se_r_resnet50", (1,), [256, 512 + 100, 1024 + 100, 2048 + 100]),
    ("se_r_resnet34", (3,), [64, 128, 256, 512 + 100]),
    ("se_a_resnet50", (2, 3), [256, 512, 1024, 2048]),
])
def test_feeding_widens_se_of_later_stages(name, positions, expected):
    model = models.create(name, aux_positions=positions)
    assert _se_inputs(model) == expected
    assert all(block.attn.fc1.in_features == width for stage, width in zip(model.stages, expected)
               for block in stage)


def test_googlenet_feeds_every_stage():
    model = models.create("se_r_resnet50_googlenet")
    assert _se_inputs(model.backbone) == [256 + 100, 512 + 100, 1024 + 100, 2048 + 100]


def _contexts_by_stage(model):
    """Record the context each stage's attention blocks receive during the next forward."""
    contexts = {i: [] for i in range(len(model.stages))}
    for i, stage in enumerate(model.stages):
        for block in stage:
            block.attn.register_forward_pre_hook(
                lambda m, args, kwargs, i=i: contexts[i].append(kwargs.get("context")), with_kwargs=True)
    return contexts


def test_each_stage_receives_the_most_recent_aux_prediction():
    model = models.create("se_r_resnet50", num_classes=10).train()
    contexts = _contexts_by_stage(model)
    _, (aux1, aux2) = model(torch.randn(2, 3, 32, 32))
    assert all(c is None for c in contexts[0] + contexts[1])
    assert len(contexts[2]) == 6 and all(c is aux1 for c in contexts[2])
    assert len(contexts[3]) == 3 and all(c is aux2 for c in contexts[3])


def _attn_outputs_with_shifted_aux1(name, shift):
    """Stage-2 and stage-3 first-block attention outputs (eval) when aux1's logits are shifted."""
    torch.manual_seed(0)
    model = models.create(name, num_classes=10).eval()
    outputs = {}
    model.stage_hooks[1].fc2.register_forward_hook(lambda m, args, out: out + shift)
    model.stages[1][0].attn.register_forward_hook(lambda m, args, out: outputs.__setitem__(2, out))
    model.stages[2][0].attn.register_forward_hook(lambda m, args, out: outputs.__setitem__(3, out))
    torch.manual_seed(1)
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 32, 32))
    return outputs, logits


def test_aux1_logits_change_stage3_attention_in_se_r():
    base, base_logits = _attn_outputs_with_shifted_aux1("se_r_resnet50", 0.0)
    shifted, shifted_logits = _attn_outputs_with_shifted_aux1("se_r_resnet50", 5.0)
    assert torch.equal(base[2], shifted[2])
    assert not torch.allclose(base[3], shifted[3])
    assert not torch.allclose(base_logits, shifted_logits)


def test_aux1_logits_do_not_reach_attention_in_se_a():
    base, base_logits = _attn_outputs_with_shifted_aux1("se_a_resnet50", 0.0)
    shifted, shifted_logits = _attn_outputs_with_shifted_aux1("se_a_resnet50", 5.0)
    assert torch.equal(base[3], shifted[3]) and torch.equal(base_logits, shifted_logits)


def test_googlenet_logits_change_stage1_attention():
    torch.manual_seed(0)
    model = models.create("se_r_resnet50_googlenet", num_classes=10).eval()
    outputs = []
    model.backbone.stages[0][0].attn.register_forward_hook(lambda m, args, out: outputs.append(out))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        model(x)
        model.aux_model.fc.register_forward_hook(lambda m, args, out: out + 5.0)
        model(x)
    assert not torch.allclose(outputs[0], outputs[1])


@pytest.mark.parametrize("positions", [(), (4,), (0,), (2, 2), (1, 2, 3, 4)])
def test_unsupported_aux_positions_raise(positions):
    with pytest.raises(ValueError):
        models.create("se_r_resnet34", aux_positions=positions)


def test_backbone_defaults_to_plain_depth_50_and_accepts_layers():
    assert count_params(models.create("resnet_cifar100")) == 23_731_812  # no attention, biased convs
    model = models.create("resnet_cifar100", layers=[3, 4, 6, 3], block="bottleneck", attention="se",
                          attention_kwargs={"reduction": 8})
    assert count_params(model) == PUBLISHED["se_resnet50"][0]


@pytest.mark.parametrize("kwargs", [{"depth": 42}, {"depth": 50, "layers": [3, 4, 6, 3]}, {"layers": [3, 4, 6, 3]},
                                    {"layers": [3, 4, 6, 3], "block": "wide"},
                                    {"layers": [3, 4, 6], "block": "basic"}])
def test_backbone_rejects_bad_depths(kwargs):
    with pytest.raises(ValueError):
        models.create("resnet_cifar100", **kwargs)


def test_aux_dropout_is_configurable_and_validated():
    model = models.create("se_r_resnet34", aux_dropout=0.3)
    assert {h.dropout.p for h in model.stage_hooks if isinstance(h, AuxClassifier)} == {0.3}
    with pytest.raises(ValueError):
        models.create("se_r_resnet34", aux_dropout=1.0)
