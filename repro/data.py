"""Datasets through their real on-disk formats, and tiny fakes written in those formats.

- CIFAR-10/100: torchvision's ``cifar-10-batches-py`` / ``cifar-100-python`` pickles.
- SVHN: torchvision's ``train_32x32.mat`` / ``test_32x32.mat`` / ``extra_32x32.mat``.
- ImageNet: ``ImageFolder`` layout ``<root>/imagenet/{train,val}/<wnid>/*.JPEG``.
- COCO 2017: ``<root>/coco/{train2017,val2017}`` + ``annotations/instances_{split}.json``.
- digits: scikit-learn's bundled ``load_digits`` (1,797 real 8x8 handwritten digits shipped inside
  the package, no download), made a 32x32 RGB dataset; see ``Digits``.

torchvision checks CIFAR/SVHN files against the official MD5 sums, which a tiny fake cannot
match; we verify the MD5 sums when downloading (``--download``) and otherwise only require
the files to exist, so the same loading path reads real and fake data.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import os
import pickle
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision import datasets, transforms

MEAN_STD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # the digits train split's per-channel mean/std (grey, so all three equal); tests/test_data.py recomputes them
    "digits": ((0.3053, 0.3053, 0.3053), (0.3758, 0.3758, 0.3758)),
}


class DataError(Exception):
    """Missing or unreadable data; the message says how to fix it."""


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """``--data-dir`` beats ``$REPRO_DATA`` beats ``./data``."""
    return Path(explicit or os.environ.get("REPRO_DATA") or "data")


def _without_md5(cls: type) -> type:
    """The torchvision dataset class with its MD5 sums blanked: files must exist, any content."""
    attrs = {}
    if hasattr(cls, "train_list"):
        attrs = {"train_list": [[f, None] for f, _ in cls.train_list],
                 "test_list": [[f, None] for f, _ in cls.test_list], "meta": {**cls.meta, "md5": None}}
    if hasattr(cls, "split_list"):
        attrs = {"split_list": {k: [url, f, None] for k, (url, f, _) in cls.split_list.items()}}
    return type(f"Present{cls.__name__}", (cls,), attrs)


_PRESENT = {"cifar10": _without_md5(datasets.CIFAR10), "cifar100": _without_md5(datasets.CIFAR100),
            "svhn": _without_md5(datasets.SVHN)}
_DOWNLOAD = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100, "svhn": datasets.SVHN}


def _missing(name: str, root: Path, layout: str) -> DataError:
    """Where the files were looked for, and what was expected there (a caller adds how to fix it)."""
    return DataError(f"{name} not found under {root} (expected {layout})")


REQUIRED = {
    "cifar10": ["cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/test_batch", "cifar-10-batches-py/batches.meta"],
    "cifar100": ["cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"],
    "svhn": ["train_32x32.mat", "test_32x32.mat"],
    "imagenet": ["imagenet/train", "imagenet/val"],
    "coco": ["coco/train2017", "coco/val2017", "coco/annotations/instances_train2017.json",
             "coco/annotations/instances_val2017.json"],
    "digits": [],  # shipped inside scikit-learn
}


def missing(dataset: str, root: str | os.PathLike | None, train_split: list[str] = ("train",)) -> DataError | None:
    """A cheap presence check (no loading): the error to report, or None when the files are there."""
    if dataset == "digits":
        return None if importlib.util.find_spec("sklearn") else _NO_SKLEARN
    root = data_root(root)
    needed = list(REQUIRED[dataset]) + (["extra_32x32.mat"] if dataset == "svhn" and "extra" in train_split else [])
    absent = [f for f in needed if not (root / f).exists()]
    return _missing(dataset, root, ", ".join(absent)) if absent else None


_NO_SKLEARN = DataError("the digits dataset comes with scikit-learn, which is not installed. "
                        "Fix: pip install scikit-learn")
DIGITS_TEST = 450  # held-out images (25%), stratified by class
DIGITS_SEED = 0


@functools.lru_cache(maxsize=1)
def _digits_split() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((train_images, train_labels), (test_images, test_labels)), images (N, 32, 32, 3) uint8.

    The 8x8 values 0..16 are scaled to 0..255 (rounded), upsampled 4x by nearest neighbour (each
    pixel becomes a 4x4 block: exact, no interpolation values that depend on a library) and the grey
    channel is replicated to RGB so the CIFAR-stem models apply unchanged. The split is fixed:
    scikit-learn's ``train_test_split(test_size=450, stratify=labels, random_state=0)``, 1,347 train
    / 450 test, each split kept in the file's order.
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as e:
        raise _NO_SKLEARN from e
    digits = load_digits()
    grey = np.round(digits.images * (255 / 16)).astype(np.uint8)  # (1797, 8, 8)
    images = np.repeat(grey.repeat(4, axis=1).repeat(4, axis=2)[..., None], 3, axis=3)  # (1797, 32, 32, 3)
    labels = digits.target.astype(np.int64)
    train, test = train_test_split(np.arange(len(labels)), test_size=DIGITS_TEST, stratify=labels,
                                   random_state=DIGITS_SEED)
    train, test = np.sort(train), np.sort(test)
    return (images[train], labels[train]), (images[test], labels[test])


class Digits(Dataset):
    """The digits split as a torchvision-style dataset: PIL images through ``transform``, like CIFAR
    (``.data`` (N, 32, 32, 3) uint8 and ``.targets`` as CIFAR has them)."""

    def __init__(self, train: bool, transform=None):
        (self.data, self.targets) = _digits_split()[0 if train else 1]
        self.transform = transform
        self.classes = list(range(10))

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        img = Image.fromarray(self.data[i])
        return (self.transform(img) if self.transform else img), int(self.targets[i])


def train_transform(dataset: str, augment: list[str]) -> transforms.Compose:
    ops = []
    for name in augment:
        if name == "random_crop_pad4":
            ops.append(transforms.RandomCrop(32, padding=4))
        elif name == "hflip":
            ops.append(transforms.RandomHorizontalFlip())
        elif name == "rotate15":
            ops.append(transforms.RandomRotation(15))
        elif name == "random_resized_crop":
            ops.append(transforms.RandomResizedCrop(224))
        elif name in ("normalize", "to_unit"):
            continue
        else:
            raise ValueError(f"unknown augmentation {name!r}")
    ops.append(transforms.ToTensor())
    if "normalize" in augment:
        ops.append(transforms.Normalize(*MEAN_STD[dataset]))
    return transforms.Compose(ops)


def test_transform(dataset: str, augment: list[str]) -> transforms.Compose:
    ops = [transforms.Resize(256), transforms.CenterCrop(224)] if dataset == "imagenet" else []
    ops.append(transforms.ToTensor())
    if "normalize" in augment:
        ops.append(transforms.Normalize(*MEAN_STD[dataset]))
    return transforms.Compose(ops)


def load(dataset: str, root: str | os.PathLike | None, *, augment: list[str], train_split: list[str],
         download: bool = False) -> tuple[Dataset, Dataset]:
    root = data_root(root)
    tr, te = train_transform(dataset, augment), test_transform(dataset, augment)
    try:
        if dataset in ("cifar10", "cifar100"):
            cls = (_DOWNLOAD if download else _PRESENT)[dataset]
            return cls(root, train=True, transform=tr, download=download), \
                cls(root, train=False, transform=te, download=download)
        if dataset == "svhn":
            cls = (_DOWNLOAD if download else _PRESENT)[dataset]
            parts = [cls(root, split=s, transform=tr, download=download) for s in train_split]
            train = parts[0] if len(parts) == 1 else torch.utils.data.ConcatDataset(parts)
            return train, cls(root, split="test", transform=te, download=download)
        if dataset == "digits":
            return Digits(True, tr), Digits(False, te)
        if dataset == "imagenet":
            base = root / "imagenet"
            if download:
                raise DataError("ImageNet cannot be downloaded automatically: place it under "
                                f"{base}/train and {base}/val (ImageFolder layout)")
            return datasets.ImageFolder(base / "train", tr), datasets.ImageFolder(base / "val", te)
    except (RuntimeError, FileNotFoundError) as e:
        layouts = {"cifar10": "cifar-10-batches-py/", "cifar100": "cifar-100-python/",
                   "svhn": "train_32x32.mat, test_32x32.mat", "imagenet": "imagenet/{train,val}/<class>/*.JPEG"}
        raise _missing(dataset, root, layouts.get(dataset, "?")) from e
    raise DataError(f"no loader for dataset {dataset!r}")


def arrays(dataset: str, root: str | os.PathLike | None, *, train_split: list[str], download: bool = False
           ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """((train_images, train_labels), (test_images, test_labels)) of a 32x32 dataset as raw arrays for
    the fast data path: images (N, 32, 32, 3) uint8, labels (N,) int64, read by the same dataset
    classes ``load`` uses (so the same files, the same errors, and SVHN's 10 -> 0 label mapping)."""
    if dataset in ("imagenet", "coco"):
        raise DataError(f"{dataset} is not a 32x32 dataset; raw arrays (the fast data path) serve "
                        "cifar10, cifar100, svhn and digits")
    train, test = load(dataset, root, augment=[], train_split=train_split, download=download)
    parts = train.datasets if isinstance(train, torch.utils.data.ConcatDataset) else [train]
    return _raw(parts), _raw([test])


def _raw(parts: list[Dataset]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for ds in parts:
        if hasattr(ds, "labels"):  # SVHN: .data (N, 3, 32, 32), .labels already 0..9
            images.append(np.asarray(ds.data).transpose(0, 2, 3, 1))
            labels.append(np.asarray(ds.labels))
        else:  # CIFAR, digits: .data (N, 32, 32, 3), .targets
            images.append(np.asarray(ds.data))
            labels.append(np.asarray(ds.targets))
    return (torch.from_numpy(np.ascontiguousarray(np.concatenate(images))),
            torch.from_numpy(np.concatenate(labels).astype(np.int64)))


def subset_indices(total: int, n: int | None, seed: int = 0) -> list[int] | None:
    """The first ``n`` indices of a fixed permutation of ``total`` (the smoke budget's few hundred
    images), or None for all of them; both data paths take the same images."""
    if n is None or n >= total:
        return None
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n].tolist()


def subset(ds: Dataset, n: int | None, seed: int = 0) -> Dataset:
    idx = subset_indices(len(ds), n, seed)
    return ds if idx is None else Subset(ds, idx)


# --- tiny fakes in the real on-disk formats ---------------------------------------------

def _images(n: int, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    return rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


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


FAKES = {"cifar10": lambda d: fake_cifar(d, 10), "cifar100": lambda d: fake_cifar(d, 100),
         "svhn": fake_svhn, "imagenet": fake_imagenet, "coco": fake_coco}
