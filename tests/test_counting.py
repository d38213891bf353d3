"""Counter profiles reproduce the rules of the thop builds the papers used."""
from __future__ import annotations

import pytest
import torchvision
from torch import nn

from repro.counting import PROFILES, count_macs, count_params


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
