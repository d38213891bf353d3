"""Counter profiles reproduce the rules of the thop builds the papers used."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from repro.counting import PARAM_CONVENTIONS, PROFILES, count_macs, count_params, skip_init


@pytest.mark.parametrize("profile, expected", [
    # Conv 3->8 k3 with bias on 4x4 output: 8*16*(27+1)
    ("thop-2001", 8 * 16 * 28), ("thop-2004", 8 * 16 * 28), ("thop-0.1", 8 * 16 * 27)])
def test_conv_bias_rule(profile, expected):
    assert count_macs(nn.Conv2d(3, 8, 3, padding=1), (1, 3, 4, 4), profile) == expected


def test_linear_and_bn_rules_differ_by_build():
    lin = nn.Linear(10, 4)
    assert count_macs(lin, (2, 10), "thop-2001") == 2 * 4 * (10 + 9 + 1)
    assert count_macs(lin, (2, 10), "thop-2004") == 2 * 4 * 10
    bn = nn.BatchNorm2d(3)
    assert count_macs(bn, (1, 3, 4, 4), "thop-2004") == 2 * 48
    assert count_macs(bn, (1, 3, 4, 4), "thop-0.1") == 4 * 48


@pytest.mark.parametrize("profile, expected", [("thop-2001", 2 * 48), ("thop-2004", 2 * 48), ("thop-0.1", 4 * 48)])
def test_a_batchnorm_subclass_counts_as_its_batchnorm(profile, expected):
    class GhostLike(nn.BatchNorm2d):  # thop's rules are keyed by exact type: without the fallback, 0
        pass

    assert count_macs(GhostLike(3), (1, 3, 4, 4), profile) == expected
    assert count_macs(nn.Sequential(nn.BatchNorm2d(3), GhostLike(3)), (1, 3, 4, 4), profile) == 2 * expected


def test_adaptive_pool_is_counted_functional_is_not():
    pool = nn.AdaptiveAvgPool2d(1)
    assert count_macs(pool, (1, 8, 4, 4), "thop-2004") == 8 * (16 + 1)
    assert count_macs(nn.Sigmoid(), (1, 8, 4, 4), "thop-2001") == 0


def test_resnet50_is_4_11g_with_2020_rules_and_4_13g_today():
    m = torchvision.models.resnet50()
    assert round(count_macs(m, (1, 3, 224, 224), "thop-2001") / 1e9, 2) == 4.11
    assert round(count_macs(m, (1, 3, 224, 224), "thop-2004") / 1e9, 2) == 4.11
    assert round(count_macs(m, (1, 3, 224, 224), "thop-0.1") / 1e9, 2) == 4.13
    assert not any("total_ops" in k for k in m.state_dict()), "counting must not leave thop buffers"


def test_param_conventions():
    m = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4))
    assert count_params(m, "torch") == 12 + 8
    assert count_params(m, "mxnet") == 12 + 8 + 8
    with pytest.raises(ValueError):
        count_params(m, "keras")
    with pytest.raises(ValueError):
        count_macs(m, (1, 3, 2, 2), "thop-1999")
    assert PROFILES == ("thop-2001", "thop-2004", "thop-0.1")


def test_thop_2001_sums_in_float32_as_the_real_build():
    # Jan-2020 Linear rule: (2048 + 2047 + 1 bias) x 4097 outputs = 16,781,312, plus the conv's 4097:
    # 16,785,409, which float32 cannot hold (above 2^24 its spacing is 2): the build's float32 buffers
    # round the sum to the even neighbour, which is what it printed.
    with skip_init():
        m = nn.Sequential(nn.Linear(2048, 4097), nn.Unflatten(1, (4097, 1, 1)),
                          nn.Conv2d(4097, 1, 1, bias=False))
    assert count_macs(m, (1, 2048), "thop-2001") == 16_785_408
    assert count_macs(m, (1, 2048), "thop-2004") == 2048 * 4097 + 4097  # float64 builds: exact


def test_counting_leaves_the_model_as_it_was():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
    keys = list(m.state_dict())
    for profile in PROFILES:
        count_macs(m, (1, 3, 8, 8), profile)
        assert m.training and list(m.state_dict()) == keys
        assert not any(hasattr(x, "total_ops") for x in m.modules())


@pytest.mark.parametrize("name, kwargs, size, profile", [
    ("se_resnet56_cifar", {"num_classes": 10}, 32, "thop-2001"),
    ("cmpe_se_wrn16_8", {"num_classes": 10, "mode": "fold_3x3"}, 32, "thop-2004"),
    ("cra_resnet56_cifar", {"num_classes": 100}, 32, "thop-0.1"),
])
def test_skip_init_draws_nothing_and_counts_the_same(name, kwargs, size, profile):
    import repro_models as models

    torch.manual_seed(0)
    state = torch.get_rng_state()
    with skip_init():
        fast = models.create(name, **kwargs)
    assert torch.equal(torch.get_rng_state(), state), "a weight was drawn inside skip_init"
    slow = models.create(name, **kwargs)
    shape = (1, 3, size, size)
    assert [count_params(fast, c) for c in PARAM_CONVENTIONS] == [count_params(slow, c) for c in PARAM_CONVENTIONS]
    assert count_macs(fast, shape, profile) == count_macs(slow, shape, profile)


def test_mxnet_counts_gamma_beta_of_a_non_affine_batchnorm():
    bn = nn.BatchNorm2d(3, affine=False)  # Gluon's BatchNorm(scale=False, center=False) still lists gamma, beta
    assert count_params(bn, "torch") == 0
    assert count_params(bn, "mxnet") == 4 * 3
