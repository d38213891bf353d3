"""Batches for the trainer, by engine. Every loader has ``len(loader)`` (batches per epoch) and
``loader.epoch(gen)``, which yields ``(x, y)`` on the device for one epoch; ``gen`` is the CPU generator
the trainer seeds by (seed, epoch), and it alone decides the order and every augmentation.

- ``fast`` on 32x32 datasets (CIFAR-10/100, SVHN, digits): the uint8 splits live on the device and are
  augmented with batched tensor ops (``repro.fastdata.DeviceLoader``).
- ``reference``: torchvision's PIL transforms in a ``DataLoader`` (``--loader-workers`` processes, 0 by
  default): the oracle the fast path is tested against.
- ImageNet under ``fast``: libjpeg-turbo decoding and crop-then-resize on uint8 in ``DataLoader`` worker
  processes (a share of the CPU cores), pinned memory, non-blocking copies, flip and normalisation on the
  device (``repro.imagenet_input.ImageNetLoader``); ``decode="cuda"`` decodes on the GPU with nvJPEG.

Deterministic at any number of workers: the sampler draws the epoch's order and a base seed from the
epoch's generator and hands each worker ``(index, base)``; the sample's transform draws from the torch
RNG seeded by (base, index) inside ``fork_rng``, so neither worker scheduling nor persistent workers
change a single pixel, and a resumed run sees the same batches.
"""
from __future__ import annotations

import os
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from . import data
from .specs import JobRecipe

FAST_DATASETS = {"cifar10", "cifar100", "svhn", "digits"}


def sample_seed(index: int, base: int) -> int:
    """The seed of one sample's augmentation draws in one epoch; both ImageNet paths use it, so the fast
    path draws the reference path's crops and flips."""
    return (base + index * 2_654_435_761) % 2**63


class SeededSamples(Dataset):
    """``ds[index]`` with the torch RNG seeded by (base, index) for the transforms' draws."""

    def __init__(self, ds: Dataset):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key: tuple[int, int]):
        index, base = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(index, base))
            return self.ds[index]


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


class TorchLoader:
    """A ``DataLoader`` over seeded samples; one loader for the run (persistent workers survive epochs)."""

    def __init__(self, ds: Dataset, *, batch_size: int, shuffle: bool, device: torch.device,
                 workers: int = 0, drop_last: bool = False, channels_last: bool = False):
        self.sampler = EpochBatches(len(ds), batch_size, shuffle, drop_last)
        pin = device.type == "cuda"
        self.loader = DataLoader(SeededSamples(ds), batch_sampler=self.sampler, num_workers=workers,
                                 pin_memory=pin, persistent_workers=workers > 0,
                                 prefetch_factor=4 if workers > 0 else None)
        self.device, self.channels_last = device, channels_last

    def __len__(self) -> int:
        return len(self.sampler)

    def epoch(self, gen: torch.Generator | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.sampler.gen = gen
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=True, memory_format=fmt), y.to(self.device, non_blocking=True)


def default_workers() -> int:
    """ImageNet decoding workers: the cores of this process's share of the machine, minus one for it."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    gpus = max(1, torch.cuda.device_count())
    return max(1, min(16, cores // gpus - 1))


def build(spec: dict, *, engine: str, device: torch.device, data_dir, download: bool, loader_workers: int | None,
          channels_last: bool, decode: str = "cpu"):
    """(train loader, test loader) for a training job's dataset, recipe and budget. ``decode`` (cpu or
    cuda) is where the fast ImageNet path decodes JPEGs; the other paths decode nothing or on the CPU."""
    recipe, dataset = JobRecipe.of(spec["recipe"]), spec["dataset"]
    if engine not in ("fast", "reference"):
        raise ValueError(f"unknown engine {engine!r}: use fast or reference")
    if decode != "cpu" and not (engine == "fast" and dataset == "imagenet"):
        raise ValueError(f"decode={decode!r} applies to the fast ImageNet path only")
    if engine == "fast" and dataset in FAST_DATASETS:
        from .fastdata import DeviceLoader

        (xtr, ytr), (xte, yte) = data.arrays(dataset, data_dir, train_split=recipe.train_split, download=download)
        xtr, ytr = _subset(xtr, ytr, recipe.train_images)
        xte, yte = _subset(xte, yte, recipe.test_images)
        mean, std = data.MEAN_STD[dataset]
        common = dict(augment=recipe.augment, mean=mean, std=std, device=device, channels_last=channels_last)
        return (DeviceLoader(xtr, ytr, batch_size=recipe.batch_size, train=True, **common),
                DeviceLoader(xte, yte, batch_size=500, train=False, **common))
    train_ds, test_ds = data.load(dataset, data_dir, augment=recipe.augment, train_split=recipe.train_split,
                                  download=download)
    if engine == "fast" and dataset == "imagenet":
        from .imagenet_input import ImageNetLoader

        # ImageFolder's file lists: the reference path's files, labels, smoke subset and errors
        train = _subset_list(train_ds.samples, recipe.train_images)
        test = _subset_list(test_ds.samples, recipe.test_images)
        common = dict(augment=recipe.augment, device=device, decode=decode, channels_last=channels_last,
                      workers=default_workers() if loader_workers is None else loader_workers)
        return (ImageNetLoader(train, batch_size=recipe.batch_size, train=True, **common),
                ImageNetLoader(test, batch_size=256, train=False, **common))
    train_ds = data.subset(train_ds, recipe.train_images)
    test_ds = data.subset(test_ds, recipe.test_images)
    common = dict(device=device, workers=loader_workers or 0, channels_last=channels_last)
    return (TorchLoader(train_ds, batch_size=recipe.batch_size, shuffle=True, **common),
            TorchLoader(test_ds, batch_size=256, shuffle=False, **common))


def _subset(x: torch.Tensor, y: torch.Tensor, n: int | None):
    """The smoke budget's images: the same ones as ``data.subset``."""
    idx = data.subset_indices(len(y), n)
    return (x, y) if idx is None else (x[idx], y[idx])


def _subset_list(items: list, n: int | None) -> list:
    idx = data.subset_indices(len(items), n)
    return items if idx is None else [items[i] for i in idx]
