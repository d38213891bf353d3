"""One optimizer update: forward under the engine's precision, the recipe's loss, backward over
``accumulate_steps`` micro-batches, gradient clipping, the step, the EMA. No host sync."""
from __future__ import annotations

import torch

from . import ema as ema_
from .mix import mixed_ce


def split_outputs(out) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Models return logits, or ``(logits, [aux_logits, ...])`` in training mode."""
    if isinstance(out, tuple):
        return out[0], list(out[1])
    return out, []


def aux_loss(aux_logits: list[torch.Tensor], ya, yb, lam: float, weights: list[float],
             smoothing: float = 0.0) -> torch.Tensor | float:
    """sum_i w_i * CE(aux_i); SE-R's lossW1/lossW2. Zero when the model has no auxiliary heads."""
    if len(aux_logits) != len(weights):
        raise ValueError(f"model has {len(aux_logits)} auxiliary outputs but {len(weights)} loss weights were given")
    return sum((w * mixed_ce(a, ya, yb, lam, smoothing) for a, w in zip(aux_logits, weights)), 0.0)


def train_step(step_model, net, opt, engine, device, recipe, x, ya, yb, lam: float, weights: list[float],
               ema=None):
    """One update of ``recipe``; returns (logits, loss) of the whole batch (device tensors)."""
    k = recipe.accumulate_steps
    opt.zero_grad(set_to_none=True)
    logits_parts, loss_sum = [], 0.0
    for xs, yas, ybs in zip(x.chunk(k), ya.chunk(k), yb.chunk(k)) if k > 1 else [(x, ya, yb)]:
        with engine.autocast(device):
            logits, aux = split_outputs(step_model(xs))
            loss = (mixed_ce(logits, yas, ybs, lam, recipe.label_smoothing)
                    + aux_loss(aux, yas, ybs, lam, weights, recipe.label_smoothing))
        (loss / k).backward() if k > 1 else loss.backward()
        logits_parts.append(logits)
        loss_sum = loss_sum + loss.detach() / k
    if recipe.grad_clip_norm is not None:
        torch.nn.utils.clip_grad_norm_(net.parameters(), recipe.grad_clip_norm)
    opt.step()
    ema_.update(ema, net)
    logits = logits_parts[0] if k == 1 else torch.cat(logits_parts)
    return logits, (loss if k == 1 else loss_sum)
