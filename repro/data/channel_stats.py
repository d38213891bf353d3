"""A dataset's normalisation when its description has none: computed from the training set, once.

Per stored channel, over every pixel of every training image as stored (after a declared resize, before
any augmentation), scaled to [0, 1]: the mean and the population standard deviation (``correction=0``,
as the built-ins' published constants were computed; tests/test_data.py recomputes digits' this way).
Always the whole training split, never the smoke budget's subset, so a smoke run and a full run normalise
alike.

Computed values are cached in ``<cache dir>/dataset-stats.json`` (``$REPRO_CACHE_DIR`` or the user cache
directory, as ``repro.modelcheck``), keyed by the description and the dataset files' names, sizes and
modification times: the same files are read once, changed files are read again. A plugin dataset is keyed
by the files its ``register_dataset(required=...)`` names, and is not cached without any. A cache that
cannot be written costs time, never correctness. Loaders carry what was used, and where it came from, in
``data_provenance`` for the run's record.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from .datasets import DataError, DatasetInfo, with_stats

CACHE_FILE = "dataset-stats.json"
CHUNK = 4096  # images per accumulation step: bounded float64 memory whatever the dataset's size


def cache_path() -> Path:
    from ..cache import cache_dir

    return cache_dir() / CACHE_FILE


def _files(info: DatasetInfo, root: Path) -> list[Path] | None:
    """The files whose content the statistics depend on (None: unknown, so not cached)."""
    if info.kind == "imagefolder":
        return sorted(p for p in (root / info.path / "train").rglob("*") if p.is_file())
    paths = [root / f for f in info.required]
    if not paths:
        return None
    out = []
    for p in paths:
        out += sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    return out


def fingerprint(info: DatasetInfo, root: str | os.PathLike) -> str | None:
    """The cache key: the description's reading facts and each file's (path, size, mtime)."""
    root = Path(root)
    files = _files(info, root)
    if files is None:
        return None
    h = hashlib.sha256(json.dumps({"name": info.name, "kind": info.kind, "class": info.tv_class, "path": info.path,
                                   "image_size": info.image_size, "resize": info.resize, "channels": info.channels,
                                   "origin": info.origin if info.kind == "plugin" else None},
                                  sort_keys=True).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


class Moments:
    """Per-channel sums of pixels and squared pixels in float64, fed (N, H, W, C) uint8 chunks."""

    def __init__(self, channels: int):
        self.sum, self.sq, self.count = np.zeros(channels), np.zeros(channels), 0

    def add(self, images: np.ndarray) -> None:
        x = images.reshape(-1, images.shape[-1]).astype(np.float64)
        self.sum += x.sum(0)
        self.sq += np.square(x).sum(0)
        self.count += len(x)

    def mean_std(self) -> tuple[list[float], list[float]]:
        mean = self.sum / self.count
        std = np.sqrt(np.maximum(self.sq / self.count - mean ** 2, 0))
        return (mean / 255).tolist(), (std / 255).tolist()


def compute(images) -> tuple[list[float], list[float]]:
    """Mean and std per channel of (N, H, W, C) uint8 images (a tensor, an array, or an iterable of chunks)."""
    if isinstance(images, (torch.Tensor, np.ndarray)):
        images = np.asarray(images)
        chunks = (images[i:i + CHUNK] for i in range(0, len(images), CHUNK))
    else:
        chunks = images
    moments = None
    for chunk in chunks:
        chunk = np.asarray(chunk)
        moments = moments or Moments(chunk.shape[-1])
        moments.add(chunk)
    if moments is None or moments.count == 0:
        raise ValueError("no training images to compute a mean and std from")
    return moments.mean_std()


def _streamed(ds):
    """Chunks of a dataset's images decoded one by one (``readers.Images``): for sets too large to hold."""
    h, w = ds.info.image_size
    for start in range(0, len(ds), CHUNK):
        idx = range(start, min(start + CHUNK, len(ds)))
        yield np.stack([np.asarray(ds.image(i)[0]).reshape(h, w, -1) for i in idx])


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(path: Path, key: str, entry: dict) -> bool:
    from ..cache import write_json_atomically

    return write_json_atomically(path, {**_read_cache(path), key: entry})


def resolve(info: DatasetInfo, root: str | os.PathLike | None, *, download: bool = False,
            train_images: torch.Tensor | None = None) -> tuple[DatasetInfo, dict]:
    """The description with its image size and mean/std filled in, and where they came from.

    ``train_images``: the whole training split as (N, H, W, C) uint8 when the caller already holds it (the
    device-resident path); otherwise the training split is decoded image by image."""
    from . import readers

    root = readers.data_root(root)
    if info.kind in ("imagefolder", "torchvision", "plugin"):
        info = readers.with_size(info, root, download)
    if info.mean is not None:
        how = "published" if info.origin == "built-in" else "declared"
        return info, {"mean": list(info.mean), "std": list(info.std), "mean_std": how}
    key = fingerprint(info, root)
    cache = cache_path()
    hit = _read_cache(cache).get(key) if key else None
    if isinstance(hit, dict) and len(hit.get("mean", ())) == info.channels and len(hit.get("std", ())) == info.channels:
        mean, std, n = hit["mean"], hit["std"], hit.get("images")
        how = f"computed from the {n} training images (cached, {cache})"
    else:
        if train_images is None:
            raw = readers.open_raw(info, root, train=True, download=download)
            mean, std = compute(_streamed(raw))
            n = len(raw)
        else:
            mean, std = compute(train_images)
            n = len(train_images)
        if min(std) == 0:
            raise DataError(f"{info.name}: a channel of the training images is constant (std 0); declare mean "
                            f"and std to normalise it")
        how = f"computed from the {n} training images"
        if key and _write_cache(cache, key, {"dataset": info.name, "mean": mean, "std": std, "images": n}):
            how += f" (cached, {cache})"
        elif not key:
            how += " (not cached: the dataset names no files to key it by)"
    return with_stats(info, mean, std), {"mean": mean, "std": std, "mean_std": how}
