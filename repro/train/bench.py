"""``repro bench``: how fast a job's exact recipe trains here, measured, not assumed.

For each training job of the targets: build its model, and run N optimizer steps of its recipe
(batch size, input size, augmentations, auxiliary heads, mixup) on synthetic images of the real shape
through the same loaders and step as ``repro run`` (``repro.data.loaders``, ``trainer.train_step``), on the
present device. Warm-up steps (cudnn autotuning, compilation) are not timed; the clock stops after a
device synchronisation. ``--vs reference`` runs the reference loop (torchvision transforms in a
DataLoader with 0 workers, fp32, NCHW) in the same process for the ratio.

Synthetic images are already decoded: for ImageNet this leaves out JPEG decoding, which a real run
pays in its loader workers (a lower bound on time). Projected hours cover the training steps of the
full recipe only (no evaluation passes).

``measure_input`` times the ImageNet input pipeline alone, JPEG files included: the fast and the
reference loaders side by side, in images per CPU-second (one core), and ``cores_per_gpu`` turns that
into the CPU cores one GPU needs.
"""
from __future__ import annotations

import dataclasses
import resource
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..data import datasets, loaders, readers
from ..specs import JobRecipe
from ..data.loaders import TorchLoader, path_by_kind
from .ema import make_ema
from .mix import mix_batch
from .optimizer import make_optimizer, set_lr
from .regularise import build
from .schedule import lr_at
from .step import train_step
from .trainer import Engine, Meter, epoch_generator

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
        img = self.images[i]
        return self.transform(Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)), int(self.labels[i])


def synthetic_loader(spec: dict, engine: Engine, device: torch.device, n: int):
    recipe, info = JobRecipe.of(spec["recipe"]), datasets.for_job(spec)
    classes = spec["model_kwargs"].get("num_classes", 10)
    # a declared image folder may leave its size to its files: benchmark it at 32x32 then
    height, width = (SYNTHETIC_SIZE[info.name],) * 2 if info.name in SYNTHETIC_SIZE else info.image_size or (32, 32)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, height, width, info.channels), dtype=np.uint8)
    labels = rng.integers(0, classes, size=n)
    if info.mean is None:  # computed from the training set in a real run; any values time the same
        info = datasets.with_stats(info, (0.5,) * info.channels, (0.25,) * info.channels)
    if info.kind != "imagenet":  # ImageNet's transforms crop 224 out of the stored 256
        info = dataclasses.replace(info, image_size=(height, width), resize=False)
    # the path a real run takes; where size decides, synthetic images are small enough for the device
    if (path_by_kind(info, recipe, engine.name)[0] or "device") == "device":
        from ..data.fastdata import DeviceLoader

        return DeviceLoader(torch.from_numpy(images), torch.from_numpy(labels), batch_size=recipe.batch_size,
                            augment=recipe.augment, mean=info.mean, std=info.std, device=device, train=True,
                            channels_last=engine.channels_last, grey_to_rgb=info.channels == 1)
    ds = SyntheticImages(images, labels, readers.train_transform(info, recipe.augment))
    workers = 0
    if engine.name == "fast" and info.kind == "imagenet":
        from ..data.loaders import default_workers

        workers = default_workers()
    return TorchLoader(ds, batch_size=recipe.batch_size, shuffle=True, device=device, workers=workers,
                       channels_last=engine.channels_last)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_data(spec: dict, engine: Engine, device: torch.device, batches: int) -> float:
    """Augmented images/s of the engine's loader alone (what the data path can feed a model)."""
    batch = JobRecipe.of(spec["recipe"]).batch_size
    loader = synthetic_loader(spec, engine, device, n=batch * batches)
    next(iter(loader.epoch(epoch_generator(0, 0))))  # start-up (workers, first transfer) is not timed
    _sync(device)
    t0, n = time.perf_counter(), 0
    for x, _ in loader.epoch(epoch_generator(0, 1)):
        n += len(x)
    _sync(device)
    return n / (time.perf_counter() - t0)


def measure(spec: dict, engine: Engine, device: torch.device, steps: int, warmup: int | None = None) \
        -> tuple[float, float, float | None]:
    """(images/s, ms/step, peak memory MB) of ``steps`` timed optimizer steps after ``warmup`` untimed ones
    (default 3 on CUDA for cudnn autotuning and compilation, 1 on the CPU)."""
    from repro_models.ghost_bn import apply_bn_batch

    if warmup is None:
        warmup = 3 if device.type == "cuda" else 1

    recipe = JobRecipe.of(spec["recipe"])
    torch.manual_seed(0)
    model = apply_bn_batch(build(spec, recipe), recipe.bn_batch)
    net, step_model = engine.prepare(model, device)
    opt = make_optimizer(net, recipe)
    ema = make_ema(net, recipe.ema_decay)
    weights = list(spec.get("train", {}).get("aux_loss_weights", []))
    batch = recipe.batch_size
    loader = synthetic_loader(spec, engine, device, n=batch * min(steps + warmup, 64))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step_model.train()
    meter, done, epoch, t0 = Meter(device), 0, 0, None
    per_epoch = len(loader)
    while done < steps + warmup:
        gen = epoch_generator(0, epoch)
        for x, y in loader.epoch(gen):
            if done == warmup:
                _sync(device)
                t0 = time.perf_counter()
            # the rate after one epoch (past a short warm-up): a diverging loss still times the same
            set_lr(opt, lr_at(recipe, per_epoch, per_epoch))
            x, ya, yb, lam = mix_batch(x, y, recipe, 0, gen)
            logits, loss = train_step(step_model, net, opt, engine, device, recipe, x, ya, yb, lam, weights, ema)
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
    from .length import images_seen

    spec = job.spec
    img_s, ms, peak = measure(spec, engine, device, steps)
    seen = images_seen(spec)
    result = BenchResult(job.id, job.config_key, job.model, spec["dataset"], device_label, engine.name,
                         engine.precision, engine.compile, JobRecipe.of(spec["recipe"]).batch_size, steps, img_s, ms,
                         peak,
                         seen / img_s / 3600 if seen else None)
    batches = max(steps, 8)
    result.data_img_per_s = measure_data(spec, engine, device, batches)
    if vs_reference:
        ref, _, _ = measure(spec, REFERENCE, device, steps)
        result.ref_img_per_s, result.ratio = ref, img_s / ref
        result.ref_data_img_per_s = measure_data(spec, REFERENCE, device, batches)
        result.data_ratio = result.data_img_per_s / result.ref_data_img_per_s
    return result


# --- the ImageNet input pipeline alone ------------------------------------------------------------

IMAGENET_AUGMENT = ["random_resized_crop", "hflip", "normalize"]


def natural_image(rng: np.random.Generator, height: int = 375, width: int = 500) -> np.ndarray:
    """(H, W, 3) uint8 with natural images' statistics where JPEG cost depends on them: a 1/f amplitude
    spectrum, correlated colour channels, a few hard-edged discs and a little sensor noise. Saved at
    quality 87 a 500x375 image is ~90 KB, like an ImageNet JPEG of that size; uniform noise (the fakes
    of repro.data.readers) makes ~150 KB files of another decoding cost."""
    fy, fx = np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = 1.0
    shape = (height, width // 2 + 1)
    shared = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    channels = [np.fft.irfft2((0.8 * shared + 0.45 * (rng.normal(size=shape) + 1j * rng.normal(size=shape))) / f,
                              s=(height, width)) for _ in range(3)]
    x = np.stack(channels, -1)
    x = 128 + 45 * (x - x.mean()) / x.std() + rng.uniform(-20, 20, 3)
    yy, xx = np.mgrid[:height, :width]
    for _ in range(6):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(15, 90)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
        x[disc] = 0.5 * x[disc] + 0.5 * rng.uniform(0, 255, 3)
    x += rng.normal(0, 3, x.shape)
    return np.clip(x, 0, 255).astype(np.uint8)


def imagenet_jpegs(root: str | Path, n: int = 64, height: int = 375, width: int = 500, classes: int = 2,
                   quality: int = 87, seed: int = 0) -> Path:
    """``n`` natural-looking JPEGs in the ImageFolder layout ``repro.data.readers.load`` reads, the same files
    under ``imagenet/train`` and ``imagenet/val``; returns the root."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for i in range(n):
        img = Image.fromarray(natural_image(rng, height, width))
        for split in ("train", "val"):
            folder = root / "imagenet" / split / f"n{i % classes:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            img.save(folder / f"img{i:04d}.JPEG", format="JPEG", quality=quality)
    return root


def cores_per_gpu(gpu_img_per_s: float, img_per_core_s: float) -> float:
    """CPU cores whose input pipelines keep one GPU fed at ``gpu_img_per_s`` (e.g. ~3000 img/s for a
    ResNet-50 training step in bf16 on a current GPU), each core delivering ``img_per_core_s``."""
    if gpu_img_per_s <= 0 or img_per_core_s <= 0:
        raise ValueError(f"rates must be positive, got {gpu_img_per_s} and {img_per_core_s}")
    return gpu_img_per_s / img_per_core_s


@dataclass
class InputBench:
    """Images per CPU-second (one core) of the fast and the reference ImageNet loaders, same JPEG files."""

    split: str  # train: RandomResizedCrop + flip; val: Resize + CenterCrop
    images: int  # per pass
    passes: int  # timed passes of each loader, interleaved
    jpeg_kb: float  # mean file size
    device: str
    decode: str
    fast_img_per_cpu_s: float  # the host's share: the DataLoader's batches (what one loader worker delivers);
    ref_img_per_cpu_s: float  # with decode="cuda" the fast path's whole epoch (nvJPEG is driven from it)
    ratio: float
    fast_epoch_img_per_cpu_s: float  # the whole epoch() on ``device``: on a CPU, the fast path's flip and
    ref_epoch_img_per_cpu_s: float  # normalisation too, which a GPU does on a GPU machine
    fast_epoch_img_per_s: float  # wall clock of the same epochs: noisy on shared cores, the GPU decoder's
    ref_epoch_img_per_s: float  # throughput on a GPU machine
    gpu_img_per_s: float
    fast_cores_per_gpu: float  # from the host's share
    ref_cores_per_gpu: float

    def row(self) -> dict:
        return asdict(self)


def _host_batches(loader, gen: torch.Generator):
    """The DataLoader's batches of a TorchLoader or ImageNetLoader, before anything runs on the device."""
    loader.sampler.gen = gen
    return iter(loader.loader)


def measure_input(root: str | Path | None = None, *, images: int = 64, batch_size: int = 32, passes: int = 3,
                  split: str = "train", device: torch.device | str = "cpu", decode: str = "cpu",
                  gpu_img_per_s: float = 3000.0) -> InputBench:
    """Time ``repro.data.loaders.build``'s ImageNet loaders (engine fast and reference) alone, in this process.

    JPEGs from ``imagenet_jpegs`` (written to a temporary folder unless ``root`` holds them), the recipe's
    augmentation; one untimed pass of each loader, then ``passes`` timed passes, alternating the two so
    that load from other processes hits both alike. The loaders run with 0 workers and one torch thread,
    and ``time.process_time`` counts the CPU time of this process: images per CPU-second is images/s per
    core. Two figures per path: the DataLoader's batches alone (decode, augment, collate: the work a GPU
    machine's loader workers do, and what ``cores_per_gpu`` uses) and the whole ``epoch()`` on ``device``
    (with ``decode="cuda"`` the decoding happens there, so the fast path's CPU figure is the epoch's).
    0 workers spares both paths the batch's trip through shared memory, which costs the reference path
    (float32 batches) four times the fast path's bytes.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be train or val, got {split!r}")
    device = torch.device(device)
    # only the input's fields matter here (batch, augmentation); the rest makes it a valid recipe
    recipe = JobRecipe(name="input-bench", dataset="imagenet", epochs=1, batch_size=batch_size, lr=0.1,
                       weight_decay=0.0, augment=list(IMAGENET_AUGMENT))
    spec = {"dataset": "imagenet", "recipe": recipe}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(root) if root is not None else imagenet_jpegs(tmp, n=images)
        files = sorted((root / "imagenet" / split).rglob("*.JPEG"))
        chosen = {}
        for engine in ("fast", "reference"):
            train, val = loaders.build(spec, engine=engine, device=device, data_dir=root, download=False,
                                       loader_workers=0, channels_last=False,
                                       decode=decode if engine == "fast" else "cpu")
            chosen[engine] = train if split == "train" else val
        cpu = {(engine, part): 0.0 for engine in chosen for part in ("host", "epoch")}
        wall = dict.fromkeys(chosen, 0.0)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for p in range(passes + 1):  # pass 0 warms the page cache and the allocator
                for engine, loader in chosen.items():
                    for part in ("host", "epoch"):
                        gen = epoch_generator(0, p)
                        batches = _host_batches(loader, gen) if part == "host" else loader.epoch(gen)
                        t0, w0 = time.process_time(), time.perf_counter()
                        n = sum(len(batch[1]) for batch in batches)
                        _sync(device)
                        if p:
                            cpu[engine, part] += time.process_time() - t0
                            wall[engine] += (time.perf_counter() - w0) if part == "epoch" else 0.0
        finally:
            torch.set_num_threads(threads)
        kb = sum(f.stat().st_size for f in files) / len(files) / 1000
    rate = {key: n * passes / seconds for key, seconds in {**cpu, **wall}.items()}
    fast, ref = rate["fast", "host" if decode == "cpu" else "epoch"], rate["reference", "host"]
    return InputBench(split, n, passes, kb, str(device), decode, fast, ref, fast / ref, rate["fast", "epoch"],
                      rate["reference", "epoch"], rate["fast"], rate["reference"], gpu_img_per_s,
                      cores_per_gpu(gpu_img_per_s, fast), cores_per_gpu(gpu_img_per_s, ref))


# --- what `repro bench` runs per target, measured and stored -------------------------------------

def bench_jobs(jobs, engine: Engine, device: torch.device, steps: int, device_label: str, vs_reference: bool,
               database, commit: str | None):
    """Time each training job (``bench_job``), store each measurement, yield it."""
    for job in jobs:
        r = bench_job(job, engine, device, steps, device_label, vs_reference)
        row = r.row()
        database.put_benchmark({k: row[k] for k in ("config_key", "model", "device", "engine", "precision", "compiled",
                                                     "batch_size", "steps", "img_per_s", "ms_per_step", "peak_mem_mb",
                                                     "projected_hours")}
                               | {"job_id": r.job, "config": job.spec, "git_commit": commit})
        yield r


def gpu_rate(benchmarks: list[dict], config_key: str, default: float = 3000.0) -> tuple[float, str]:
    """The GPU images/s one input must feed: the fastest CUDA ``repro bench`` of this configuration among
    ``benchmarks`` (the database's), else ``default`` (a ResNet-50 step in bf16 on one current GPU, about
    3,000 images/s), and which it is."""
    rates = [b["img_per_s"] for b in benchmarks
             if b["config_key"] == config_key and str(b["device"]).startswith("cuda")]
    return (max(rates), "measured") if rates else (default, "assumed")


def bench_inputs(jobs, device: torch.device, decode: str, device_label: str, database, commit: str | None):
    """The input pipeline alone, fast vs reference side by side (``measure_input``), for each job whose
    input decodes JPEGs (ImageNet): one measurement per (dataset, augmentation), stored for every job it
    serves; yields (job, InputBench, gpu rate source). Other datasets are device-resident: nothing to decode."""
    from ..data.datasets import for_job

    measured: dict[tuple, InputBench] = {}
    benchmarks = database.benchmarks()  # read once, not per job
    for job in jobs:
        if for_job(job.spec).kind != "imagenet":
            continue
        recipe = JobRecipe.of(job.spec["recipe"])
        rate, source = gpu_rate(benchmarks, job.config_key)
        key = (tuple(recipe.augment), rate)
        if key not in measured:
            measured[key] = measure_input(device=device, decode=decode, gpu_img_per_s=rate)
        r = measured[key]
        database.put_input_benchmark({
            "job_id": job.id, "config_key": job.config_key, "dataset": job.spec["dataset"], "device": device_label,
            "decode": decode, "split": r.split, "images": r.images, "img_per_cpu_s": r.fast_img_per_cpu_s,
            "ref_img_per_cpu_s": r.ref_img_per_cpu_s, "gpu_img_per_s": r.gpu_img_per_s,
            "cores_per_gpu": r.fast_cores_per_gpu, "ref_cores_per_gpu": r.ref_cores_per_gpu, "git_commit": commit})
        yield job, r, source
