"""How long a recipe trains, in images: what ``repro bench`` turns into hours and the GPU-hour estimate
(``repro.estimate``) multiplies by MACs. Torch-free."""
from __future__ import annotations

from ..data import datasets
from ..specs import JobRecipe


def images_seen(cfg: dict) -> float | None:
    """Training images a configuration sees in all (None: its dataset's size is known only from its files)."""
    r = JobRecipe.of(cfg["recipe"])
    if r.iterations:
        return r.iterations * r.batch_size
    per_epoch = datasets.for_job(cfg).train_images(r.train_split)
    return None if per_epoch is None else per_epoch * r.total_epochs
