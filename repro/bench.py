"""``repro bench``: how fast a job's exact recipe trains here, measured, not assumed.

For each training job of the targets: build its model, and run N optimizer steps of its recipe
(batch size, input size, augmentations, auxiliary heads, mixup) on synthetic images of the real shape
through the same loaders and step as ``repro run`` (``repro.loaders``, ``trainer.train_step``), on the
present device. Warm-up steps (cudnn autotuning, compilation) are not timed; the clock stops after a
device synchronisation. ``--vs reference`` runs the reference loop (torchvision transforms in a
DataLoader with 0 workers, fp32, NCHW) in the same process for the ratio.

Synthetic images are already decoded: for ImageNet this leaves out JPEG decoding, which a real run
pays in its loader workers (a lower bound on time). Projected hours cover the training steps of the
full recipe only (no evaluation passes).
"""
from __future__ import annotations

import resource
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from . import data
from .loaders import FAST_DATASETS, TorchLoader
from .trainer import Engine, Meter, epoch_generator, lr_at, make_optimizer, mixup_batch, train_step

SYNTHETIC_SIZE = {"imagenet": 256}  # stored image side before RandomResizedCrop / Resize+CenterCrop


@dataclass
class BenchResult:
    job: str
    config_key: str
    model: str
    dataset: str
    device: str
    engine: str
    precision: str
    compiled: bool
    batch_size: int
    steps: int
    img_per_s: float
    ms_per_step: float
    peak_mem_mb: float | None
    projected_hours: float | None
    data_img_per_s: float | None = None  # the loader alone: augmented images/s, no model
    ref_img_per_s: float | None = None
    ratio: float | None = None
    ref_data_img_per_s: float | None = None
    data_ratio: float | None = None

    def row(self) -> dict:
        return asdict(self)


class SyntheticImages(Dataset):
    """Random uint8 images of the dataset's stored shape, through the reference transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def synthetic_loader(spec: dict, engine: Engine, device: torch.device, n: int):
    recipe, dataset = spec["recipe"], spec["dataset"]
    classes = spec["model_kwargs"].get("num_classes", 10)
    side = SYNTHETIC_SIZE.get(dataset, 32)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, side, side, 3), dtype=np.uint8)
    labels = rng.integers(0, classes, size=n)
    if engine.name == "fast" and dataset in FAST_DATASETS:
        from .fastdata import DeviceLoader

        mean, std = data.MEAN_STD.get(dataset, ((0.5,) * 3, (0.25,) * 3))
        return DeviceLoader(torch.from_numpy(images), torch.from_numpy(labels), batch_size=recipe["batch_size"],
                            augment=recipe["augment"], mean=mean, std=std, device=device, train=True,
                            channels_last=engine.channels_last)
    ds = SyntheticImages(images, labels, data.train_transform(dataset, recipe["augment"]))
    workers = 0
    if engine.name == "fast" and dataset == "imagenet":
        from .loaders import default_workers

        workers = default_workers()
    return TorchLoader(ds, batch_size=recipe["batch_size"], shuffle=True, device=device, workers=workers,
                       channels_last=engine.channels_last)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_data(spec: dict, engine: Engine, device: torch.device, batches: int) -> float:
    """Augmented images/s of the engine's loader alone (what the data path can feed a model)."""
    batch = spec["recipe"]["batch_size"]
    loader = synthetic_loader(spec, engine, device, n=batch * batches)
    next(iter(loader.epoch(epoch_generator(0, 0))))  # start-up (workers, first transfer) is not timed
    _sync(device)
    t0, n = time.perf_counter(), 0
    for x, _ in loader.epoch(epoch_generator(0, 1)):
        n += len(x)
    _sync(device)
    return n / (time.perf_counter() - t0)


def measure(spec: dict, engine: Engine, device: torch.device, steps: int, warmup: int | None = None) -> tuple[float, float, float | None]:
    """(images/s, ms/step, peak memory MB) of ``steps`` timed optimizer steps after ``warmup`` untimed ones
    (default 3 on CUDA for cudnn autotuning and compilation, 1 on the CPU)."""
    import repro_models as models

    if warmup is None:
        warmup = 3 if device.type == "cuda" else 1

    recipe = spec["recipe"]
    torch.manual_seed(0)
    model = models.create(spec["model"], **spec["model_kwargs"])
    net, step_model = engine.prepare(model, device)
    opt = make_optimizer(net, recipe)
    weights = list(spec.get("train", {}).get("aux_loss_weights", []))
    batch = recipe["batch_size"]
    loader = synthetic_loader(spec, engine, device, n=batch * min(steps + warmup, 64))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step_model.train()
    meter, done, epoch, t0 = Meter(device), 0, 0, None
    alpha = recipe.get("mixup_alpha", 0.0)
    while done < steps + warmup:
        gen = epoch_generator(0, epoch)
        for x, y in loader.epoch(gen):
            if done == warmup:
                _sync(device)
                t0 = time.perf_counter()
            for group in opt.param_groups:
                group["lr"] = lr_at(recipe, 1.0)  # the post-warm-up rate: a diverging loss still times the same
            x, ya, yb, lam = mixup_batch(x, y, alpha, gen)
            logits, loss = train_step(step_model, opt, engine, device, x, ya, yb, lam, weights)
            meter.add(logits, ya, loss)
            done += 1
            if done == steps + warmup:
                break
        epoch += 1
    meter.read()  # what the trainer reads at an epoch end: the sync is part of the cost
    _sync(device)
    seconds = time.perf_counter() - t0
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: KB)
    return steps * batch / seconds, 1000.0 * seconds / steps, peak


REFERENCE = Engine("reference", "fp32", channels_last=False, compile=False)


def bench_job(job, engine: Engine, device: torch.device, steps: int, device_label: str,
              vs_reference: bool) -> BenchResult:
    from .estimate import images_seen

    spec = job.spec
    img_s, ms, peak = measure(spec, engine, device, steps)
    seen = images_seen(spec)
    result = BenchResult(job.id, job.config_key, job.model, spec["dataset"], device_label, engine.name,
                         engine.precision, engine.compile, spec["recipe"]["batch_size"], steps, img_s, ms, peak,
                         seen / img_s / 3600 if seen else None)
    batches = max(steps, 8)
    result.data_img_per_s = measure_data(spec, engine, device, batches)
    if vs_reference:
        ref, _, _ = measure(spec, REFERENCE, device, steps)
        result.ref_img_per_s, result.ratio = ref, img_s / ref
        result.ref_data_img_per_s = measure_data(spec, REFERENCE, device, batches)
        result.data_ratio = result.data_img_per_s / result.ref_data_img_per_s
    return result
