"""An exponential moving average of the weights (``ema_decay``), through ``torch.optim.swa_utils``:
``AveragedModel`` with ``get_ema_multi_avg_fn(decay)`` and ``use_buffers=True`` (BatchNorm statistics are
averaged too, as timm's ModelEmaV2/V3 do). torch's rule for the first update: the average starts as a copy
of the weights after the first optimizer step; after that ema = decay x ema + (1 - decay) x weights, once
per update. With EMA on, a job's metrics are the average's, and the raw model's are stored beside them
(``raw_top1_err`` ...). Off (decay 0), nothing is built and nothing is averaged.
"""
from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def make_ema(net: nn.Module, decay: float) -> AveragedModel | None:
    if not decay:
        return None
    return AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def update(ema: AveragedModel | None, net: nn.Module) -> None:
    if ema is not None:
        ema.update_parameters(net)
