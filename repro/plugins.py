"""The whole surface a plugin may import: registration decorators, nothing else.

A plugin is a Python file listed in a paper's ``paper.yaml`` (``plugins: [eca.py]``, relative to the
paper's folder), a file given with ``--plugins PATH`` or ``$REPRO_PLUGINS``, or an installed package that
declares an entry point in the group ``repro.plugins``. Every process that reads the registries imports the
same plugins (the planner, ``repro specs check``, each local worker and each Slurm task), and every run
records each plugin file's SHA-256 (a package's version). Example::

    from torch import nn
    from repro.plugins import register_attention

    @register_attention("eca")
    class ECA(nn.Module):
        def __init__(self, channels, k_size=3): ...
        def forward(self, x, identity=None, context=None): ...

An attention plugs into every built-in backbone through its single call site (``model: resnet_cifar,
model_kwargs: {attention: eca}``). A model function takes ``num_classes`` and the row's ``model_kwargs``, as
the built-in ones do. A dataset function: see ``register_dataset``.
"""
from repro_models.registry import register_attention, register_backbone, register_model

from .data.datasets import register_dataset


__all__ = ["register_attention", "register_backbone", "register_dataset", "register_model"]
