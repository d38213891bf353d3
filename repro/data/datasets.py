"""The dataset registry: every dataset a recipe can name, each one typed description.

Three sources, one shape (``DatasetInfo``):

- the built-ins, registered below: cifar10, cifar100, svhn, digits, imagenet, coco;
- plugins: ``register_dataset`` (exported by ``repro.plugins``), imported by every process that reads
  the registry before it reads a spec or runs a job;
- papers: a ``paper.yaml``'s ``datasets:`` (``repro.specs.DatasetSpec``), kinds ``imagefolder`` and
  ``torchvision``. A declared name belongs to the paper that declares it, like its recipes: two papers
  may each declare ``mnist``, and a training job carries its paper's declaration (``dataset_spec`` in the
  job's JSON), so a worker needs no catalog to read it and a changed declaration is a new job. A declared
  name may not be a registered one (built-in or plugin): the catalog says so, naming both.

A description is data, never code (plugins' reader functions aside): how to read each ``kind`` is
``repro.data.readers``'s, how to write a tiny fake of it ``repro.data.fakes``'s. Nothing here imports torch, so checking
specs stays fast.

Grey datasets (``channels`` 1: MNIST and its kin, a plugin's grey images) are stored with one channel and
replicated to RGB after normalisation, as ``digits`` is: every built-in model has a 3-channel stem, so
the model always sees ``model_channels`` (3). Loaders record it (``data_provenance``).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..specs import DatasetSpec


class DataError(Exception):
    """Missing or unreadable data; the message says how to fix it."""


KINDS = ("cifar", "svhn", "digits", "imagenet", "coco", "imagefolder", "torchvision", "plugin")


@dataclass(frozen=True)
class DatasetInfo:
    """What the planner, the loaders, ``repro data fake`` and the GPU-hour estimate know of a dataset."""

    name: str
    kind: str  # how its files are read: one of KINDS
    num_classes: int
    image_size: tuple[int, int] | None  # (H, W) the model sees; None: the stored images', known once read
    channels: int = 3  # as stored; 1 (grey) is replicated to RGB for the model
    mean: tuple[float, ...] | None = None  # per stored channel, in [0, 1]; None: computed from the training set
    std: tuple[float, ...] | None = None
    train_sizes: Mapping[str, int] = field(default_factory=dict)  # images per training split (the estimate's)
    required: tuple[str, ...] = ()  # files or folders under the data dir that must exist (presence check)
    path: str | None = None  # imagefolder: folder under the data dir; torchvision: subfolder used as root
    tv_class: str | None = None  # torchvision: the dataset class
    resize: bool = False  # imagefolder/torchvision with a declared image_size: shorter side, then centre crop
    reader: Callable[..., Any] | None = None  # plugin: fn(root, train, download) -> torch Dataset
    fake: Callable[[Path], Any] | None = None  # plugin: fn(root) writes a tiny copy
    origin: str = "built-in"  # built-in | plugin <file> | paper <slug>

    @property
    def model_channels(self) -> int:
        return 3 if self.channels == 1 else self.channels

    @property
    def input_size(self) -> list[int] | None:
        """[1, C, H, W] of one model input, or None while the image size is unknown (read from the files)."""
        return None if self.image_size is None else [1, self.model_channels, *self.image_size]

    def train_images(self, train_split: Sequence[str] = ("train",)) -> int | None:
        """Images per training epoch (None: not known without reading the files)."""
        sizes = [self.train_sizes.get(s) for s in train_split]
        return None if any(n is None for n in sizes) else sum(sizes)

    def describe(self) -> dict[str, Any]:
        """The plain facts, for listings and provenance."""
        return {"dataset": self.name,
                "kind": self.kind if self.kind != "torchvision" else f"torchvision {self.tv_class}",
                "origin": self.origin, "num_classes": self.num_classes,
                "image_size": list(self.image_size) if self.image_size else None, "channels": self.channels,
                "model_channels": self.model_channels, "mean": list(self.mean) if self.mean else None,
                "std": list(self.std) if self.std else None, "train_images": self.train_images()}


_REGISTRY: dict[str, DatasetInfo] = {}


def _origin() -> str:
    """Who is registering: the plugin being imported (``repro.plugin_loader`` attributes it), else built-in."""
    from repro_models.registry import _origin as stack  # imported here: it imports torch

    return stack[-1]


def _already(name: str, first: str) -> Exception:
    from repro_models.registry import AlreadyRegistered  # the plugin loader turns it into one line

    return AlreadyRegistered("dataset", name, first)


NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _register(info: DatasetInfo) -> DatasetInfo:
    if info.name in _REGISTRY:
        raise _already(info.name, _REGISTRY[info.name].origin)
    _REGISTRY[info.name] = info
    return info


def _size(image_size) -> tuple[int, int]:
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 4096 for s in size):
        raise ValueError(f"image_size must be a side or (height, width) in 1..4096, got {image_size!r}")
    return size


def _mean_std(mean, std, channels: int) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    if mean is None and std is None:
        return None, None
    if mean is None or std is None or len(mean) != channels or len(std) != channels:
        raise ValueError(f"give mean and std together, one value per channel ({channels}) each")
    if not all(0 <= m <= 1 for m in mean) or not all(0 < s <= 1 for s in std):
        raise ValueError("mean must lie in [0, 1] and std in (0, 1] (pixels scaled to [0, 1])")
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def register_dataset(name: str, *, num_classes: int, image_size: int | tuple[int, int], channels: int = 3,
                     mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                     train_size: int | None = None, required: Sequence[str] = (),
                     fake: Callable[[Path], Any] | None = None):
    """Register a dataset recipes can name (``dataset: <name>``). Decorates the function that opens it::

        @register_dataset("my-digits", num_classes=10, image_size=28, channels=1, train_size=60_000,
                          required=["my-digits/train.npz", "my-digits/test.npz"])
        def my_digits(root: Path, train: bool, download: bool) -> torch.utils.data.Dataset:
            ...  # yields (image, label): a PIL image or a uint8 tensor (C, H, W), and an int in [0, num_classes)

    ``root`` is the data folder (``--data-dir``); ``download`` is ``--download``. Every image must be
    ``image_size`` (a side, or (height, width)) with ``channels`` channels (1 grey, replicated to RGB for
    the model; 3 RGB); they are not resized. ``mean``/``std``: per channel, pixels in [0, 1]; when absent
    they are computed from the training set (cached by the ``required`` files' sizes and times; uncached
    without them). ``train_size``: training images, for the GPU-hour estimate. ``required``: paths under
    ``root`` whose absence means the data is not there (checked before any job starts). ``fake(root)``
    writes a tiny copy in the real format (``repro data fake``). Registering a taken name raises.
    Datasets whose uint8 images fit in memory take the device-resident path, larger ones a DataLoader.
    """
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError(f"dataset name {name!r}: letters, digits, '.', '_' and '-', starting with a letter or digit")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive integer, got {channels!r}")
    size = _size(image_size)
    mean, std = _mean_std(mean, std, channels)

    def decorator(fn):
        if not callable(fn):
            raise TypeError("register_dataset decorates a function (root, train, download) -> Dataset")
        _register(DatasetInfo(name, "plugin", num_classes, size, channels, mean, std,
                              {"train": train_size} if train_size else {}, tuple(required), reader=fn, fake=fake,
                              origin=_origin()))
        return fn

    return decorator


def get(name: str) -> DatasetInfo:
    """A registered dataset (built-in or plugin)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; registered: {', '.join(_REGISTRY)}") from None


def registered() -> dict[str, DatasetInfo]:
    return dict(_REGISTRY)


# --- paper declarations -------------------------------------------------------------------

# torchvision's classification datasets whose constructor is (root, train, ..., download): the facts a
# plan needs before any file is read, and the files that must be there (relative to the root).
# (classes, side, channels, train images, test images, files)
_MNIST_FILES = ("raw/train-images-idx3-ubyte", "raw/train-labels-idx1-ubyte", "raw/t10k-images-idx3-ubyte",
                "raw/t10k-labels-idx1-ubyte")
# The files that make a CIFAR folder (the built-ins and torchvision's classes by name read the same ones).
_CIFAR10 = ("cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/test_batch", "cifar-10-batches-py/batches.meta")
_CIFAR100 = ("cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta")
TORCHVISION: dict[str, tuple[int, int, int, int, int, tuple[str, ...]]] = {
    "MNIST": (10, 28, 1, 60_000, 10_000, tuple(f"MNIST/{f}" for f in _MNIST_FILES)),
    "FashionMNIST": (10, 28, 1, 60_000, 10_000, tuple(f"FashionMNIST/{f}" for f in _MNIST_FILES)),
    "KMNIST": (10, 28, 1, 60_000, 10_000, tuple(f"KMNIST/{f}" for f in _MNIST_FILES)),
    "QMNIST": (10, 28, 1, 60_000, 60_000, tuple(f"QMNIST/raw/qmnist-{s}-{t}" for s in ("train", "test")
                                                for t in ("images-idx3-ubyte", "labels-idx2-int"))),
    "USPS": (10, 16, 1, 7_291, 2_007, ("usps.bz2", "usps.t.bz2")),
    "CIFAR10": (10, 32, 3, 50_000, 10_000, _CIFAR10),
    "CIFAR100": (100, 32, 3, 50_000, 10_000, _CIFAR100),
}


def declared(name: str, spec: DatasetSpec, paper: str | None = None) -> DatasetInfo:
    """The description of a dataset a paper declares (``ValueError`` on a declaration that cannot work)."""
    origin = f"paper {paper}" if paper else "paper"
    side = (spec.image_size, spec.image_size) if spec.image_size else None
    if spec.kind == "imagefolder":
        folder = spec.path or name
        channels, stored, sizes, required = 3, None, {}, (f"{folder}/train", f"{folder}/test")
    else:
        if spec.name not in TORCHVISION:
            raise ValueError(f"torchvision dataset {spec.name!r} is not one whose constructor is (root, train, "
                             f"download): use one of {', '.join(TORCHVISION)}, or register it from a plugin "
                             f"(repro.plugins.register_dataset)")
        classes, native, channels, n_train, _, files = TORCHVISION[spec.name]
        if spec.num_classes != classes:
            raise ValueError(f"num_classes: {spec.name} has {classes} classes, not {spec.num_classes}")
        folder, stored, sizes = spec.path, (native, native), {"train": n_train}
        required = tuple(f"{folder}/{f}" for f in files) if folder else files
    if spec.mean is not None and len(spec.mean) != channels:
        raise ValueError(f"mean/std: {name} images have {channels} channel(s) as stored "
                         f"({'grey' if channels == 1 else 'RGB'}): give {channels} value(s) each")
    mean, std = (tuple(spec.mean), tuple(spec.std)) if spec.mean is not None else (None, None)
    return DatasetInfo(name, spec.kind, spec.num_classes, side or stored, channels, mean, std, sizes, required,
                       path=folder, tv_class=spec.name, resize=side is not None and side != stored, origin=origin)


def lookup(name: str, declarations: Mapping[str, DatasetSpec] | None = None, paper: str | None = None) -> DatasetInfo:
    """``name`` as a paper sees it: its own declaration, else the registry (``DataError``: unknown)."""
    if declarations and name in declarations:
        return declared(name, declarations[name], paper)
    if name not in _REGISTRY:
        known = list(_REGISTRY) + list(declarations or {})
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(known)}")
    return _REGISTRY[name]


def job_fields(name: str, declarations: Mapping[str, DatasetSpec] | None = None) -> dict[str, Any]:
    """What a training job's JSON says of its dataset: the name, and a paper's declaration when it has one
    (so the job is self-contained, and a changed declaration is another job). A built-in's or a plugin's job
    JSON holds its name alone, as before declarations existed."""
    if declarations and name in declarations:
        return {"dataset": name, "dataset_spec": declarations[name].model_dump(exclude_none=True)}
    return {"dataset": name}


def for_job(spec: Mapping[str, Any]) -> DatasetInfo:
    """The dataset of a job's JSON (``job_fields``)."""
    if spec.get("dataset_spec"):
        return declared(spec["dataset"], DatasetSpec.model_validate(spec["dataset_spec"]))
    return get(spec["dataset"])


def with_stats(info: DatasetInfo, mean: Sequence[float], std: Sequence[float]) -> DatasetInfo:
    return replace(info, mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std))


# --- the built-ins ----------------------------------------------------------------------------
# Their published normalisation constants, kept as the papers' code has them.

for _info in (
    DatasetInfo("cifar10", "cifar", 10, (32, 32), 3, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                {"train": 50_000}, _CIFAR10),
    DatasetInfo("cifar100", "cifar", 100, (32, 32), 3, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                {"train": 50_000}, _CIFAR100),
    DatasetInfo("svhn", "svhn", 10, (32, 32), 3, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970),
                {"train": 73_257, "extra": 531_131}, ("train_32x32.mat", "test_32x32.mat")),
    # scikit-learn's digits made 32x32 RGB (repro.data.readers.Digits); the train split's per-channel mean/std
    # (grey, so all three equal; tests/test_data.py recomputes them)
    DatasetInfo("digits", "digits", 10, (32, 32), 3, (0.3053, 0.3053, 0.3053), (0.3758, 0.3758, 0.3758),
                {"train": 1_347}),
    DatasetInfo("imagenet", "imagenet", 1000, (224, 224), 3, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                {"train": 1_281_167}, ("imagenet/train", "imagenet/val")),
    DatasetInfo("coco", "coco", 91, (800, 800), 3, None, None, {"train": 118_287},
                ("coco/train2017", "coco/val2017", "coco/annotations/instances_train2017.json",
                 "coco/annotations/instances_val2017.json")),
):
    _register(_info)
