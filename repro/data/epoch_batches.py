"""The epoch's sample order and per-sample seeds that both ImageNet input paths share: the reference
``DataLoader`` (``repro.data.loaders``) and the fast one (``repro.data.imagenet_input``), which imports this and not
the loaders that choose it, so the two modules import in one direction. See ``repro.data.loaders`` for why
(index, base seed) keys make every worker count draw the same pixels."""
from __future__ import annotations

import torch
from torch.utils.data import Sampler


def sample_seed(index: int, base: int) -> int:
    """The seed of one sample's augmentation draws in one epoch; both ImageNet paths use it, so the fast
    path draws the reference path's crops and flips."""
    return (base + index * 2_654_435_761) % 2**63


class EpochBatches(Sampler):
    """Batches of ``(index, base seed)`` keys, order and base drawn from the epoch's generator."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, drop_last: bool):
        self.n, self.batch_size, self.shuffle, self.drop_last = n, batch_size, shuffle, drop_last
        self.gen = None

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self):
        base = int(torch.randint(0, 2**62, (1,), generator=self.gen)) if self.gen is not None else 0
        order = torch.randperm(self.n, generator=self.gen).tolist() if self.shuffle else list(range(self.n))
        for i in range(len(self)):
            yield [(j, base) for j in order[i * self.batch_size:(i + 1) * self.batch_size]]
