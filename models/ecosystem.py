"""Models by name from the ecosystem: ``timm/<name>`` and ``torchvision/<name>``.

``timm/<name>`` is exactly ``timm.create_model(name, pretrained=False, num_classes=..., **model_kwargs)`` and
``torchvision/<name>`` exactly ``torchvision.models.get_model(name, weights=None, num_classes=...,
**model_kwargs)``: the ecosystem's own names, no renaming table. No weights are ever downloaded: a spec
cannot ask for hub weights (``pretrained``/``weights`` are refused); pretrained weights come from a local
file or another job. The library and its version are part of a job's identity (``repro.plan.model_source``). A model
option ``{repro_attention: NAME, ...}`` (e.g. timm's ``attn_layer``) plugs one of
our registered attentions, a plugin's included, into the library's blocks (``attention_factory``).
"""
from __future__ import annotations

import difflib
from typing import Any, Mapping

from torch import nn

LIBRARIES = ("timm", "torchvision")
_HUB_OPTIONS = {"pretrained", "weights", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path"}


def split(name: str) -> tuple[str, str] | None:
    """``("timm", "resnet18")`` for ``timm/resnet18``; None for a name of our own registries."""
    library, sep, rest = name.partition("/")
    return (library, rest) if sep and library in LIBRARIES else None


def names(library: str) -> list[str]:
    if library == "timm":
        import timm

        return timm.list_models()
    import torchvision

    return torchvision.models.list_models()


def is_known(name: str) -> bool:
    parts = split(name)
    return parts is not None and parts[1] in names(parts[0])


def unknown_message(name: str) -> str:
    """One line: the name is not the library's, with the closest names it has."""
    library, rest = split(name)
    close = difflib.get_close_matches(rest, names(library), n=5, cutoff=0.6)
    hint = f"; closest: {', '.join(f'{library}/{c}' for c in close)}" if close else ""
    return f"unknown model {name!r}: {library} has no model {rest!r}{hint}"


def attention_factory(value: dict, attentions: Mapping[str, type[nn.Module]]):
    """``{repro_attention: NAME, **options}`` as a model option: our (or a plugin's) attention, from
    ``attentions`` (the registry's, which passes them in: this module imports no registry), as the layer
    class a library's blocks call with their channel count (timm's ``attn_layer``), so an attention of ours
    plugs into the library's backbones too. Options the library passes besides the channels (device,
    dtype) are left to the defaults."""
    options = {k: v for k, v in value.items() if k != "repro_attention"}
    cls = attentions.get(value["repro_attention"])
    if cls is None:
        raise ValueError(f"unknown attention {value['repro_attention']!r}; known: {sorted(attentions)}")

    def layer(channels: int, **_library_options) -> nn.Module:
        return cls(channels, **options)

    return layer


def _resolve(value: Any, attentions: Mapping[str, type[nn.Module]]) -> Any:
    """Option values with every ``{repro_attention: ...}`` (at any depth: timm's ``block_args``) resolved."""
    if isinstance(value, dict):
        if "repro_attention" in value:
            return attention_factory(value, attentions)
        return {k: _resolve(v, attentions) for k, v in value.items()}
    return value


def create(name: str, attentions: Mapping[str, type[nn.Module]], /, **kwargs: Any) -> nn.Module:
    """The library's model ``name`` (``timm/<name>``, ``torchvision/<name>``), its ``{repro_attention: ...}``
    options resolved from ``attentions``."""
    library, rest = split(name)
    kwargs = _resolve(kwargs, attentions)
    hub = _HUB_OPTIONS & set(kwargs)
    if hub:
        raise ValueError(f"{name}: {sorted(hub)} would fetch hub weights; repro never downloads weights (start "
                         f"from a local file or another job's weights instead)")
    if rest not in names(library):
        raise ValueError(unknown_message(name))
    if library == "timm":
        import timm

        return timm.create_model(rest, pretrained=False, **kwargs)
    import torchvision

    return torchvision.models.get_model(rest, weights=None, **kwargs)
