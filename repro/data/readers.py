"""Datasets through their real on-disk formats (tiny fakes of each: ``repro.data.fakes``).

What each dataset is (classes, image size, normalisation, files) is ``repro.data.datasets``'s registry; this
module reads the files, by the description's ``kind``:

- CIFAR-10/100 (``cifar``): torchvision's ``cifar-10-batches-py`` / ``cifar-100-python`` pickles, read
  through a restricted unpickler (``repro.data.safe_pickle``): a hostile file cannot run code.
- SVHN: torchvision's ``train_32x32.mat`` / ``test_32x32.mat`` / ``extra_32x32.mat``.
- ImageNet: ``ImageFolder`` layout ``<root>/imagenet/{train,val}/<wnid>/*.JPEG``.
- COCO 2017: ``<root>/coco/{train2017,val2017}`` + ``annotations/instances_{split}.json`` (``repro.train.detect``).
- digits: scikit-learn's bundled ``load_digits`` (1,797 real 8x8 handwritten digits shipped inside
  the package, no download), made a 32x32 RGB dataset; see ``Digits``.
- ``imagefolder`` (declared by a paper): ``<root>/<path>/{train,test}/<class>/<image>``, any format PIL
  reads, loaded as RGB (torchvision's ``ImageFolder``); class indices follow the sorted folder names.
- ``torchvision`` (declared by a paper): one of ``datasets.TORCHVISION``, its own files under ``<root>``
  (or ``<root>/<path>``); grey images stay one channel.
- ``plugin``: the registered function's dataset.

A declared ``image_size`` resizes every image once as it is read (shorter side to the size, bilinear, then
the centre square), before any augmentation, in both engines. Without one, every image must have the
first training image's size. torchvision checks CIFAR/SVHN files against the official MD5 sums, which a
tiny fake cannot match; we verify the MD5 sums when downloading (``--download``) and otherwise only
require the files to exist, so the same loading path reads real and fake data.
"""
from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision import datasets as tv, transforms
from torchvision.transforms import v2
from torchvision.datasets.utils import check_integrity
from torchvision.datasets.vision import VisionDataset

from . import safe_pickle
from .datasets import DataError, DatasetInfo, get
from ..train import names as vocab
from .fakes import fake_cifar, fake_coco, fake_imagenet, fake_svhn  # noqa: F401  (their historical home)


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """``--data-dir`` beats ``$REPRO_DATA`` beats ``./data``."""
    return Path(explicit or os.environ.get("REPRO_DATA") or "data")


def info_of(dataset: str | DatasetInfo) -> DatasetInfo:
    return dataset if isinstance(dataset, DatasetInfo) else get(dataset)


# --- CIFAR without pickle's code execution ----------------------------------------------------

class _SafeCIFAR:
    """torchvision's CIFAR10/CIFAR100 ``__init__`` and ``_load_meta``, line for line, with each pickle read by
    ``safe_pickle.load`` instead of ``pickle.load``; the entries are checked to be what the format holds."""

    def __init__(self, root, train: bool = True, transform=None, target_transform=None, download: bool = False):
        VisionDataset.__init__(self, root, transform=transform, target_transform=target_transform)
        self.train = train
        if download:
            self.download()
        if not self._check_integrity():
            raise RuntimeError("Dataset not found or corrupted. You can use download=True to download it")
        data, self.targets = [], []
        for file_name, _ in self.train_list if train else self.test_list:
            path = os.path.join(self.root, self.base_folder, file_name)
            entry = safe_pickle.load(path)
            entry = entry if isinstance(entry, dict) else {}
            labels = entry.get("labels", entry.get("fine_labels"))
            if (not isinstance(entry.get("data"), np.ndarray) or entry["data"].dtype != np.uint8
                    or entry["data"].ndim != 2 or entry["data"].shape[1] != 3072 or not isinstance(labels, list)
                    or len(labels) != len(entry["data"]) or not all(type(y) is int for y in labels)):
                raise DataError(f"{path}: not a CIFAR batch (expected 'data' uint8 (N, 3072) and N int labels)")
            data.append(entry["data"])
            self.targets.extend(labels)
        self.data = np.vstack(data).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))  # HWC
        self._load_meta()

    def _load_meta(self) -> None:
        path = os.path.join(self.root, self.base_folder, self.meta["filename"])
        if not check_integrity(path, self.meta["md5"]):
            raise RuntimeError("Dataset metadata file not found or corrupted. You can use download=True to download it")
        meta = safe_pickle.load(path)
        if not isinstance(meta, dict) or not isinstance(meta.get(self.meta["key"]), list):
            raise DataError(f"{path}: not a CIFAR meta file (expected {self.meta['key']!r})")
        self.classes = meta[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


def _without_md5(cls: type) -> type:
    """The torchvision dataset class with its MD5 sums blanked: files must exist, any content."""
    attrs = {}
    if hasattr(cls, "train_list"):
        attrs = {"train_list": [[f, None] for f, _ in cls.train_list],
                 "test_list": [[f, None] for f, _ in cls.test_list], "meta": {**cls.meta, "md5": None}}
    if hasattr(cls, "split_list"):
        attrs = {"split_list": {k: [url, f, None] for k, (url, f, _) in cls.split_list.items()}}
    return type(f"Present{cls.__name__}", (cls,), attrs)


SafeCIFAR10 = type("SafeCIFAR10", (_SafeCIFAR, tv.CIFAR10), {})
SafeCIFAR100 = type("SafeCIFAR100", (_SafeCIFAR, tv.CIFAR100), {})
_DOWNLOAD = {"cifar10": SafeCIFAR10, "cifar100": SafeCIFAR100, "svhn": tv.SVHN,
             "CIFAR10": SafeCIFAR10, "CIFAR100": SafeCIFAR100}
_PRESENT = {k: _without_md5(v) for k, v in _DOWNLOAD.items()}


def _missing(name: str, root: Path, layout: str) -> DataError:
    """Where the files were looked for, and what was expected there (a caller adds how to fix it)."""
    return DataError(f"{name} not found under {root} (expected {layout})")


def missing(dataset: str | DatasetInfo, root: str | os.PathLike | None,
            train_split: list[str] = ("train",)) -> DataError | None:
    """A cheap presence check (no loading): the error to report, or None when the files are there."""
    info = info_of(dataset)
    if info.kind == "digits":
        return None if importlib.util.find_spec("sklearn") else _NO_SKLEARN
    root = data_root(root)
    needed = list(info.required) + (["extra_32x32.mat"] if info.kind == "svhn" and "extra" in train_split else [])
    absent = [f for f in needed if not (root / f).exists()]
    return _missing(info.name, root, ", ".join(absent)) if absent else None


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


# --- declared and plugin datasets: one reading wrapper ----------------------------------------

def resize_square(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Shorter side to the size (bilinear, antialiased), then the centre crop: a declared image_size."""
    return transforms.CenterCrop(size)(transforms.Resize(min(size))(img))


class Images(Dataset):
    """(image, label) of an underlying dataset as the model's loaders expect them: a PIL image in the stored
    mode (``L`` grey, ``RGB``), resized once when the declaration says so, else checked to have the dataset's
    size; then ``transform``. ``ds`` yields PIL images or uint8 tensors (C, H, W), and int labels."""

    def __init__(self, ds: Dataset, info: DatasetInfo, transform=None):
        self.ds, self.info, self.transform = ds, info, transform
        self.mode = {1: "L", 3: "RGB"}.get(info.channels)
        self.classes = getattr(ds, "classes", None)

    def __len__(self) -> int:
        return len(self.ds)

    def _where(self, i: int) -> str:
        samples = getattr(self.ds, "samples", None)
        return samples[i][0] if samples else f"{self.info.name} image {i}"

    def image(self, i: int) -> tuple[Image.Image, int]:
        img, label = self.ds[i]
        if isinstance(img, torch.Tensor):
            if img.dtype != torch.uint8 or img.dim() != 3:
                raise DataError(f"{self._where(i)}: a tensor image must be uint8 (C, H, W), got {img.dtype} "
                                f"{tuple(img.shape)}")
            img = Image.fromarray(img.permute(1, 2, 0).squeeze(-1).numpy() if img.shape[0] == 1
                                  else img.permute(1, 2, 0).numpy())
        if self.mode and img.mode != self.mode:
            img = img.convert(self.mode)
        size = self.info.image_size
        if self.info.resize:
            img = resize_square(img, size)
        elif size is not None and img.size != (size[1], size[0]):
            fix = ("the plugin's register_dataset(image_size=...) must be every image's (height, width)"
                   if self.info.kind == "plugin" else "declare image_size to resize every image")
            raise DataError(f"{self._where(i)}: {img.size[0]}x{img.size[1]} (width x height), but {self.info.name} "
                            f"images are {size[1]}x{size[0]}; {fix}")
        label = int(label)
        if not 0 <= label < self.info.num_classes:
            raise DataError(f"{self._where(i)}: label {label} outside 0..{self.info.num_classes - 1} "
                            f"(num_classes {self.info.num_classes})")
        return img, label

    def __getitem__(self, i: int):
        img, label = self.image(i)
        return (self.transform(img) if self.transform else img), label


def _image_folder(info: DatasetInfo, root: Path, train: bool) -> tv.ImageFolder:
    folder = root / info.path / ("train" if train else "test")
    try:
        ds = tv.ImageFolder(folder)
    except (FileNotFoundError, OSError) as e:
        raise DataError(f"{info.name}: cannot read {folder}: {e}") from None
    if len(ds.classes) != info.num_classes:
        raise DataError(f"{folder}: {len(ds.classes)} class folders, but {info.name} declares num_classes "
                        f"{info.num_classes}")
    return ds


def open_raw(info: DatasetInfo, root: str | os.PathLike | None, *, train: bool, download: bool = False) -> Images:
    """An imagefolder, torchvision or plugin dataset's split as stored (PIL images, int labels)."""
    root = data_root(root)
    if info.kind == "imagefolder":
        ds = _image_folder(info, root, train)
        if not train:  # class indices come from folder names: both splits must name the same classes
            classes = _image_folder(info, root, True).classes
            if ds.classes != classes:
                raise DataError(f"{root / info.path}: train and test hold different class folders "
                                f"({sorted(set(classes) ^ set(ds.classes))[:5]}); indices would not match")
    elif info.kind == "torchvision":
        base = root / info.path if info.path else root
        cls = (_DOWNLOAD if download else _PRESENT).get(info.tv_class) or getattr(tv, info.tv_class)
        try:
            ds = cls(base, train=train, download=download)
        except (RuntimeError, FileNotFoundError, OSError) as e:
            raise _missing(info.name, base, ", ".join(info.required) or info.tv_class) from e
    elif info.kind == "plugin":
        ds = info.reader(root, train, download)
    else:
        raise DataError(f"{info.name} ({info.kind}) is not read through open_raw")
    return Images(ds, info)


def with_size(info: DatasetInfo, root: str | os.PathLike | None, download: bool = False) -> DatasetInfo:
    """The description with its image size: an imagefolder without a declared one takes the first training
    image's (every other image must match)."""
    if info.image_size is not None:
        return info
    img, _ = open_raw(info, root, train=True, download=download).image(0)
    return replace(info, image_size=(img.size[1], img.size[0]))


# --- transforms (the reference path) -----------------------------------------------------------

class GreyToRGB:
    """(1, H, W) -> (3, H, W): the model's stem takes RGB; applied last, after normalisation."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(3, -1, -1) if x.shape[0] == 1 else x


def train_transform(dataset: str | DatasetInfo, augment: list) -> transforms.Compose:
    """The recipe's augmentations in its order: image-level ones before ``ToTensor``, then normalisation,
    then tensor-level ones (random erasing, on the normalised tensor as timm and torchvision do). Each entry
    is a name or ``{name: {parameters}}`` (``repro.train.names``); every draw comes from torch's RNG, which
    the loaders seed per (sample, epoch)."""
    info = info_of(dataset)
    size = info.image_size
    ops, tensor_ops = [], []
    for entry in augment:
        name, params = vocab.augment_name(entry), vocab.augment_params(entry)
        if name == "random_crop_pad4":
            ops.append(transforms.RandomCrop(size, padding=4))
        elif name == "hflip":
            ops.append(transforms.RandomHorizontalFlip())
        elif name == "rotate15":
            ops.append(transforms.RandomRotation(15))
        elif name == "random_resized_crop":
            ops.append(transforms.RandomResizedCrop(size))
        elif name in ("normalize", "to_unit"):
            continue
        elif name == "randaugment":
            ops.append(v2.RandAugment(**params))
        elif name == "autoaugment":
            ops.append(v2.AutoAugment(v2.AutoAugmentPolicy(params["policy"])))
        elif name == "trivialaugment":
            ops.append(v2.TrivialAugmentWide(**params))
        elif name == "color_jitter":
            ops.append(v2.ColorJitter(**{k: v for k, v in params.items() if v}))
        elif name == "random_erasing":
            tensor_ops.append(v2.RandomErasing(p=params["p"], scale=tuple(params["scale"]),
                                               ratio=tuple(params["ratio"]), value=0))
        else:
            raise ValueError(f"unknown augmentation {name!r}")
    return transforms.Compose(ops + _tensor_ops(info, augment) + tensor_ops)


def test_transform(dataset: str | DatasetInfo, augment: list, evaluation: dict | None = None) -> transforms.Compose:
    """The test input: ImageNet's resize 256 + centre 224 unless the recipe says otherwise
    (``eval_resize``, ``eval_crop``, ``eval_interpolation``)."""
    info = info_of(dataset)
    evaluation = evaluation or {}
    resize, crop = evaluation.get("eval_resize"), evaluation.get("eval_crop")
    if info.kind == "imagenet":
        resize, crop = resize or 256, crop or 224
    mode = transforms.InterpolationMode(evaluation.get("eval_interpolation") or "bilinear")
    ops = ([transforms.Resize(resize, interpolation=mode)] if resize else []) + (
        [transforms.CenterCrop(crop)] if crop else [])
    return transforms.Compose(ops + _tensor_ops(info, augment))


def _tensor_ops(info: DatasetInfo, augment: list[str]) -> list:
    ops = [transforms.ToTensor()]
    if "normalize" in augment:
        if info.mean is None:
            raise ValueError(f"{info.name}: mean/std not resolved yet (repro.data.channel_stats.resolve computes them)")
        ops.append(transforms.Normalize(info.mean, info.std))
    return ops + ([GreyToRGB()] if info.channels == 1 else [])


# --- splits ------------------------------------------------------------------------------------

def load(dataset: str | DatasetInfo, root: str | os.PathLike | None, *, augment: list, train_split: list[str],
         download: bool = False, evaluation: dict | None = None) -> tuple[Dataset, Dataset]:
    """(train, test) datasets of (transformed image, label). A declared or plugin dataset's description
    must be complete (image size and mean/std known: ``repro.data.channel_stats.resolve``)."""
    info = info_of(dataset)
    root = data_root(root)
    tr, te = train_transform(info, augment), test_transform(info, augment, evaluation)
    if info.kind in ("imagefolder", "torchvision", "plugin"):
        train, test = open_raw(info, root, train=True, download=download), open_raw(info, root, train=False,
                                                                                 download=download)
        train.transform, test.transform = tr, te
        return train, test
    dataset = info.name
    try:
        if info.kind == "cifar":
            cls = (_DOWNLOAD if download else _PRESENT)[dataset]
            return cls(root, train=True, transform=tr, download=download), \
                cls(root, train=False, transform=te, download=download)
        if info.kind == "svhn":
            cls = (_DOWNLOAD if download else _PRESENT)[dataset]
            parts = [cls(root, split=s, transform=tr, download=download) for s in train_split]
            train = parts[0] if len(parts) == 1 else torch.utils.data.ConcatDataset(parts)
            return train, cls(root, split="test", transform=te, download=download)
        if info.kind == "digits":
            return Digits(True, tr), Digits(False, te)
        if info.kind == "imagenet":
            base = root / "imagenet"
            if download:
                raise DataError("ImageNet cannot be downloaded automatically: place it under "
                                f"{base}/train and {base}/val (ImageFolder layout)")
            return tv.ImageFolder(base / "train", tr), tv.ImageFolder(base / "val", te)
    except (RuntimeError, FileNotFoundError) as e:
        layouts = {"cifar10": "cifar-10-batches-py/", "cifar100": "cifar-100-python/",
                   "svhn": "train_32x32.mat, test_32x32.mat", "imagenet": "imagenet/{train,val}/<class>/*.JPEG"}
        raise _missing(dataset, root, layouts.get(dataset, "?")) from e
    raise DataError(f"no loader for dataset {dataset!r}")


def arrays(dataset: str | DatasetInfo, root: str | os.PathLike | None, *, train_split: list[str],
           download: bool = False) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """((train_images, train_labels), (test_images, test_labels)) as raw arrays for the device-resident
    path: images (N, H, W, C) uint8 as stored (C = 1 for grey), labels (N,) int64, read by the same dataset
    classes ``load`` uses (so the same files, the same errors, and SVHN's 10 -> 0 label mapping)."""
    info = info_of(dataset)
    if info.kind in ("imagenet", "coco"):
        raise DataError(f"{info.name} is read from its image files as it trains; raw arrays (the device-resident "
                        f"path) serve datasets held in memory")
    if info.kind in ("imagefolder", "torchvision", "plugin"):
        info = with_size(info, root, download)
        return (_stack(open_raw(info, root, train=True, download=download)),
                _stack(open_raw(info, root, train=False, download=download)))
    train, test = load(info, root, augment=[], train_split=train_split, download=download)
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


def _stack(ds: Images) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of a split, decoded once: (N, H, W, C) uint8 and (N,) int64."""
    h, w = ds.info.image_size
    images = np.empty((len(ds), h, w, ds.info.channels), dtype=np.uint8)
    labels = np.empty(len(ds), dtype=np.int64)
    for i in range(len(ds)):
        img, labels[i] = ds.image(i)
        images[i] = np.asarray(img).reshape(h, w, -1)
    return torch.from_numpy(images), torch.from_numpy(labels)


def subset_indices(total: int, n: int | None, seed: int = 0) -> list[int] | None:
    """The first ``n`` indices of a fixed permutation of ``total`` (the smoke budget's few hundred
    images), or None for all of them; both data paths take the same images."""
    if n is None or n >= total:
        return None
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n].tolist()


def subset(ds: Dataset, n: int | None, seed: int = 0) -> Dataset:
    idx = subset_indices(len(ds), n, seed)
    return ds if idx is None else Subset(ds, idx)
