"""A recipe as a reader checks it against the paper: every field that shapes training, grouped (optimizer,
schedule, warm-up, regularisers, data), each marked by where its value comes from: ``stated`` (written in
the spec and not listed as assumed), ``assumed`` (the paper leaves it open; the spec chose, see ``assumed``)
or ``default`` (not written in the spec: repro's default, which is today's meaning and never a library's).
Torch-free: reports and the CLI read it."""
from __future__ import annotations

from dataclasses import dataclass

from .names import OPTIMIZERS, SCHEDULES, augment_name, augment_params


@dataclass(frozen=True)
class Part:
    group: str  # optimizer | schedule | warm-up | regularisers | data | length
    field: str
    value: object
    source: str  # stated | assumed | default


def _source(recipe, field: str) -> str:
    if field in recipe.assumed:
        return "assumed"
    return "stated" if field in recipe.model_fields_set else "default"


def parts(recipe) -> list[Part]:
    """Every field the recipe trains with, in reading order (fields that do not apply are left out)."""
    def part(group, field, value=None):
        return Part(group, field, getattr(recipe, field) if value is None else value, _source(recipe, field))

    out = [part("length", "epochs") if not recipe.iterations else part("length", "iterations"),
           part("length", "batch_size")]
    if recipe.mixup_extra_epochs:
        out.append(part("length", "mixup_extra_epochs"))
    if recipe.cooldown_epochs:
        out.append(part("length", "cooldown_epochs"))
    if recipe.accumulate_steps > 1:
        out.append(part("length", "accumulate_steps"))
    out += [part("optimizer", "optimizer"), part("optimizer", "lr"), part("optimizer", "weight_decay"),
            part("optimizer", "weight_decay_skip", list(recipe.weight_decay_skip) or "none (every parameter decays)")]
    out += [part("optimizer", f, list(getattr(recipe, f)) if f == "betas" else None)
            for f in sorted(OPTIMIZERS[recipe.optimizer][1])]
    out.append(part("schedule", "schedule"))
    out += [part("schedule", f) for f in sorted(SCHEDULES[recipe.schedule]) if getattr(recipe, f) is not None]
    if not recipe.iterations and (recipe.schedule != "constant"):
        out.append(part("schedule", "lr_step"))
        if recipe.step_before_epoch:
            out.append(part("schedule", "step_before_epoch"))
    warm = recipe.warmup_iterations if recipe.iterations else recipe.warmup_epochs
    if warm:
        out.append(part("warm-up", "warmup_iterations" if recipe.iterations else "warmup_epochs"))
        out += [part("warm-up", "warmup_lr"), part("warm-up", "warmup_at")]
        if not recipe.iterations:
            out.append(part("warm-up", "warmup_step"))
    for f in ("label_smoothing", "mixup_alpha", "cutmix_alpha", "ema_decay", "drop_path", "dropout", "grad_clip_norm"):
        if not recipe.iterations or f == "grad_clip_norm":
            out.append(part("regularisers", f))
    if recipe.mixup_alpha or recipe.cutmix_alpha:
        out.append(part("regularisers", "mix_prob"))
        if recipe.mixup_alpha and recipe.cutmix_alpha:
            out.append(part("regularisers", "mix_switch_prob"))
    shown = [a if isinstance(a, str) and not augment_params(a) else {augment_name(a): augment_params(a)}
             for a in recipe.augment]
    out.append(part("data", "augment", shown))
    if recipe.bn_batch is not None:
        out.append(part("data", "bn_batch"))
    for f in ("eval_resize", "eval_crop"):
        if getattr(recipe, f) is not None:
            out.append(part("data", f))
    return out


def _value(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_value(x)}" for k, x in v.items())
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) if not isinstance(x, dict) else "{" + _value(x) + "}" for x in v) + "]"
    return f"{v:g}" if isinstance(v, float) else str(v)


def text(recipe) -> str:
    """One line per group: ``optimizer: optimizer sgd, lr 0.1, momentum 0.9 (assumed), ...``; a value the
    spec leaves out is marked (default), one the paper leaves open (assumed)."""
    groups: dict[str, list[str]] = {}
    for p in parts(recipe):
        mark = "" if p.source == "stated" else f" ({p.source})"
        groups.setdefault(p.group, []).append(f"{p.field} {_value(p.value)}{mark}")
    return "; ".join(f"{g}: {', '.join(items)}" for g, items in groups.items())
