"""Issue 17's recipe vocabulary, each term against the library implementation it mirrors."""
from __future__ import annotations

import pytest
import torch

from repro.specs import JobRecipe, Recipe, recipe_identity
from repro.train import mix
from repro.train.ema import make_ema, update
from repro.train.optimizer import make_optimizer, param_groups
from repro.train.schedule import lr_at


def _recipe(**kw) -> JobRecipe:
    base = {"name": "t", "dataset": "cifar10", "epochs": 10, "batch_size": 8, "lr": 0.1, "weight_decay": 0.05}
    return JobRecipe.model_validate({**base, **kw})


def _walk(recipe, steps, scheduler_per_epoch=None, scheduler_per_update=None, opt=None):
    ours, theirs = [], []
    for epoch in range(recipe.total_epochs):
        for step in range(steps):
            ours.append(lr_at(recipe, epoch * steps + step, steps))
            theirs.append(opt.param_groups[0]["lr"])
            opt.step()
            if scheduler_per_update is not None:
                scheduler_per_update.step()
        if scheduler_per_epoch is not None:
            scheduler_per_epoch.step()
    return ours, theirs


def _opt(lr):
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)


@pytest.mark.parametrize("per", ["epoch", "iteration"])
def test_cosine_equals_cosine_annealing_lr(per):
    r = _recipe(schedule="cosine", min_lr=0.001, lr_step=per)
    steps = 5
    opt = _opt(r.lr)
    total = r.epochs * (steps if per == "iteration" else 1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=0.001)
    ours, theirs = _walk(r, steps, sched if per == "epoch" else None, sched if per == "iteration" else None, opt)
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)


def test_step_before_epoch_is_simams_cosine():
    r = _recipe(schedule="cosine", lr_step="epoch", step_before_epoch=True)
    import math
    assert [lr_at(r, e * 3, 3) for e in range(10)] == pytest.approx(
        [0.1 * (1 + math.cos(math.pi * (e + 1) / 10)) / 2 for e in range(10)])


def test_poly_and_linear_equal_torch():
    steps = 4
    for kind, make in (("poly", lambda o: torch.optim.lr_scheduler.PolynomialLR(o, total_iters=10, power=2.0)),
                       ("linear", lambda o: torch.optim.lr_scheduler.LinearLR(o, 1.0, 0.0, total_iters=10))):
        r = _recipe(schedule=kind, **({"power": 2.0} if kind == "poly" else {}))
        opt = _opt(r.lr)
        ours, theirs = _walk(r, steps, make(opt), None, opt)
        assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12), kind


def test_exponential_and_warmup_cosine_equal_timm():
    from timm.scheduler import CosineLRScheduler, StepLRScheduler

    r = _recipe(epochs=12, schedule="exponential", gamma=0.97, decay_every=2.4)
    opt = _opt(r.lr)
    timm_sched = StepLRScheduler(opt, decay_t=2.4, decay_rate=0.97)
    for e in range(12):
        timm_sched.step(e)
        assert lr_at(r, e * 3 + 1, 3) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12), e
    # DeiT's shape: warm-up per epoch from warmup_lr (timm: the first epoch at warmup_lr), cosine to min_lr,
    # then a cool-down at min_lr
    r = _recipe(epochs=12, schedule="cosine", min_lr=1e-5, warmup_epochs=3, warmup_lr=1e-6, warmup_step="epoch",
                warmup_at="start", cooldown_epochs=2)
    opt = _opt(r.lr)
    timm_sched = CosineLRScheduler(opt, t_initial=12, lr_min=1e-5, warmup_t=3, warmup_lr_init=1e-6)
    for e in range(14):
        timm_sched.step(e)
        want = opt.param_groups[0]["lr"] if e < 12 else 1e-5
        assert lr_at(r, e * 3, 3) == pytest.approx(want, rel=1e-9), e


def test_optimizers_match_torch_and_skip_groups_match_timm():
    import timm.optim

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 6 * 6, 2))
    opt = make_optimizer(net,
                         _recipe(optimizer="adamw", betas=(0.9, 0.95), eps=1e-7, weight_decay_skip=["norm", "bias"]))
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["betas"] == (0.9, 0.95) and opt.defaults["eps"] == 1e-7 and opt.defaults["weight_decay"] == 0.05
    ours = [sorted(id(p) for p in g["params"]) for g in opt.param_groups]
    theirs = timm.optim.param_groups_weight_decay(net, weight_decay=0.05)
    assert sorted(ours) == sorted(sorted(id(p) for p in g["params"]) for g in theirs)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    # without skip: one group, every parameter decays (the SGD papers)
    assert len(param_groups(net, [])) == 1
    rms = make_optimizer(net, _recipe(optimizer="rmsprop", momentum=0.9, alpha=0.9, eps=1e-3))
    assert isinstance(rms, torch.optim.RMSprop) and rms.defaults["alpha"] == 0.9 and rms.defaults["momentum"] == 0.9


def test_cutmix_box_and_lambda_are_torchvisions():
    from torchvision.transforms import v2

    x = torch.randn(4, 3, 16, 12)
    y = torch.arange(4)
    torch.manual_seed(3)
    cut = v2.CutMix(alpha=1.0, num_classes=4)
    mixed, target = cut(x, y)
    # the same draws, in torchvision's order: lambda, then r_x, then r_y; pairing = roll by one
    torch.manual_seed(3)
    lam = float(torch.distributions.Beta(torch.tensor([1.0]), torch.tensor([1.0])).sample(()))
    r_x = int(torch.randint(12, size=(1,)))
    r_y = int(torch.randint(16, size=(1,)))
    ours, lam_adj = mix.paste_box(x, x.roll(1, 0), lam, r_y, r_x)
    assert torch.equal(ours, mixed)
    onehot = torch.nn.functional.one_hot(y, 4).float()
    assert torch.allclose(target, lam_adj * onehot + (1 - lam_adj) * onehot.roll(1, 0))


def test_label_smoothing_and_mixing_equal_timms_soft_targets():
    from timm.data.mixup import mixup_target
    from timm.loss import SoftTargetCrossEntropy

    logits = torch.randn(6, 5)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    perm = torch.tensor([5, 4, 3, 2, 1, 0])
    lam, smoothing = 0.7, 0.1
    ours = mix.mixed_ce(logits, y, y[perm], lam, smoothing)
    # timm mixes with the flipped batch; y[perm] here is exactly y.flip(0)
    theirs = SoftTargetCrossEntropy()(logits, mixup_target(y, 5, lam, smoothing))
    assert float(ours) == pytest.approx(float(theirs), rel=1e-6)


def test_mixing_draws_only_from_the_generator_and_nothing_when_off():
    x, y = torch.randn(4, 3, 8, 8), torch.arange(4)
    g = torch.Generator().manual_seed(0)
    before = g.get_state()
    out = mix.mix_batch(x, y, _recipe(), 0, g)
    assert out[0] is x and out[3] == 1.0 and torch.equal(g.get_state(), before)
    r = _recipe(mixup_alpha=0.8, cutmix_alpha=1.0, mix_prob=1.0, mix_switch_prob=0.5)
    state = torch.get_rng_state()
    a = mix.mix_batch(x, y, r, 0, torch.Generator().manual_seed(5))
    b = mix.mix_batch(x, y, r, 0, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and a[3] == b[3] and torch.equal(torch.get_rng_state(), state)


def test_ema_is_torchs_averaged_model():
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    ours = make_ema(net, 0.9)
    theirs = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    for _ in range(3):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        net(torch.randn(4, 3))
        update(ours, net)
        theirs.update_parameters(net)
    for a, b in zip(ours.module.state_dict().values(), theirs.module.state_dict().values()):
        assert torch.equal(a, b)
    assert make_ema(net, 0.0) is None


def test_identity_follows_meaning_not_spelling():
    plain = _recipe()
    spelled = _recipe(optimizer="sgd", schedule="step", label_smoothing=0.0, lr_step="epoch", warmup_lr=0.0,
                      ema_decay=0.0, betas=[0.9, 0.999], cutmix_alpha=0.0, accumulate_steps=1)
    assert recipe_identity(plain) == recipe_identity(spelled)
    assert recipe_identity(_recipe(label_smoothing=0.1)) != recipe_identity(plain)
    assert "label_smoothing" not in recipe_identity(plain) and "optimizer" not in recipe_identity(plain)


@pytest.mark.parametrize("fields,message", [
    ({"optimizer": "adamw", "momentum": 0.8}, "momentum: does not belong to optimizer adamw"),
    ({"optimizer": "sgd", "betas": [0.9, 0.99]}, "betas: does not belong to optimizer sgd"),
    ({"optimizer": "rmsprop"}, "momentum: rmsprop needs momentum stated"),
    ({"schedule": "cosine", "milestones": [3]}, "milestones: does not belong to schedule cosine"),
    ({"schedule": "step", "power": 2.0}, "power: does not belong to schedule step"),
    ({"schedule": "exponential", "gamma": 0.97}, "decay_every: an exponential schedule needs decay_every"),
    ({"schedule": "cosine", "min_lr": 0.5}, "min_lr: 0.5 is above lr 0.1"),
    ({"mix_prob": 0.5}, "mix_prob: applies only with mixup_alpha or cutmix_alpha > 0"),
    ({"accumulate_steps": 3}, "accumulate_steps: 3 does not divide batch_size 8"),
    ({"augment": [{"randaugment": {"magnitude": 31}}]},
     "augment: randaugment.magnitude: 31 is out of range: allowed [0, 30]"),
    ({"augment": [{"autoaugment": {"policy": "mnist"}}]}, "augment: autoaugment.policy: 'mnist' is not one of"),
    ({"augment": [{"random_erasing": {"scale": [0.4, 0.1]}}]},
     "augment: random_erasing.scale: [0.4, 0.1] must be [low, high]"),
    ({"augment": [{"randaugment": {"ops": 2}}]}, "augment: randaugment: unknown parameter 'ops'"),
    ({"label_smoothing": 1.5}, "label_smoothing: 1.5 is out of range"),
])
def test_bad_values_are_one_line_naming_file_and_field(fields, message):
    """As the catalog reports them (``file: recipes.<name>.<field>: message``; the CLI prints it, exit 2)."""
    from pathlib import Path

    from repro.catalog import _validate
    from repro.specs import PaperSpec, SpecError

    base = {"dataset": "cifar10", "epochs": 10, "batch_size": 8, "lr": 0.1, "weight_decay": 0.05}
    paper = {"paper": "p", "title": "t", "authors": "a", "source": "s", "recipes": {"r": {**base, **fields}}}
    with pytest.raises(SpecError) as e:
        _validate(PaperSpec, paper, Path("paper.yaml"))
    assert str(e.value).startswith(f"paper.yaml: recipes.r.{message}"), str(e.value)


def test_a_recipe_is_shown_whole_with_where_each_value_comes_from():
    from repro.catalog import load_catalog
    from repro.train.describe import parts, text

    from conftest import SPECS

    r = load_catalog(SPECS).papers["se-r"].spec.recipes["cifar100"]
    source = {p.field: p.source for p in parts(r)}
    assert source["lr"] == "stated" and source["nesterov"] == "assumed" and source["optimizer"] == "default"
    assert source["label_smoothing"] == "default" and source["warmup_step"] == "assumed"
    line = text(r)
    assert "optimizer: optimizer sgd (default), lr 0.1," in line and "milestones [60, 120, 160]" in line
    assert "grad_clip_norm none (default)" in line
    deit = Recipe.model_validate({"dataset": "cifar10", "epochs": 10, "batch_size": 8, "lr": 0.1, "weight_decay": 0.05,
                                  "optimizer": "adamw", "augment": [{"randaugment": {"magnitude": 7}}]})
    assert "betas [0.9, 0.999] (default)" in text(deit)
    assert "augment [{randaugment num_ops 2, magnitude 7, num_magnitude_bins 31}] (stated)" not in text(deit)
    assert "augment [{randaugment num_ops 2, magnitude 7, num_magnitude_bins 31}]" in text(deit)
