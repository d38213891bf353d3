"""Attention modules. Each is registered by name in ``models.registry.ATTENTIONS``."""
