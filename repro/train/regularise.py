"""Regularisers that live in the model: the recipe's ``drop_path`` (stochastic depth) and ``dropout``,
handed to the model's own constructor under the name it gives them. timm's models take ``drop_path_rate``
and ``drop_rate``, torchvision's ``stochastic_depth_prob`` and ``dropout``; a model whose constructor takes
neither is a spec error naming the model (``check``, run by ``repro specs check`` and the planner), never
a rate accepted and ignored. The model is tried on the meta device: no weights are allocated.
"""
from __future__ import annotations

import functools
import json

NAMES = {"drop_path": ("drop_path_rate", "stochastic_depth_prob"), "dropout": ("drop_rate", "dropout")}


@functools.lru_cache(maxsize=256)
def _keyword(model: str, kwargs_json: str, field: str) -> str | None:
    import torch

    import repro_models as models

    kwargs = json.loads(kwargs_json)
    for name in NAMES[field]:
        try:
            with torch.device("meta"):
                models.create(model, **{**kwargs, name: 0.1})
            return name
        except (TypeError, ValueError):
            continue
    return None


def model_kwargs(model: str, kwargs: dict, recipe) -> dict:
    """The recipe's model-side regularisers as keyword arguments of ``model`` ({} when both are 0)."""
    out = {}
    for field in NAMES:
        rate = getattr(recipe, field)
        if rate:
            name = _keyword(model, json.dumps(kwargs, sort_keys=True), field)
            if name is None:
                raise ValueError(f"{field}: model {model} has no {field} ({' or '.join(NAMES[field])}); "
                                 f"its constructor takes neither")
            out[name] = rate
    return out


def build(spec: dict, recipe):
    """The job's model: its constructor with the recipe's regularisers (ghost BN is the caller's, after
    any initial weights are loaded)."""
    import repro_models as models

    return models.create(spec["model"], **spec["model_kwargs"],
                         **model_kwargs(spec["model"], spec["model_kwargs"], recipe))
