"""Batches for the trainer, by engine. Every loader has ``len(loader)`` (batches per epoch) and
``loader.epoch(gen)``, which yields ``(x, y)`` on the device for one epoch; ``gen`` is the CPU generator
the trainer seeds by (seed, epoch), and it alone decides the order and every augmentation. Each loader
also carries ``data_provenance``: the dataset, the path its batches took, its image size and channels, and
the mean/std used with where they came from (published, declared, or computed from the training set).

- ``fast`` on any dataset whose uint8 images fit in memory (CIFAR-10/100, SVHN, digits, MNIST and its kin,
  declared image folders and plugin datasets up to ``FAST_MAX_BYTES``): the uint8 splits live on the device
  and are augmented with batched tensor ops (``repro.data.fastdata.DeviceLoader``).
- ``reference``, and ``fast`` on larger datasets: torchvision's PIL transforms in a ``DataLoader``
  (``--loader-workers`` processes, 0 by default): the oracle the fast path is tested against.
- ImageNet under ``fast``: libjpeg-turbo decoding and crop-then-resize on uint8 in ``DataLoader`` worker
  processes (a share of the CPU cores), pinned memory, non-blocking copies, flip and normalisation on the
  device (``repro.data.imagenet_input.ImageNetLoader``); ``decode="cuda"`` decodes on the GPU with nvJPEG.

Deterministic at any number of workers: the sampler draws the epoch's order and a base seed from the
epoch's generator and hands each worker ``(index, base)``; the sample's transform draws from the torch
RNG seeded by (base, index) inside ``fork_rng``, so neither worker scheduling nor persistent workers
change a single pixel, and a resumed run sees the same batches.
"""
from __future__ import annotations

import os
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from . import channel_stats, datasets, readers
from .epoch_batches import EpochBatches, sample_seed
from ..specs import JobRecipe
from ..train import names as vocab

# The device-resident path holds a dataset's uint8 train and test images (decoded once, on the host, then on
# the device). 4 GiB keeps the largest built-in that takes it, SVHN with its extra split (604,388 x 32x32x3,
# 1.9 GB), with room, costs a few % of a training GPU's memory (80-141 GB) beside the model, and is what
# one host can decode in a few minutes; past it a DataLoader streams the files (ImageNet-64 would be 15.7 GB).
FAST_MAX_BYTES = 4 * 2**30


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
    recipe, info = JobRecipe.of(spec["recipe"]), datasets.for_job(spec)
    if engine not in ("fast", "reference"):
        raise ValueError(f"unknown engine {engine!r}: use fast or reference")
    if decode != "cpu" and not (engine == "fast" and info.kind == "imagenet"):
        raise ValueError(f"decode={decode!r} applies to the fast ImageNet path only")
    evaluation = recipe.model_dump(include={"eval_resize", "eval_crop", "eval_interpolation"})
    if engine == "fast" and info.kind == "imagenet" and not _beyond_fast_imagenet(recipe):
        from .imagenet_input import ImageNetLoader

        train_ds, test_ds = readers.load(info, data_dir, augment=recipe.augment, train_split=recipe.train_split,
                                      download=download)
        # ImageFolder's file lists: the reference path's files, labels, smoke subset and errors
        train = _subset_list(train_ds.samples, recipe.train_images)
        test = _subset_list(test_ds.samples, recipe.test_images)
        common = dict(augment=recipe.augment, device=device, decode=decode, channels_last=channels_last,
                      workers=default_workers() if loader_workers is None else loader_workers)
        loaders = (ImageNetLoader(train, batch_size=recipe.batch_size, train=True, **common),
                   ImageNetLoader(test, batch_size=256, train=False, **common))
        stats = {**channel_stats.resolve(info, data_dir, download=download)[1], "train_images": len(train_ds)}
        return _record(loaders, info, stats, "imagenet-fast", "JPEG decoding in loader workers")
    if info.kind in ("imagefolder", "torchvision", "plugin"):  # its image size, read once for what follows
        info = readers.with_size(info, data_dir, download)
    path, why = resident(info, recipe, engine, data_dir, download)
    if path == "device":
        from .fastdata import DeviceLoader

        (xtr, ytr), (xte, yte) = readers.arrays(info, data_dir, train_split=recipe.train_split, download=download)
        info, stats = channel_stats.resolve(info, data_dir, download=download, train_images=xtr)
        stats["train_images"] = len(xtr)
        xtr, ytr = _subset(xtr, ytr, recipe.train_images)
        xte, yte = _subset(xte, yte, recipe.test_images)
        common = dict(augment=recipe.augment, mean=info.mean, std=info.std, device=device,
                      channels_last=channels_last, grey_to_rgb=info.channels == 1)
        loaders = (DeviceLoader(xtr, ytr, batch_size=recipe.batch_size, train=True, **common),
                   DeviceLoader(xte, yte, batch_size=500, train=False, **common))
        return _record(loaders, info, stats, path, why)
    info, stats = channel_stats.resolve(info, data_dir, download=download)
    train_ds, test_ds = readers.load(info, data_dir, augment=recipe.augment, train_split=recipe.train_split,
                                  download=download, evaluation=evaluation)
    stats["train_images"] = len(train_ds)
    train_ds = readers.subset(train_ds, recipe.train_images)
    test_ds = readers.subset(test_ds, recipe.test_images)
    common = dict(device=device, workers=loader_workers or 0, channels_last=channels_last)
    loaders = (TorchLoader(train_ds, batch_size=recipe.batch_size, shuffle=True, **common),
               TorchLoader(test_ds, batch_size=256, shuffle=False, **common))
    return _record(loaders, info, stats, path, why)


def path_by_kind(info: datasets.DatasetInfo, recipe: JobRecipe, engine: str) -> tuple[str | None, str]:
    """("device" or "dataloader", why) where the engine, the recipe or the kind decides; (None, "") where
    the dataset's size does."""
    if engine != "fast":
        return "dataloader", "the reference engine"
    if info.kind == "imagenet" and _beyond_fast_imagenet(recipe):
        return "dataloader", f"{_beyond_fast_imagenet(recipe)} is not implemented on the fast ImageNet input"
    if info.kind in ("imagenet", "coco"):
        return "dataloader", f"{info.name} is read from its files as it trains"
    beyond = [vocab.augment_name(a) for a in recipe.augment if vocab.augment_name(a) not in vocab.DEVICE_AUGMENTATIONS]
    if beyond:
        return "dataloader", f"{beyond[0]} is not implemented on the device-resident path"
    if recipe.eval_resize or recipe.eval_crop:
        return "dataloader", ("a test-time resize or crop (eval_resize, eval_crop) is not implemented on the "
                              "device-resident path")
    if info.kind in ("cifar", "svhn", "digits"):
        return "device", "in memory"
    return None, ""


def _beyond_fast_imagenet(recipe: JobRecipe) -> str | None:
    """The first part of the recipe the fast ImageNet input does not implement (None: it does all)."""
    for a in recipe.augment:
        if vocab.augment_name(a) not in vocab.IMAGENET_FAST_AUGMENTATIONS:
            return vocab.augment_name(a)
    if recipe.eval_resize or recipe.eval_crop or recipe.eval_interpolation != "bilinear":
        return "a test-time input other than resize 256 + centre 224"
    return None


def resident(info: datasets.DatasetInfo, recipe: JobRecipe, engine: str, data_dir, download: bool) -> tuple[str, str]:
    """("device" or "dataloader", why): which path a dataset's batches take under ``engine``."""
    path, why = path_by_kind(info, recipe, engine)
    if path:
        return path, why
    info = readers.with_size(info, data_dir, download)
    n = sum(len(readers.open_raw(info, data_dir, train=t, download=download)) for t in (True, False))
    size = n * info.image_size[0] * info.image_size[1] * info.channels
    if size > FAST_MAX_BYTES:
        return "dataloader", (f"{n:,} images of {info.image_size[0]}x{info.image_size[1]}x{info.channels} "
                              f"({size / 2**30:.1f} GiB) exceed the device-resident limit of "
                              f"{FAST_MAX_BYTES / 2**30:.0f} GiB")
    return "device", f"in memory ({size / 2**20:,.1f} MiB)"


def _record(loaders: tuple, info: datasets.DatasetInfo, stats: dict, path: str, why: str) -> tuple:
    """Attach what the run's provenance records of its data to both loaders: the description, the mean/std
    used and where they came from, the training images of the split (before a smoke subset), the path."""
    provenance = {**info.describe(), **stats, "path": path, "path_reason": why,
                  "grey_to_rgb": info.channels == 1 and info.model_channels == 3}
    for loader in loaders:
        loader.data_provenance = provenance
    return loaders


def _subset(x: torch.Tensor, y: torch.Tensor, n: int | None):
    """The smoke budget's images: the same ones as ``readers.subset``."""
    idx = readers.subset_indices(len(y), n)
    return (x, y) if idx is None else (x[idx], y[idx])


def _subset_list(items: list, n: int | None) -> list:
    idx = readers.subset_indices(len(items), n)
    return items if idx is None else [items[i] for i in idx]
