"""Model zoo for the papers ``repro`` reproduces.

Public API: ``models.create(name, num_classes=..., **kwargs)`` and ``models.available()``.
Every module is imported here explicitly so that nothing is missing from the registries.
"""
from .registry import ATTENTIONS, BACKBONES, MODELS, MODEL_INFO, available, create, is_known  # noqa: F401

# attentions
from .attention import cra, se  # noqa: F401,E402

# backbones and named models
