"""Parameter and MAC counting under named counter profiles.

The papers counted MACs with 2020-era thop builds whose rules differ from today's thop 0.1.x,
so the thop version is part of a published figure. A *counter profile* is a named rule set
expressed as thop ``custom_ops``; thop itself does the traversal. Stored figures carry the
profile name.

| profile       | thop build it reproduces           | Conv                  | BN (eval) | Linear     |
|---------------|------------------------------------|-----------------------|-----------|------------|
| thop-2001     | 0.0.31.post2001170342 (Jan 2020)   | out*(Cin/g*k^2+bias)  | 2*numel   | 2*in*out   |
| thop-2004     | 0.0.31.post2004101309 .. 0.0.5     | out*(Cin/g*k^2+bias)  | 2*numel   | in*out     |
| thop-0.1      | 0.1.x (today; thop's own rules)    | out*Cin/g*k^2         | 4*numel   | in*out     |

In the 2020 builds, ReLU/MaxPool/Dropout/ZeroPad count 0; AvgPool counts 1 per output
element; AdaptiveAvgPool counts (prod(in/out)+1) per output element; modules without a rule
(Sigmoid, Softmax, functional calls) count 0.

Summation is part of a build too (read from the wheels' source). 0.0.31.post2001170342 hooks
leaf modules only, keeps each module's count in a float32 ``torch.zeros(1)`` buffer, adds every
call's count as ``torch.Tensor([int(ops)])`` (float32) and sums the leaves in float32 in
``model.modules()`` order, so its printed integer is a float32 sum: ``thop-2001`` runs that
traversal (``_profile_2001``), and its exact counts equal the real build's output, not the exact
integer sum. From 0.0.31.post2004101309 on (through 0.0.5 and today's 0.1.x) buffers are float64
and the tree is summed in Python floats, exact for any realistic count: ``thop-2004`` and
``thop-0.1`` use today's thop traversal, which sums the same way.

Parameter conventions: ``torch`` counts ``model.parameters()``; ``mxnet`` adds BatchNorm
running mean/var, which MXNet Gluon lists among a block's parameters (CMPE-SE's counts).
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

PROFILES = ("thop-2001", "thop-2004", "thop-0.1")
PARAM_CONVENTIONS = ("torch", "mxnet")


def _add(m: nn.Module, ops: float) -> None:
    # in the buffer's dtype, as the builds did: float32 under thop-2001, float64 otherwise
    m.total_ops += torch.tensor([int(ops)], dtype=m.total_ops.dtype)


def _zero(m, x, y):
    _add(m, 0)


def _conv(m, x, y):
    kernel = m.weight.shape[2:].numel()
    bias = 1 if m.bias is not None else 0
    _add(m, y.numel() * (m.in_channels // m.groups * kernel + bias))


def _bn_2x(m, x, y):
    _add(m, 2 * x[0].numel())


def _avgpool(m, x, y):
    _add(m, y.numel())


def _adaptive_avgpool(m, x, y):
    in_size = torch.tensor(x[0].shape[2:], dtype=torch.float64)
    out_size = torch.tensor(y.shape[2:], dtype=torch.float64)
    kernel = torch.div(in_size, out_size, rounding_mode="floor").prod().item()
    _add(m, (kernel + 1) * y.numel())


def _linear_2001(m, x, y):
    # (in muls + (in-1) adds + bias add) per output element
    per_out = m.in_features + (m.in_features - 1) + (1 if m.bias is not None else 0)
    _add(m, per_out * y.numel())


def _linear_2004(m, x, y):
    _add(m, m.in_features * y.numel())


def _leaky_relu(m, x, y):
    _add(m, x[0].numel())


def _rules_2020(linear: Callable) -> dict[type, Callable]:
    from thop.profile import register_hooks as thop_current

    rules: dict[type, Callable] = {t: _zero for t in thop_current}  # neutralise today's rules
    conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    rules.update({t: _conv for t in conv})
    rules.update({t: _bn_2x for t in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)})
    rules.update({t: _avgpool for t in (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)})
    rules.update({t: _adaptive_avgpool for t in (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)})
    rules[nn.LeakyReLU] = _leaky_relu
    rules[nn.Linear] = linear
    return rules


def custom_ops(profile: str) -> dict[type, Callable]:
    if profile == "thop-2001":
        return _rules_2020(_linear_2001)
    if profile == "thop-2004":
        return _rules_2020(_linear_2004)
    if profile == "thop-0.1":
        return {}
    raise ValueError(f"unknown counter profile {profile!r}; known: {', '.join(PROFILES)}")


def count_params(model: nn.Module, convention: str = "torch") -> int:
    """Exact parameter count; shared parameters count once.

    ``mxnet``: Gluon's ``collect_params`` lists every BatchNorm's running mean and variance, and
    its gamma and beta even when built with ``scale=False, center=False`` (they exist with
    ``grad_req='null'``): a torch ``affine=False`` BatchNorm has no weight or bias to count, so
    they are added here (CMPE-SE's input BatchNorm: 2 x 3).
    """
    n = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    if convention == "torch":
        return n
    if convention == "mxnet":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                if m.track_running_stats:
                    n += m.running_mean.numel() + m.running_var.numel()
                if not m.affine:
                    n += 2 * m.num_features  # gamma, beta
        return n
    raise ValueError(f"unknown parameter convention {convention!r}; known: {', '.join(PARAM_CONVENTIONS)}")


def _with_batchnorm_subclasses(ops: dict[type, Callable], model: nn.Module) -> dict[type, Callable]:
    """``ops`` plus a rule for every BatchNorm subclass in ``model``: the rule of the BatchNorm it extends.

    thop looks rules up by exact type, so a subclass (``repro_models.ghost_bn``'s GhostBatchNorm2d, which
    only changes which images training statistics come from) would count 0 instead of as its BatchNorm.
    """
    from thop.profile import register_hooks as thop_current

    known = {**thop_current, **ops}
    extra = {}
    for m in model.modules():
        kind = type(m)
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and kind not in known:
            base = next((base for base in kind.__mro__ if base in known), None)
            if base is not None:
                extra[kind] = known[base]
    return {**ops, **extra}


def _is_leaf(m: nn.Module) -> bool:
    return next(m.children(), None) is None


def _profile_2001(model: nn.Module, x: torch.Tensor, ops: dict[type, Callable]) -> float:
    """thop 0.0.31.post2001170342's ``profile``: leaf hooks, float32 buffers, float32 sum."""
    handles = []

    def add_hooks(m: nn.Module) -> None:
        if not _is_leaf(m):
            return
        m.register_buffer("total_ops", torch.zeros(1))  # float32, as the build
        fn = ops.get(type(m))
        if fn is not None:
            handles.append(m.register_forward_hook(fn))

    model.apply(add_hooks)
    try:
        with torch.no_grad():
            model(x)
        total = 0
        for m in model.modules():
            if _is_leaf(m):
                total += m.total_ops  # 0 + float32 tensor, then float32 in-place adds
    finally:
        for h in handles:
            h.remove()
    return total.item()


def _strip_buffers(model: nn.Module) -> None:
    # thop removes its buffers only from hooked modules; the model must come back as it went in
    for m in model.modules():
        for name in ("total_ops", "total_params"):
            m._buffers.pop(name, None)


def count_macs(model: nn.Module, input_size: tuple[int, ...], profile: str) -> int:
    """MACs of one forward pass on ``torch.zeros(input_size)`` under a counter profile.

    Counts in place (no copy): the model is returned in its train/eval mode, without thop's buffers.
    """
    from thop import profile as thop_profile

    ops = _with_batchnorm_subclasses(custom_ops(profile), model)
    first = next(iter(model.parameters()), None)
    x = torch.zeros(*input_size, device=first.device if first is not None else None)  # meta models: meta input
    training = model.training
    model.eval()
    try:
        if profile == "thop-2001":
            macs = _profile_2001(model, x, ops)
        else:
            with contextlib.redirect_stdout(io.StringIO()):  # thop prints one line per rule
                macs, _ = thop_profile(model, inputs=(x,), custom_ops=ops, verbose=False)
    finally:
        _strip_buffers(model)
        model.train(training)
    return int(round(macs))


_INIT_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
                   "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
                   "sparse_")


@contextlib.contextmanager
def skip_init():
    """Build models without drawing their initial weights, where only shapes matter (counting).

    Random init is most of a model's build time and no count depends on a weight's value.
    ``torch.nn.init``'s functions (what module ``reset_parameters`` and the models' own init loops
    call) return their tensor untouched inside the block, so weights hold whatever ``torch.empty``
    gave: never train or compare outputs of a model built here. Counts are unchanged (tested).
    """
    from unittest import mock

    def keep(tensor, *args, **kwargs):
        return tensor

    with contextlib.ExitStack() as stack:
        for name in _INIT_FUNCTIONS:
            if hasattr(nn.init, name):
                stack.enter_context(mock.patch.object(nn.init, name, keep))
        yield


@dataclass(frozen=True)
class Counts:
    params: int
    params_mxnet: int
    macs: int
    profile: str
    input_size: tuple[int, ...]


def measure(model: nn.Module, input_size: tuple[int, ...], profile: str) -> Counts:
    return Counts(params=count_params(model, "torch"), params_mxnet=count_params(model, "mxnet"),
                  macs=count_macs(model, input_size, profile), profile=profile,
                  input_size=tuple(input_size))
