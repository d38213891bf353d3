"""The device-resident data path: any dataset whose uint8 images fit in memory (CIFAR-10/100, SVHN,
digits, MNIST and its kin, a declared image folder or a plugin's dataset of modest size).

The whole uint8 split (N, H, W, C), any size and channel count, is copied to the device once; each batch
is gathered, augmented and normalised with batched tensor ops (the airbench / hlb-CIFAR10 shape). The
augmentations are the reference path's (``repro.data.readers.train_transform``: torchvision PIL transforms),
applied in the order the recipe lists them, with the same distributions:

- ``random_crop_pad4``: RandomCrop((H, W), padding=4): zero padding, offsets uniform over 0..8 x 0..8
  (the padded image is (H+8, W+8) whatever H and W).
- ``hflip``: RandomHorizontalFlip, p = 0.5.
- ``rotate15``: RandomRotation(15): angle uniform in [-15, 15] degrees, counter-clockwise positive,
  about the image centre, nearest interpolation, zero fill (non-square images: see ``rotate``).
- ``normalize``: ToTensor's /255 then Normalize(mean, std); ``to_unit``: /255 only (a marker, as in
  data.py: scaling always happens).

Grey datasets (C = 1) are kept one channel on the device and replicated to RGB after normalisation when
``grey_to_rgb`` (the models' stems take RGB; the reference path does the same with ``data.GreyToRGB``):
crop, flip, rotation and a per-channel normalisation all commute with that replication.

Every random parameter (epoch permutation, offsets, flips, angles) is drawn once per epoch for
all N samples from the caller's CPU ``torch.Generator`` and then moved to the device, so the same
generator state gives the same batches on any device and the global RNG is never touched; nothing
syncs with the host per batch.

Rotation is written here with ``F.grid_sample(mode="nearest", padding_mode="zeros")`` on the grid
torchvision's own tensor ``rotate`` builds (pixel-centre coordinates, ``align_corners=False``),
batched with one matrix per sample, instead of kornia's ``geometry.transform.rotate`` (kornia 0.9.0):
kornia rotates about ((W-1)/2, (H-1)/2) with ``align_corners=True`` by default, another pixel-grid
convention than torchvision's, and kornia requires ``kornia_rs``, a binary wheel the GPU machine
(installed with ``--no-deps``) would have to carry, for a dozen lines of code.
The sampling is then the arithmetic of torchvision's tensor path, which torchvision keeps close to
PIL's; the reference path rotates PIL images, and against it 300 random angles in [-15, 15] agreed
on 99.986% of the pixels (the worst image 99.6%: nearest rounding of a coordinate on a pixel
boundary). tests/test_fastdata.py states the tolerance.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ..train.names import DEVICE_AUGMENTATIONS as AUGMENTATIONS  # noqa: E402  (the one vocabulary)
PAD = 4  # RandomCrop(32, padding=4)
MAX_DEGREES = 15.0  # RandomRotation(15)


def pad_crop(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, pad: int = PAD) -> torch.Tensor:
    """Zero-pad ``pad`` pixels on every side, then take an HxW window at (top, left) per sample.

    x: (N, C, H, W) of any dtype; top, left: (N,) int64 offsets in 0..2*pad (into the padded image,
    as torchvision's RandomCrop draws them). One gather over the flattened padded image instead of
    N slices.
    """
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))  # (N, C, H+2p, W+2p), zeros
    pw = w + 2 * pad
    rows = top.view(n, 1, 1) + torch.arange(h, device=x.device).view(1, h, 1)  # (N, H, 1)
    cols = left.view(n, 1, 1) + torch.arange(w, device=x.device).view(1, 1, w)  # (N, 1, W)
    index = (rows * pw + cols).view(n, 1, h * w).expand(n, c, h * w)  # (N, C, H*W) into the flat padded image
    return padded.flatten(2).gather(2, index).view(n, c, h, w)


def hflip(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror the samples where ``mask`` (N,) bool is True; x: (N, C, H, W)."""
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(-1), x)


def rotate(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate each sample by its angle (degrees, counter-clockwise positive, as torchvision) about the
    image centre; nearest interpolation, zero fill. x: (N, C, H, W) float; angles: (N,)."""
    n, _, h, w = x.shape
    theta = torch.deg2rad(angles.to(x.dtype)).view(n, 1, 1)
    cos, sin = torch.cos(theta), torch.sin(theta)
    # The sampling grid torchvision's tensor rotate builds (F.affine_grid's, align_corners=False):
    # output pixel centres in coordinates normalised to [-1, 1], mapped to their source by the inverse
    # rotation [[cos, -sin], [sin, cos]] (y down). Written out with broadcasting: affine_grid's batched
    # matmul with an inner size of 3 is ~3x slower on CPU. Non-square images: torchvision rotates pixel
    # coordinates (x - w/2, y - h/2) and normalises the source by (w/2, h/2); in normalised output
    # coordinates that is the rotation with its off-diagonal terms scaled by h/w and w/h (1 when square).
    xs = ((torch.arange(w, device=x.device, dtype=x.dtype) * 2 + 1) / w - 1).view(1, 1, w)
    ys = ((torch.arange(h, device=x.device, dtype=x.dtype) * 2 + 1) / h - 1).view(1, h, 1)
    grid = torch.stack([cos * xs - sin * ys * (h / w), sin * xs * (w / h) + cos * ys], -1)  # (N, H, W, 2)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std per channel, the same two ops as transforms.Normalize; x: (N, C, H, W) float."""
    return x.sub(mean.view(1, -1, 1, 1)).div(std.view(1, -1, 1, 1))


def _check_augment(augment: list[str]) -> None:
    for name in augment:
        if name == "random_resized_crop":
            raise ValueError("random_resized_crop is an ImageNet-style augmentation the device-resident path does "
                             "not implement (the DataLoader path does)")
        if name not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {name!r} (the fast data path knows {', '.join(AUGMENTATIONS)})")


class DeviceLoader:
    """The whole uint8 split lives on the device; batches are augmented with batched tensor ops."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int, augment: list[str],
                 mean: tuple[float, ...], std: tuple[float, ...], device: torch.device, train: bool,
                 drop_last: bool = False, channels_last: bool = False, grey_to_rgb: bool = False):
        _check_augment(augment)
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"the device-resident path takes (N, H, W, C) uint8 images, got {tuple(images.shape)} "
                             f"{images.dtype}")
        if not len(mean) == len(std) == images.shape[3]:
            raise ValueError(f"mean and std need one value per channel ({images.shape[3]}), got {len(mean)} and "
                             f"{len(std)}")
        if grey_to_rgb and images.shape[3] != 1:
            raise ValueError(f"grey_to_rgb replicates one channel, the images have {images.shape[3]}")
        if labels.shape != (len(images),):
            raise ValueError(f"labels must be ({len(images)},), got {tuple(labels.shape)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.device = torch.device(device)
        self.images = images.to(self.device)  # (N, H, W, C) uint8, as the dataset stores it
        self.labels = labels.to(self.device, torch.int64)
        # drop_last is the recipe's training option; an evaluation pass always sees every sample
        self.batch_size, self.train, self.drop_last = batch_size, train, drop_last and train
        # evaluation only scales and normalises; training applies the recipe's list in its order
        self.ops = [a for a in augment if a in ("random_crop_pad4", "hflip", "rotate15")] if train else []
        self.normalise, self.grey_to_rgb = "normalize" in augment, grey_to_rgb
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _draw(self, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """All of one epoch's random parameters, drawn on the CPU in a fixed order, then moved once."""
        n = len(self.images)
        params = {"order": torch.randperm(n, generator=gen)}
        for name in self.ops:
            if name == "random_crop_pad4":
                params["top"] = torch.randint(0, 2 * PAD + 1, (n,), generator=gen)
                params["left"] = torch.randint(0, 2 * PAD + 1, (n,), generator=gen)
            elif name == "hflip":
                params["flip"] = torch.rand(n, generator=gen) < 0.5
            elif name == "rotate15":
                params["angle"] = torch.empty(n).uniform_(-MAX_DEGREES, MAX_DEGREES, generator=gen)
        return {k: v.to(self.device, non_blocking=True) for k, v in params.items()}

    def epoch(self, gen: torch.Generator | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass: shuffled and augmented when training (parameters drawn now, from ``gen``), in order
        otherwise. Yields x (B, C, H, W) float32 normalised on the device and y (B,) int64."""
        if self.train:
            if gen is None:
                raise ValueError("a training epoch needs a torch.Generator seeded by (seed, epoch)")
            params = self._draw(gen)
        else:
            params = {"order": torch.arange(len(self.images), device=self.device)}
        return self._batches(params)

    def _batches(self, params: dict[str, torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        b = self.batch_size
        for start in range(0, len(self) * b, b):
            sl = slice(start, start + b)
            idx = params["order"][sl]
            # index_select, not self.images[idx]: advanced indexing of uint8 rows is ~50x slower on CPU
            x = self.images.index_select(0, idx).permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W) uint8
            unit = False
            for name in self.ops:
                if name == "random_crop_pad4":
                    x = pad_crop(x, params["top"][sl], params["left"][sl])
                elif name == "hflip":
                    x = hflip(x, params["flip"][sl])
                elif name == "rotate15":
                    # grid_sample needs floats; nearest sampling copies values, so scaling first is exact
                    x, unit = (x if unit else x.float().div(255)), True
                    x = rotate(x, params["angle"][sl])
            x = x if unit else x.float().div(255)
            if self.normalise:
                x = normalize(x, self.mean, self.std)
            if self.grey_to_rgb:
                x = x.expand(-1, 3, -1, -1)  # (B, 1, H, W) -> (B, 3, H, W); materialised just below
            yield x.contiguous(memory_format=self.memory_format), self.labels.index_select(0, idx)
