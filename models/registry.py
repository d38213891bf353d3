"""Three flat registries: backbones, attentions, and named models.

A paper table is a grid of (backbone x attention). Backbones are functions
``fn(*, num_classes, attn_layer=None, **kwargs) -> nn.Module`` whose blocks hold a single
attention call site, ``out = self.attn(out, identity=identity, context=context)``.
Attentions are ``nn.Module`` classes constructed as ``cls(channels, **kwargs)``; modules that
do not use ``identity`` or ``context`` ignore them. Named models are functions that pin a
paper's defaults explicitly (``se_r_resnet50(num_classes=100, reduction=8, ...)``).

Registering a name twice raises, so two modules cannot silently shadow each other.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable

from torch import nn

from . import ecosystem

BACKBONES: dict[str, Callable[..., nn.Module]] = {}
ATTENTIONS: dict[str, type[nn.Module]] = {}
MODELS: dict[str, Callable[..., nn.Module]] = {}
MODEL_INFO: dict[str, dict[str, Any]] = {}


# Who registered each name: "built-in", or the plugin being imported (``registering_as``), so that
# listings show a model's origin (classified by ``repro.modelcheck.ModelFacts.origin``, the one rule) and a
# clash names both sides.
ORIGIN: dict[tuple[str, str], str] = {}
_origin = ["built-in"]


@contextlib.contextmanager
def registering_as(origin: str):
    """Attribute what is registered inside the block to ``origin`` (a plugin's name)."""
    _origin.append(origin)
    try:
        yield
    finally:
        _origin.pop()


class AlreadyRegistered(ValueError):
    def __init__(self, kind: str, name: str, first: str):
        super().__init__(f"{kind} {name!r} is registered twice (first by {first})")
        self.kind, self.name, self.first = kind, name, first


def _register(table: dict, kind: str, name: str):
    def decorator(obj):
        if name in table:
            raise AlreadyRegistered(kind, name, ORIGIN.get((kind, name), "built-in"))
        table[name] = obj
        ORIGIN[(kind, name)] = _origin[-1]
        return obj

    return decorator


def register_backbone(name: str):
    return _register(BACKBONES, "backbone", name)


def register_attention(name: str):
    return _register(ATTENTIONS, "attention", name)


CANONICAL: dict[str, Callable[[dict], dict]] = {}


def register_model(name: str | None = None, *, paper: str | None = None, backbone: str | None = None,
                   attention: str | None = None, canonical: Callable[[dict], dict] | None = None):
    """Register a named model function; ``paper``/``backbone``/``attention`` are for listings.

    ``canonical(options) -> options`` spells options that build the same network the same way (an
    option left to its default vs the default written out), so that they hash to one job."""

    def decorator(fn):
        key = name or fn.__name__
        _register(MODELS, "model", key)(fn)
        if canonical is not None:
            CANONICAL[key] = canonical
        MODEL_INFO[key] = {"paper": paper, "backbone": backbone, "attention": attention,
                           "doc": (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""}
        return fn

    return decorator


class NoAttention(nn.Module):
    """The identity attention: what a plain backbone's call site holds."""

    def __init__(self, channels: int = 0, **kwargs):
        super().__init__()
        if kwargs:
            raise ValueError(f"NoAttention takes no options, got {sorted(kwargs)}")

    def forward(self, x, identity=None, context=None):
        return x


ATTENTIONS["none"] = NoAttention


def attention_layer(name: str | None, **kwargs) -> Callable[..., nn.Module]:
    """A factory ``channels -> module`` for the attention ``name`` with fixed options."""
    if name is None or name == "none":
        if kwargs:
            raise ValueError(f"options {sorted(kwargs)} given without an attention")
        return NoAttention
    try:
        cls = ATTENTIONS[name]
    except KeyError:
        raise ValueError(f"unknown attention {name!r}; known: {sorted(ATTENTIONS)}") from None
    return functools.partial(cls, **kwargs)


def make_attn(attn_layer: Callable[..., nn.Module] | None, channels: int, **kwargs) -> nn.Module:
    """Build one attention module for a block; ``None`` gives the identity."""
    if attn_layer is None:
        return NoAttention()
    return attn_layer(channels, **kwargs)


def create(name: str, num_classes: int | None = None, *, attention: str | None = None,
           attention_kwargs: dict | None = None, **kwargs) -> nn.Module:
    """Build a model by name.

    ``name`` is a registered model (``se_r_resnet50``) or a backbone (``resnet56_cifar``); for a
    backbone, ``attention`` names the attention to plug in and ``attention_kwargs`` its options.
    """
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if ecosystem.split(name):  # timm/<name>, torchvision/<name>: exactly the library's own constructor
        if attention is not None or attention_kwargs:
            raise ValueError(f"{name!r} is a {name.split('/')[0]} model: our attentions plug into our backbones only")
        return ecosystem.create(name, ATTENTIONS, **kwargs)  # our attentions, for {repro_attention: ...}
    if name in MODELS:
        if attention is not None or attention_kwargs:
            raise ValueError(f"{name!r} is a named model: its attention is fixed; "
                             f"use a backbone name to choose one")
        return MODELS[name](**kwargs)
    if name in BACKBONES:
        return BACKBONES[name](attn_layer=attention_layer(attention, **(attention_kwargs or {})), **kwargs)
    raise ValueError(unknown_message(name))


def available() -> list[str]:
    """Names of every registered model (named models first, then bare backbones)."""
    return sorted(MODELS) + sorted(b for b in BACKBONES if b not in MODELS)


def is_known(name: str) -> bool:
    return name in MODELS or name in BACKBONES or ecosystem.is_known(name)


def unknown_message(name: str) -> str:
    """Why ``name`` is not a model, in one line (with the closest names of an ecosystem library)."""
    if ecosystem.split(name):
        return ecosystem.unknown_message(name)
    import difflib

    close = difflib.get_close_matches(name, available(), n=3)
    return f"unknown model {name!r}" + (f"; closest: {', '.join(close)}" if close else "")


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    return v


# What building a model with bad option values raises: ValueError/TypeError/AssertionError from our
# own checks and Python, RuntimeError from torch (a negative width), ZeroDivisionError (reduction 0).
BUILD_ERRORS = (ValueError, TypeError, AssertionError, RuntimeError, ZeroDivisionError, KeyError, IndexError)


def _options(fn) -> tuple[dict[str, Any], set[str], bool]:
    import inspect

    params = inspect.signature(fn).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = {n for n, p in params.items() if n != "attn_layer"
             and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)}
    defaults = {n: _jsonable(params[n].default) for n in named if params[n].default is not inspect.Parameter.empty}
    return defaults, named, takes_any


def build_on_meta(name: str, **kwargs) -> None:
    """Build model ``name`` on the meta device (shapes only: no memory, no init cost) to learn
    whether it accepts these option values. Raises ``ValueError`` with a one-line reason.

    This is the real check for functions with ``**kwargs``: the options travel down to the
    backbone or attention that takes them, and whatever takes none raises ``TypeError``.
    """
    import re

    import torch

    try:
        with torch.device("meta"):
            create(name, **kwargs)
    except TypeError as e:
        unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if unexpected:
            raise ValueError(f"model {name!r} has no option {unexpected[1]!r}") from None
        raise ValueError(f"model {name!r} rejects its options: {_one_line(e)}") from None
    except BUILD_ERRORS as e:
        raise ValueError(f"model {name!r} rejects its options: {_one_line(e)}") from None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def resolved_kwargs(name: str, *, check: bool = True, **kwargs) -> dict[str, Any]:
    """Every keyword option of model ``name`` with its default filled in.

    Jobs are identified by a hash of their resolved description, so ``se_r_resnet50`` and
    ``se_r_resnet50(reduction=8)`` must resolve to the same options. Unknown options raise, also
    for model functions with ``**kwargs``: options beyond the signature are checked by building on
    the meta device (``check=False`` skips that, for a caller that has just built it).
    """
    if ecosystem.split(name):  # the library's options are its own: checked by building, kept as given
        if check:
            build_on_meta(name, **kwargs)
        return dict(sorted((k, _jsonable(v)) for k, v in kwargs.items()))
    fn = MODELS.get(name) or BACKBONES.get(name)
    if fn is None:
        raise ValueError(unknown_message(name))
    out, named, takes_any = _options(fn)
    extra = {k: v for k, v in kwargs.items() if k not in named}
    if extra and not takes_any:
        k = next(iter(extra))
        raise ValueError(f"model {name!r} has no option {k!r} (options: {', '.join(sorted(named))})")
    if extra and check:
        build_on_meta(name, **kwargs)
    for k, v in kwargs.items():
        out[k] = _jsonable(v)
    if name in CANONICAL:
        out = CANONICAL[name](out)
    return dict(sorted(out.items()))


def validated_kwargs(name: str, **kwargs) -> dict[str, Any]:
    """``resolved_kwargs`` after building the model with exactly these options on the meta device,
    so that option values are checked too (``depth: 9`` for a 6n+2 ResNet, a negative reduction)."""
    resolved = resolved_kwargs(name, check=False, **kwargs)
    build_on_meta(name, **kwargs)
    return resolved
