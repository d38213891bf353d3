"""Tiny fakes of every dataset kind, written in the real on-disk format, so the real loading code reads
them (``repro data fake``, the tests, a smoke run without the real data).

- CIFAR-10/100: the official python pickles' layout; SVHN: the ``.mat`` files; ImageNet: JPEGs in the
  ImageFolder layout; COCO 2017: images and ``instances_{split}.json``.
- ``imagefolder``: PNG files in ``<path>/{train,test}/<class>/``.
- ``torchvision``: what torchvision 0.29 reads: MNIST, FashionMNIST and KMNIST as uncompressed idx files in
  ``<Class>/raw/`` (``train-images-idx3-ubyte``, ...); QMNIST as ``QMNIST/raw/qmnist-{train,test}-images-
  idx3-ubyte`` with ``labels-idx2-int`` (int32, 8 columns, the class first); USPS as ``usps.bz2`` /
  ``usps.t.bz2`` (libsvm text, labels 1..10, pixels in [-1, 1]); CIFAR10/CIFAR100 as above.
- ``plugin``: the plugin's own ``fake`` function.
"""
from __future__ import annotations

import bz2
import json
import os
import pickle
from pathlib import Path

import numpy as np

from .datasets import DataError, DatasetInfo


def _images(n: int, rng: np.random.Generator, size: int = 32, channels: int = 3,
            width: int | None = None) -> np.ndarray:
    return rng.integers(0, 256, size=(n, size, width or size, channels), dtype=np.uint8)


def fake_cifar(root: str | os.PathLike, classes: int = 100, train: int = 500, test: int = 100, seed: int = 0) -> Path:
    """Write a tiny CIFAR-10/100 exactly as the official python pickles are laid out."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    if classes == 100:
        folder, files, label_key, meta = root / "cifar-100-python", [("train", train), ("test", test)], \
            "fine_labels", ("meta", {"fine_label_names": [f"class{i}" for i in range(100)],
                                     "coarse_label_names": [f"super{i}" for i in range(20)]})
    else:
        per = max(train // 5, 1)
        folder, files, label_key, meta = root / "cifar-10-batches-py", \
            [(f"data_batch_{i}", per) for i in range(1, 6)] + [("test_batch", test)], \
            "labels", ("batches.meta", {"label_names": [f"class{i}" for i in range(10)]})
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in files:
        labels = (np.arange(n) % classes).tolist()
        entry = {"data": _images(n, rng).transpose(0, 3, 1, 2).reshape(n, -1), label_key: labels,
                 "filenames": [f"img{i}.png" for i in range(n)]}
        if classes == 100:
            entry["coarse_labels"] = [label // 5 for label in labels]
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    with open(folder / meta[0], "wb") as f:
        pickle.dump(meta[1], f)
    return folder


def fake_svhn(root: str | os.PathLike, train: int = 200, test: int = 100, extra: int = 100, seed: int = 0) -> Path:
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("test", test), ("extra", extra)):
        X = _images(n, rng).transpose(1, 2, 3, 0)  # (32, 32, 3, N) as in the .mat files
        y = (np.arange(n) % 10 + 1).reshape(-1, 1).astype(np.uint8)  # labels 1..10, '10' is digit 0
        savemat(root / f"{split}_32x32.mat", {"X": X, "y": y})
    return root


def fake_imagenet(root: str | os.PathLike, classes: int = 4, per_class: int = 4, size: int = 64, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = Path(root) / "imagenet"
    for split in ("train", "val"):
        for c in range(classes):
            d = base / split / f"n{c:08d}"
            d.mkdir(parents=True, exist_ok=True)
            for i, img in enumerate(_images(per_class, rng, size)):
                Image.fromarray(img).save(d / f"n{c:08d}_{i}.JPEG", format="JPEG")
    return base


def fake_coco(root: str | os.PathLike, images: int = 4, size: int = 128, seed: int = 0) -> Path:
    """COCO 2017 layout: images plus instances_{split}.json with boxes and categories."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = Path(root) / "coco"
    (base / "annotations").mkdir(parents=True, exist_ok=True)
    cats = [{"id": i, "name": f"cat{i}", "supercategory": "thing"} for i in (1, 2, 3)]
    for split in ("train2017", "val2017"):
        (base / split).mkdir(parents=True, exist_ok=True)
        imgs, anns = [], []
        for i in range(images):
            name = f"{i:012d}.jpg"
            Image.fromarray(_images(1, rng, size)[0]).save(base / split / name, format="JPEG")
            imgs.append({"id": i + 1, "file_name": name, "width": size, "height": size})
            x, y = rng.integers(0, size // 2, 2).tolist()
            w, h = rng.integers(8, size // 2, 2).tolist()
            anns.append({"id": i + 1, "image_id": i + 1, "category_id": cats[i % 3]["id"], "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": 0})
        with open(base / "annotations" / f"instances_{split}.json", "w") as f:
            json.dump({"images": imgs, "annotations": anns, "categories": cats}, f)
    return base


def fake_imagefolder(root: str | os.PathLike, path: str, classes: int, size: tuple[int, int] = (32, 32),
                     train: int = 300, test: int = 100, seed: int = 0) -> Path:
    """PNG files in ``<root>/<path>/{train,test}/class<i>/``, images cycling through the classes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = Path(root) / path
    width = len(str(classes - 1))
    for split, n in (("train", max(train, classes)), ("test", max(test, classes))):
        for c in range(classes):
            (base / split / f"class{c:0{width}d}").mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(_images(n, rng, size[0], 3, size[1])):
            c = i % classes
            Image.fromarray(img).save(base / split / f"class{c:0{width}d}" / f"{i:05d}.png")
    return base


def write_idx(path: Path, array: np.ndarray) -> None:
    """An idx file (LeCun's MNIST format): magic (0, 0, type, ndim), big-endian int32 dims, big-endian data."""
    types = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C}
    header = bytes([0, 0, types[array.dtype], array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(array.dtype.newbyteorder(">")).tobytes())


def fake_torchvision(root: str | os.PathLike, tv_class: str, train: int = 300, test: int = 100, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root = Path(root)
    if tv_class in ("CIFAR10", "CIFAR100"):
        return fake_cifar(root, 10 if tv_class == "CIFAR10" else 100, train, test, seed)
    if tv_class == "USPS":  # libsvm text: "<label 1..10> 1:<v> ... 256:<v>", v in [-1, 1]
        root.mkdir(parents=True, exist_ok=True)
        for name, n in (("usps.bz2", train), ("usps.t.bz2", test)):
            pixels = _images(n, rng, 16, 1).reshape(n, 256) / 255 * 2 - 1
            lines = [f"{i % 10 + 1} " + " ".join(f"{j + 1}:{v:.6f}" for j, v in enumerate(row))
                     for i, row in enumerate(pixels)]
            (root / name).write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))
        return root
    raw = root / tv_class / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("test", test)):
        images, labels = _images(n, rng, 28, 1)[..., 0], (np.arange(n) % 10)
        if tv_class == "QMNIST":  # labels: (N, 8) int32, the class in column 0
            columns = np.zeros((n, 8), dtype=np.int32)
            columns[:, 0] = labels
            write_idx(raw / f"qmnist-{split}-images-idx3-ubyte", images)
            write_idx(raw / f"qmnist-{split}-labels-idx2-int", columns)
        elif tv_class in ("MNIST", "FashionMNIST", "KMNIST"):
            prefix = "train" if split == "train" else "t10k"
            write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
            write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8))
        else:
            raise DataError(f"no fake writer for torchvision {tv_class}")
    return root / tv_class


def write(info: DatasetInfo, root: str | os.PathLike) -> Path:
    """A tiny copy of any registered or declared dataset under ``root``, in its real on-disk format."""
    root = Path(root)
    if info.kind == "cifar":
        return fake_cifar(root, info.num_classes)
    if info.kind == "svhn":
        return fake_svhn(root)
    if info.kind == "imagenet":
        return fake_imagenet(root)
    if info.kind == "coco":
        return fake_coco(root)
    if info.kind == "digits":
        raise DataError("digits needs no files: scikit-learn ships it")
    if info.kind == "imagefolder":
        return fake_imagefolder(root, info.path, info.num_classes, info.image_size or (32, 32))
    if info.kind == "torchvision":
        return fake_torchvision(root / info.path if info.path else root, info.tv_class)
    if info.fake is None:
        raise DataError(f"{info.name} ({info.origin}) has no fake writer: its register_dataset names no fake=")
    return Path(info.fake(root) or root)
