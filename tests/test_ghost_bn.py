"""Ghost BatchNorm (``repro_models.ghost_bn``) against the multi-device run it stands for.

The reference for a ghost step on a batch of k*g images is k independent ``nn.BatchNorm`` copies
("devices") with the same weights, each given its own consecutive group of g images; the ghost
module's running statistics must equal the average of the copies' (Gluon's ``Parameter._reduce``).

Tolerances (fp32): the ghost module runs the same ``F.batch_norm`` on the same slices as the copies,
so module-level outputs and statistics are compared with torch's fp32 defaults (rtol 1.3e-6,
atol 1e-5); gradients summed in another order get rtol 1e-4, atol 1e-5. Whole models are compared in
float64 (rtol 1e-7, atol 1e-9): their convolutions see a batch of 2g instead of g (other kernel
blocking), and a BatchNorm over few values amplifies that fp32 rounding. The cases that must be
exactly ``nn.BatchNorm2d`` (group_size >= batch, eval mode) are compared bit for bit.
"""
from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.testing import assert_close

import repro_models as models
from repro.counting import PROFILES, count_macs, count_params
from repro_models.ghost_bn import GhostBatchNorm1d, GhostBatchNorm2d, apply_bn_batch

torch.set_num_threads(1)

FP32 = {"rtol": 1.3e-6, "atol": 1e-5}
SUMMED = {"rtol": 1e-4, "atol": 1e-5}
FP64 = {"rtol": 1e-7, "atol": 1e-9}


def trained_bn(cls=nn.BatchNorm2d, channels: int = 3, **kwargs) -> nn.Module:
    """A BatchNorm whose weights and running statistics are not the initial ones (a test that
    starts from mean 0 / var 1 / gamma 1 cannot tell them apart from defaults)."""
    gen = torch.Generator().manual_seed(1)
    bn = cls(channels, **kwargs)
    with torch.no_grad():
        if bn.affine:
            bn.weight.copy_(torch.rand(channels, generator=gen) + 0.5)
            bn.bias.copy_(torch.randn(channels, generator=gen))
        bn.running_mean.copy_(torch.randn(channels, generator=gen))
        bn.running_var.copy_(torch.rand(channels, generator=gen) + 0.5)
    return bn


def ghost_of(bn: nn.Module, group_size: int) -> nn.Module:
    return apply_bn_batch(copy.deepcopy(bn), group_size)


def devices(bn: nn.Module, x: torch.Tensor, group_size: int):
    """One BatchNorm copy per group of ``x``: (copies, their outputs)."""
    copies = [copy.deepcopy(bn) for _ in x.split(group_size)]
    return copies, [c(part) for c, part in zip(copies, x.split(group_size))]


def mean_of(copies, name: str) -> torch.Tensor:
    return torch.stack([getattr(c, name) for c in copies]).mean(0)


@pytest.mark.parametrize("cls, shape", [(nn.BatchNorm2d, (8, 3, 5, 5)), (nn.BatchNorm1d, (8, 3)),
                                        (nn.BatchNorm1d, (8, 3, 7))])
def test_one_step_equals_two_devices(cls, shape):
    """Outputs, gradients of a summed loss (weight, bias, input) and running statistics."""
    bn = trained_bn(cls).train()
    ghost = ghost_of(bn, 4)
    assert type(ghost) is {nn.BatchNorm2d: GhostBatchNorm2d, nn.BatchNorm1d: GhostBatchNorm1d}[cls]
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    proj = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    x_ghost, x_devices = x.clone().requires_grad_(), x.clone().requires_grad_()

    out = ghost(x_ghost)
    (out * proj).sum().backward()
    copies, outs = devices(bn, x_devices, 4)
    sum((o * p).sum() for o, p in zip(outs, proj.split(4))).backward()

    assert_close(out, torch.cat(outs), **FP32)
    assert_close(x_ghost.grad, x_devices.grad, **FP32)
    # a loss that sums over images: each device's gradient is its share, the step uses their sum
    assert_close(ghost.weight.grad, copies[0].weight.grad + copies[1].weight.grad, **SUMMED)
    assert_close(ghost.bias.grad, copies[0].bias.grad + copies[1].bias.grad, **SUMMED)
    # running statistics: the average of the devices' copies, as Gluon saves them
    assert_close(ghost.running_mean, mean_of(copies, "running_mean"), **FP32)
    assert_close(ghost.running_var, mean_of(copies, "running_var"), **FP32)
    assert not torch.allclose(ghost.running_var, trained_bn(cls).running_var)  # it did move
    assert ghost.num_batches_tracked.item() == copies[0].num_batches_tracked.item() == 1


def tiny_net() -> nn.Module:
    torch.manual_seed(4)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), trained_bn(channels=6), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5)).train()


def test_mean_loss_gradient_equals_two_device_average():
    """The whole-batch mean loss through the ghost net has the gradient of a 2-device run that
    averages the devices' mean-loss gradients (DDP's all-reduce). It is also Gluon's: each device
    backpropagates the sum of its per-image losses, the kvstore sums, Trainer.step(64) divides by 64."""
    gen = torch.Generator().manual_seed(5)
    x, y = torch.randn(8, 3, 6, 6, generator=gen), torch.randint(0, 5, (8,), generator=gen)
    net = tiny_net()
    ghost = ghost_of(net, 4)
    F.cross_entropy(ghost(x), y).backward()

    copies = [copy.deepcopy(net) for _ in range(2)]
    for c, xs, ys in zip(copies, x.split(4), y.split(4)):
        F.cross_entropy(c(xs), ys).backward()
    gluon = [copy.deepcopy(net) for _ in range(2)]
    for c, xs, ys in zip(gluon, x.split(4), y.split(4)):
        (F.cross_entropy(c(xs), ys, reduction="sum") / len(x)).backward()

    for (name, p), *device_params in zip(ghost.named_parameters(), *(c.parameters() for c in copies)):
        average = (device_params[0].grad + device_params[1].grad) / 2
        assert_close(p.grad, average, **SUMMED, msg=name)
    for p, g0, g1 in zip(ghost.parameters(), *(c.parameters() for c in gluon)):
        assert_close(p.grad, g0.grad + g1.grad, **SUMMED)
    whole_batch = copy.deepcopy(net)  # plain BatchNorm over all 8 images: a different gradient
    F.cross_entropy(whole_batch(x), y).backward()
    assert not torch.allclose(ghost[0].weight.grad, whole_batch[0].weight.grad, **SUMMED)


def test_running_statistics_follow_the_device_average_over_steps():
    bn = trained_bn()
    ghost = ghost_of(bn, 4)
    copies = [copy.deepcopy(bn) for _ in range(2)]
    gen = torch.Generator().manual_seed(6)
    for _ in range(3):
        x = torch.randn(8, 3, 4, 4, generator=gen) * 2 + 1
        ghost(x)
        for c, part in zip(copies, x.split(4)):
            c(part)
    assert_close(ghost.running_mean, mean_of(copies, "running_mean"), **FP32)
    assert_close(ghost.running_var, mean_of(copies, "running_var"), **FP32)
    assert ghost.num_batches_tracked.item() == 3


def test_uneven_batch_last_group_is_the_remainder_weighted_as_one_device():
    bn = trained_bn()
    ghost = ghost_of(bn, 4)
    x = torch.randn(11, 3, 4, 4, generator=torch.Generator().manual_seed(7))
    out = ghost(x)
    copies, outs = devices(bn, x, 4)
    assert [len(o) for o in outs] == [4, 4, 3]
    assert_close(out, torch.cat(outs), **FP32)
    # the rule as written in the module docstring: equal weight per group, unbiased group variance
    groups = [part.transpose(0, 1).flatten(1) for part in x.split(4)]
    means = torch.stack([g.mean(1) for g in groups]).mean(0)
    variances = torch.stack([g.var(1, correction=1) for g in groups]).mean(0)
    m = bn.momentum
    assert_close(ghost.running_mean, (1 - m) * bn.running_mean + m * means, **FP32)
    assert_close(ghost.running_var, (1 - m) * bn.running_var + m * variances, **FP32)
    assert_close(ghost.running_var, mean_of(copies, "running_var"), **FP32)


def test_a_group_with_one_value_per_channel_raises():
    ghost = GhostBatchNorm2d(3, group_size=2).train()
    with pytest.raises(ValueError, match="one value per channel"):
        ghost(torch.randn(5, 3, 1, 1))
    with pytest.raises(ValueError, match="one value per channel"):
        GhostBatchNorm1d(3, group_size=2).train()(torch.randn(5, 3))
    # one image with 4x4 positions is a defined BatchNorm (torch's behaviour): normalised over them
    bn = trained_bn()
    x = torch.randn(5, 3, 4, 4, generator=torch.Generator().manual_seed(8))
    assert_close(ghost_of(bn, 2)(x)[4:], copy.deepcopy(bn)(x[4:]), **FP32)


@pytest.mark.parametrize("group_size", [8, 13])
def test_group_size_at_least_the_batch_is_batchnorm(group_size):
    bn = trained_bn()
    ghost = ghost_of(bn, group_size)
    x = torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(9), requires_grad=True)
    ghost(x).pow(2).sum().backward()
    ghost_x_grad, x.grad = x.grad, None
    bn(x).pow(2).sum().backward()
    assert torch.equal(ghost_x_grad, x.grad)
    assert torch.equal(ghost.weight.grad, bn.weight.grad) and torch.equal(ghost.bias.grad, bn.bias.grad)
    for name, buffer in bn.named_buffers():
        assert torch.equal(getattr(ghost, name), buffer), name


def test_eval_mode_is_batchnorm_eval():
    bn = trained_bn()
    ghost = ghost_of(bn, 2)
    ghost(torch.randn(8, 3, 4, 4))  # moves the running statistics
    plain = nn.BatchNorm2d(3)
    plain.load_state_dict(ghost.state_dict())
    x = torch.randn(8, 3, 4, 4)
    assert torch.equal(ghost.eval()(x), plain.eval()(x))


def test_bad_options_raise():
    with pytest.raises(ValueError, match="momentum=None"):
        GhostBatchNorm2d(3, momentum=None, group_size=2)
    for bad in (0, -1, 2.5, True, "32"):
        with pytest.raises(ValueError, match="group_size"):
            GhostBatchNorm2d(3, group_size=bad)
        with pytest.raises(ValueError, match="group_size"):
            apply_bn_batch(nn.Sequential(nn.BatchNorm2d(3)), bad)
    with pytest.raises(ValueError, match=r"1: SyncBatchNorm has no ghost form \(it normalises over every device's "
                       r"batch together by design"):
        apply_bn_batch(nn.Sequential(nn.Conv2d(3, 3, 1), nn.SyncBatchNorm(3)), 2)
    with pytest.raises(ValueError, match="0: LazyBatchNorm2d has no ghost form"):
        apply_bn_batch(nn.Sequential(nn.LazyBatchNorm2d()), 2)
    with pytest.raises(ValueError, match="0: BatchNorm2d has no ghost form \\(momentum=None"):
        apply_bn_batch(nn.Sequential(nn.BatchNorm2d(3, momentum=None)), 2)
    ghosted = apply_bn_batch(nn.Sequential(nn.BatchNorm2d(3)), 2)
    assert apply_bn_batch(ghosted, 2) is ghosted
    with pytest.raises(ValueError, match="already a ghost"):
        apply_bn_batch(ghosted, 4)


def test_apply_none_is_a_no_op_and_conversion_is_in_place():
    net = tiny_net()
    assert apply_bn_batch(net, None) is net and type(net[1]) is nn.BatchNorm2d
    params = list(net.parameters())
    running_mean = net[1].running_mean
    shared = nn.Sequential(net, net[1])  # one BatchNorm reached from two parents stays one module
    assert apply_bn_batch(shared, 4) is shared
    assert type(net[1]) is GhostBatchNorm2d and shared[1] is net[1]
    assert all(a is b for a, b in zip(params, net.parameters()))  # an optimizer built before still steps them
    assert net[1].running_mean is running_mean
    assert isinstance(apply_bn_batch(nn.BatchNorm2d(3), 4), GhostBatchNorm2d)  # a bare BatchNorm comes back converted


# (name, kwargs, input): a CIFAR ResNet, the cmpe-se ImageNet model (3x3 folded mode: BatchNorm inside
# the attention too) and BAM-ResNet-50 (BatchNorm1d in its channel gate), ImageNet models at 64 px
REGISTRY = [("resnet_cifar", {"num_classes": 10, "depth": 8}, (4, 3, 32, 32)),
            ("cmpe_se_preact_resnet50", {"mode": "fold_3x3"}, (4, 3, 64, 64)),
            ("bam_resnet50", {}, (4, 3, 64, 64))]


@pytest.mark.parametrize("name, kwargs, size", REGISTRY, ids=[r[0] for r in REGISTRY])
def test_registry_model_converts_counts_the_same_and_trains(name, kwargs, size):
    torch.manual_seed(10)
    model = models.create(name, **kwargs)
    batchnorms = sum(type(m) in (nn.BatchNorm1d, nn.BatchNorm2d) for m in model.modules())
    keys, params = list(model.state_dict()), {c: count_params(model, c) for c in ("torch", "mxnet")}
    macs = {p: count_macs(model, size, p) for p in PROFILES}
    reference = copy.deepcopy(model).train()

    assert apply_bn_batch(model, size[0] // 2) is model
    assert sum(isinstance(m, (GhostBatchNorm1d, GhostBatchNorm2d)) for m in model.modules()) == batchnorms > 0
    assert not any(type(m) in (nn.BatchNorm1d, nn.BatchNorm2d) for m in model.modules())
    assert list(model.state_dict()) == keys
    assert {c: count_params(model, c) for c in ("torch", "mxnet")} == params
    assert {p: count_macs(model, size, p) for p in PROFILES} == macs

    # the converted model on 2g images is the unconverted one on two devices of g (in float64: BAM's
    # BatchNorm1d over 2 pooled values per channel amplifies fp32 rounding to 4e-4 in the logits)
    gen = torch.Generator().manual_seed(11)
    x, y = torch.randn(size, generator=gen), torch.randint(0, 10, (size[0],), generator=gen)
    ghost64 = copy.deepcopy(model).double().train()
    out64 = ghost64(x.double())
    copies = [copy.deepcopy(reference).double() for _ in range(2)]
    assert_close(out64, torch.cat([c(part) for c, part in zip(copies, x.double().split(size[0] // 2))]), **FP64)
    for ghost_buffer, *device_buffers in zip(ghost64.buffers(), *(c.buffers() for c in copies)):
        if ghost_buffer.is_floating_point():
            assert_close(ghost_buffer, torch.stack(device_buffers).mean(0), **FP64)

    # one SGD step in fp32: finite loss, every parameter gets a gradient and moves
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    loss = F.cross_entropy(model.train()(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_state_dict_round_trips_and_loads_into_plain_models():
    model = apply_bn_batch(models.create("resnet_cifar", num_classes=10, depth=8), 2)
    model.train()(torch.randn(4, 3, 32, 32))  # running statistics that are not the initial ones
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    plain = models.create("resnet_cifar", num_classes=10, depth=8)
    plain.load_state_dict(state)  # strict: a checkpoint of the converted model is a checkpoint of the model
    fresh = apply_bn_batch(models.create("resnet_cifar", num_classes=10, depth=8), 2)
    fresh.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(fresh.eval()(x), plain.eval()(x))


# --- every other BatchNorm: subclasses (timm's BatchNormAct2d), BatchNorm3d -------------------------

class ScaledBN(nn.BatchNorm2d):
    """A plugin's BatchNorm subclass with a forward of its own: normalise, then x2 and a ReLU."""

    def forward(self, x):
        return torch.relu(2 * super().forward(x))


@pytest.mark.parametrize("cls, shape", [(ScaledBN, (8, 3, 4, 4)), (nn.BatchNorm3d, (8, 3, 2, 3, 3))])
def test_a_subclass_keeps_its_forward_and_matches_the_devices(cls, shape):
    bn = trained_bn(cls)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(3), requires_grad=True)
    copies, outs = devices(bn, x, 4)
    ghost = ghost_of(bn, 4)
    assert isinstance(ghost, cls) and type(ghost).__name__ == f"Ghost{cls.__name__}"
    assert_close(ghost(x), torch.cat(outs), **FP32)
    assert_close(ghost.running_mean, mean_of(copies, "running_mean"), **FP32)
    assert_close(ghost.running_var, mean_of(copies, "running_var"), **FP32)
    assert int(ghost.num_batches_tracked) == 1
    if cls is ScaledBN:  # the subclass's own forward ran: nothing negative after its ReLU
        assert (ghost(x) >= 0).all() and (ghost(x) > 0).any()
    plain = copy.deepcopy(bn)
    plain.load_state_dict(ghost.state_dict())  # same keys: a checkpoint loads either way
    assert torch.equal(ghost.eval()(x), plain.eval()(x))  # eval: the subclass as it was


def test_timm_batchnormact_keeps_its_activation_and_parameters():
    from timm.layers import BatchNormAct2d

    bn = BatchNormAct2d(3, act_layer=nn.ReLU)
    with torch.no_grad():
        bn.bias.fill_(-0.3)
    params = [p for p in bn.parameters()]
    x = torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(5))
    copies, outs = devices(bn, x, 4)
    ghost = apply_bn_batch(bn, 4)
    assert ghost is bn and list(ghost.parameters()) == params and isinstance(ghost.act, nn.ReLU)
    y = ghost(x)
    assert_close(y, torch.cat(outs), **FP32)
    assert (y == 0).any()  # the ReLU after the normalisation is still there
    assert_close(ghost.running_mean, mean_of(copies, "running_mean"), **FP32)


def test_no_ghost_form_names_the_layer_and_type():
    from repro_models.ghost_bn import no_ghost_form

    assert no_ghost_form(tiny_net()) is None
    name, kind, why = no_ghost_form(nn.Sequential(nn.Conv2d(3, 3, 1), nn.Sequential(nn.SyncBatchNorm(3))))
    assert (name, kind) == ("1.0", "SyncBatchNorm") and "synchronised" in why


def test_bn_batch_trains_timm_skresnet18_at_smoke_size():
    """The SKNet trial's crash: every BatchNorm of timm's SK models is a BatchNormAct2d."""
    from timm.layers import BatchNormAct2d

    from repro_models.ghost_bn import _GhostSubclass

    torch.manual_seed(0)
    net = models.create("timm/skresnet18", num_classes=10)
    n_act = sum(isinstance(m, BatchNormAct2d) for m in net.modules())
    apply_bn_batch(net, 4)
    assert n_act > 0 and sum(isinstance(m, _GhostSubclass) for m in net.modules()) == n_act
    bn = next(m for m in net.modules() if isinstance(m, _GhostSubclass))
    before = bn.running_mean.clone()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, 32, 32, generator=gen), torch.randint(0, 10, (8,), generator=gen)
    losses = []
    for _ in range(4):  # a smoke-sized fit of one batch: two ghost groups of 4
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    assert not torch.equal(bn.running_mean, before) and int(bn.num_batches_tracked) == 4
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
