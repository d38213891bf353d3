"""Backbones. Each block holds one attention call site before the residual add."""
