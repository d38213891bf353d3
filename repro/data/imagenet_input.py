"""The fast ImageNet input path (``--engine fast``, dataset ``imagenet``): libjpeg-turbo decoding through
``torchvision.io``, crop-then-resize on uint8 in the ``DataLoader`` workers, flip and normalisation on
the device. The reference engine keeps torchvision's PIL transforms (``repro.data.readers``) as the oracle;
tests/test_imagenet_input.py holds this path against it.

- Decoding: ``torchvision.io.decode_image(mode=RGB)``, libjpeg-turbo with the same IDCT (ISLOW) and
  chroma upsampling as Pillow's, so the pixels equal PIL's ``convert("RGB")``: identical on RGB, grey
  and Adobe CMYK JPEGs as measured (grey is replicated, CMYK converted as PIL does). Non-JPEG files
  (ImageNet's train set holds a PNG named .JPEG) decode too. No EXIF rotation, as ImageFolder.
- Training: RandomResizedCrop(224) (scale (0.08, 1), ratio (3/4, 4/3), 10 attempts, then the central
  fallback) and RandomHorizontalFlip (p 0.5), drawn per sample in torchvision's order from a generator
  seeded by ``epoch_batches.sample_seed(index, epoch base)``, the seed the reference path gives the torch RNG
  for the same sample: both paths draw the same crop box and flip for every sample of every epoch. Only
  the crop is resized, by torchvision's tensor kernel (antialiased bilinear on uint8).
- Validation: Resize(256) (shorter side) + CenterCrop(224), the same tensor kernel.
- Batches leave the workers as uint8 (N, 3, 224, 224) in channels-last memory (the resize kernel's own
  layout), a quarter of float32's bytes through shared memory, pinned memory and the host-to-device
  copy; flip, /255 and Normalize run on the device in ``epoch()``, the same arithmetic in the same order
  as RandomHorizontalFlip, ToTensor and Normalize.

Deliberate deviation from the reference: the resize is torchvision's tensor kernel, not Pillow's. Both
are antialiased bilinear with the same support, but round differently: against Pillow on the same
pixels most values agree and the rest differ by 1 level (tests state the tolerance).

``decode="cuda"``: the workers only read the files; nvJPEG decodes each batch on the GPU and the same
seeded draws crop and resize there (float resize, rounded to uint8). nvJPEG's IDCT and upsampling are not
libjpeg-turbo's, so pixels differ by a few levels: the decode mode is provenance (``loader.decode``).

Not used: Pillow's reduced-scale decoding (``Image.draft``). It decodes at 1/2, 1/4 or 1/8 scale only
when the crop is at least 2x the output on both sides: a 224 crop needs 448 px of the source, which an
ImageNet-size image (about 500x375) rarely has after RandomResizedCrop and never for Resize(256).
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.io import ImageReadMode, decode_image, decode_jpeg, read_file
from torchvision.transforms.v2 import functional as TF

from . import datasets
from .fastdata import hflip
from .epoch_batches import EpochBatches, sample_seed

SIZE, RESIZE = 224, 256  # RandomResizedCrop(224); Resize(256) + CenterCrop(224)
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)
LOG_RATIO = torch.log(torch.tensor(RATIO))  # float32, as get_params computes it
DECODERS = ("cpu", "cuda")
from ..train.names import IMAGENET_FAST_AUGMENTATIONS as AUGMENTATIONS  # noqa: E402  (the one vocabulary)


def decode(encoded: torch.Tensor) -> torch.Tensor:
    """File bytes (1-D uint8) -> (3, H, W) uint8 RGB, as PIL's ``Image.open(f).convert("RGB")``."""
    return decode_image(encoded, mode=ImageReadMode.RGB)


def crop_params(height: int, width: int, gen: torch.Generator) -> tuple[int, int, int, int]:
    """(top, left, h, w): ``RandomResizedCrop.get_params`` line for line, its draws from ``gen``."""
    area = height * width
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(SCALE[0], SCALE[1], generator=gen).item()
        aspect_ratio = torch.exp(torch.empty(1).uniform_(LOG_RATIO[0], LOG_RATIO[1], generator=gen)).item()
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = torch.randint(0, height - h + 1, size=(1,), generator=gen).item()
            left = torch.randint(0, width - w + 1, size=(1,), generator=gen).item()
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(RATIO):
        w, h = width, int(round(width / min(RATIO)))
    elif in_ratio > max(RATIO):
        w, h = int(round(height * max(RATIO))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def draw(height: int, width: int, seed: int, flip: bool) -> tuple[tuple[int, int, int, int], bool]:
    """One training sample's crop box and flip, in the reference transforms' order of draws."""
    gen = torch.Generator().manual_seed(seed)
    box = crop_params(height, width, gen)
    return box, flip and bool(torch.rand(1, generator=gen) < 0.5)


def resized_crop(img: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """(3, H, W) uint8 -> (3, 224, 224) uint8, ``TF.resized_crop`` exactly: only the crop is resized."""
    top, left, h, w = box
    # torch's uint8 kernel works on channels-last rows: a crop of the decoder's (H, W, 3) buffer is not
    # one until copied, and the copy costs less than the kernel's repacking of any other layout (-20%)
    crop = img[:, top:top + h, left:left + w].unsqueeze(0).contiguous(memory_format=torch.channels_last)
    return TF.resize(crop, [SIZE, SIZE], antialias=True)[0]


def center(img: torch.Tensor) -> torch.Tensor:
    """Resize(256) then CenterCrop(224) of a (3, H, W) uint8 image."""
    return TF.center_crop(TF.resize(img, [RESIZE], antialias=True), [SIZE, SIZE])


def _check_augment(augment: list[str]) -> None:
    unknown = [a for a in augment if a not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation {unknown[0]!r} for ImageNet (the fast path knows "
                         f"{', '.join(AUGMENTATIONS)})")
    geometric = [a for a in augment if a in ("random_resized_crop", "hflip")]
    if geometric not in (["random_resized_crop"], ["random_resized_crop", "hflip"]):
        raise ValueError(f"the fast ImageNet path applies random_resized_crop, then optionally hflip; got "
                         f"{augment} (use the reference engine)")


def _check_decode(decode: str, device: torch.device) -> None:
    if decode not in DECODERS:
        raise ValueError(f"unknown decode {decode!r}: use cpu or cuda")
    if decode == "cuda" and device.type != "cuda":
        raise ValueError(f"decode='cuda' needs a CUDA device to train on, got {device}")


class JpegSamples(Dataset):
    """Keys ``(index, base)`` -> (uint8 (224, 224, 3), label, flip): decoded, cropped and resized here.
    Channels last, the layout the resize kernel writes: batches stack without a transpose."""

    def __init__(self, samples: list[tuple[str, int]], train: bool, flip: bool):
        self.samples, self.train, self.flip = samples, train, flip

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]):
        index, base = key
        path, label = self.samples[index]
        img = decode(read_file(str(path)))
        if not self.train:
            return center(img).permute(1, 2, 0).contiguous(), label, False
        box, flip = draw(img.shape[1], img.shape[2], sample_seed(index, base), self.flip)
        return resized_crop(img, box).permute(1, 2, 0).contiguous(), label, flip


class JpegFiles(Dataset):
    """``decode="cuda"``: keys -> (file bytes, label, sample seed); the GPU decodes and crops."""

    def __init__(self, samples: list[tuple[str, int]]):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]):
        index, base = key
        path, label = self.samples[index]
        return read_file(str(path)), label, sample_seed(index, base)


def _file_batch(batch):
    """Collate variable-length file bytes as a list (the default collate would stack them)."""
    files, labels, seeds = zip(*batch)
    return list(files), torch.tensor(labels, dtype=torch.int64), list(seeds)


class ImageNetLoader:
    """One loader for the run (persistent workers survive epochs); ``epoch(gen)`` yields (x, y) on the
    device, x float32 (B, 3, 224, 224) normalised (or only /255 without ``normalize``), y (B,) int64."""

    def __init__(self, samples: list[tuple[str, int]], *, batch_size: int, train: bool, augment: list[str],
                 device: torch.device, workers: int = 0, decode: str = "cpu", drop_last: bool = False,
                 channels_last: bool = False):
        _check_augment(augment)
        device = torch.device(device)
        _check_decode(decode, device)
        self.device, self.train, self.decode = device, train, decode
        self.flip = train and "hflip" in augment
        self.sampler = EpochBatches(len(samples), batch_size, shuffle=train, drop_last=drop_last and train)
        ds = JpegSamples(samples, train, self.flip) if decode == "cpu" else JpegFiles(samples)
        self.loader = DataLoader(ds, batch_sampler=self.sampler, num_workers=workers,
                                 collate_fn=None if decode == "cpu" else _file_batch,
                                 pin_memory=decode == "cpu" and device.type == "cuda",
                                 persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
                                 # its own generator for the workers' seeds (unused: every draw is seeded per
                                 # sample), so that an epoch leaves the global RNG (dropout's) alone
                                 generator=torch.Generator())
        imagenet = datasets.get("imagenet")
        mean, std = imagenet.mean, imagenet.std
        self.normalise = "normalize" in augment
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device)
        self.std = torch.tensor(std, dtype=torch.float32, device=device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __len__(self) -> int:
        return len(self.sampler)

    def epoch(self, gen: torch.Generator | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass: the order and the epoch's base seed come from ``gen`` (training), in order otherwise."""
        if self.train and gen is None:
            raise ValueError("a training epoch needs a torch.Generator seeded by (seed, epoch)")
        self.sampler.gen = gen if self.train else None
        return self._batches()

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.loader:
            x, y, flip = self._on_device(batch) if self.decode == "cpu" else self._gpu_decode(batch)
            x = x.contiguous(memory_format=self.memory_format)  # on uint8, the cheapest place
            if self.flip:
                x = hflip(x, flip)
            # ToTensor's /255 then Normalize's sub and div, in place: on a CPU device fresh float
            # batches cost more in page faults than the arithmetic
            x = x.float().div_(255)
            if self.normalise:
                x.sub_(self.mean.view(1, -1, 1, 1)).div_(self.std.view(1, -1, 1, 1))
            yield x, y

    def _on_device(self, batch):
        x, y, flip = batch  # x (B, 224, 224, 3) uint8
        return (x.to(self.device, non_blocking=True).permute(0, 3, 1, 2), y.to(self.device, non_blocking=True),
                flip.to(self.device, non_blocking=True))

    def _gpu_decode(self, batch):
        files, y, seeds = batch
        try:
            images = decode_jpeg(files, mode=ImageReadMode.RGB, device=self.device)
        except RuntimeError:  # nvJPEG refuses CMYK and non-JPEG files (a few in ImageNet): this batch on the CPU
            images = [decode(f).to(self.device) for f in files]
        if not self.train:
            out, flips = [center(img) for img in images], [False] * len(images)
        else:
            draws = [draw(img.shape[1], img.shape[2], seed, self.flip) for img, seed in zip(images, seeds)]
            out, flips = [resized_crop(img, box) for img, (box, _) in zip(images, draws)], [f for _, f in draws]
        return (torch.stack(out), y.to(self.device, non_blocking=True),
                torch.tensor(flips).to(self.device, non_blocking=True))
