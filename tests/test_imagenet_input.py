"""The fast ImageNet input path against the reference PIL path: the same decoded pixels, the same crop and
flip draws for every sample, the crop and the validation transform within a stated tolerance of Pillow's
resize (and exactly torchvision's tensor kernel), the same batches end to end, and a run that learns.

Tolerances, as measured on natural-looking 500x375 JPEGs (repro.train.bench.natural_image):
- decoding: identical to PIL's ``convert("RGB")`` (RGB, grey and Adobe CMYK JPEGs, a PNG named .JPEG):
  torchvision and Pillow both decode with libjpeg-turbo's defaults (ISLOW IDCT, fancy upsampling).
- crop-then-resize vs Pillow's resize of the same crop: |diff| <= 2 levels of 255 (a 2 in 0.4% of 1,200
  crops, the rest <= 1), mean |diff| per crop <= 0.26 levels (0.05 on average), no bias (|mean diff| <
  0.01). Both kernels are antialiased bilinear; torch's uint8 kernel rounds its 16-bit fixed-point weights
  differently from Pillow's 22-bit ones, most visibly on near-1x downscales. Equal to torchvision's
  tensor ``resized_crop`` on the same uint8 tensor exactly (same kernel) and within 1 level of its float
  kernel (v1 ``transforms.functional`` casts uint8 to float).
- Resize(256) + CenterCrop(224) vs Pillow: the same bounds (0.2% of the values differ).
"""
from __future__ import annotations

import io
import math

import numpy as np
import json

import pytest
import torch
from PIL import Image
from scipy import stats
from torchvision import transforms
from torchvision.transforms import functional as F1
from torchvision.transforms.v2 import functional as F2

from repro.data import datasets, loaders
from repro.data import imagenet_input as ii
from repro.train.bench import cores_per_gpu, imagenet_jpegs, measure_input, natural_image
from repro.train.checkpoints import CheckpointStore
from repro.train.trainer import epoch_generator, fit

# torchvision 0.29 deprecates its image decoders in favour of TorchCodec; the decoders still work
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")

CPU = torch.device("cpu")
AUGMENT = ["random_resized_crop", "hflip", "normalize"]
MEAN, STD = datasets.get("imagenet").mean, datasets.get("imagenet").std
LEVEL = 1 / 255 / min(STD)  # one level of 255 in normalised units, at its largest


def _recipe(batch_size: int) -> dict:
    """A valid ImageNet job recipe; only its batch size and augmentation matter to the loaders."""
    return {"name": "tiny", "dataset": "imagenet", "epochs": 1, "batch_size": batch_size, "lr": 0.1,
            "weight_decay": 0.0, "augment": AUGMENT, "train_split": ["train"]}


def _jpeg(arr: np.ndarray, mode: str = "RGB", quality: int = 87, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, format=fmt, quality=quality)
    return buf.getvalue()


def _pil_rgb(encoded: bytes) -> Image.Image:
    return Image.open(io.BytesIO(encoded)).convert("RGB")  # what ImageFolder's loader does


def _chw(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)


def _decode(encoded: bytes) -> torch.Tensor:
    return ii.decode(torch.frombuffer(bytearray(encoded), dtype=torch.uint8))


@pytest.fixture(scope="module")
def photos():
    """Encoded natural-looking JPEGs: landscape and portrait at ImageNet size, a small one (upscaled by
    both transforms) and a very wide one (RandomResizedCrop's central fallback)."""
    rng = np.random.default_rng(7)
    shapes = [(375, 500), (500, 333), (375, 500), (500, 375), (90, 120), (60, 600)]
    return [_jpeg(natural_image(rng, h, w)) for h, w in shapes]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """An ImageFolder root (imagenet/{train,val}) of 12 natural-looking 500x375 JPEGs in 3 classes."""
    return imagenet_jpegs(tmp_path_factory.mktemp("jpegs"), n=12, classes=3, seed=1)


def test_decode_equals_pil(photos):
    for encoded in photos:
        assert torch.equal(_decode(encoded), _chw(_pil_rgb(encoded)))


@pytest.mark.parametrize("mode, fmt", [("L", "JPEG"), ("CMYK", "JPEG"), ("RGB", "PNG")])
def test_grey_cmyk_and_png_become_rgb_as_pil_converts_them(mode, fmt):
    encoded = _jpeg(natural_image(np.random.default_rng(3), 120, 160), mode, fmt=fmt)
    assert Image.open(io.BytesIO(encoded)).mode == mode
    img = _decode(encoded)
    assert img.shape == (3, 120, 160) and img.dtype == torch.uint8
    assert torch.equal(img, _chw(_pil_rgb(encoded)))
    if mode == "L":
        assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])


def _reference_draws(height: int, width: int, seed: int) -> tuple[tuple[int, int, int, int], bool]:
    """The reference path's draws for one sample: its RNG seeded as SeededSamples does, then the transforms."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        box = transforms.RandomResizedCrop.get_params(torch.empty(3, height, width), [0.08, 1.0], [3 / 4, 4 / 3])
        return tuple(box), bool(torch.rand(1) < 0.5)


def test_draws_are_the_reference_paths_draws_for_every_sample():
    """Same seed -> the same crop box and flip as RandomResizedCrop + RandomHorizontalFlip draw, over
    thousands of samples, shapes from square to 10:1 (whose central fallback must be hit too)."""
    fallbacks = 0
    for k in range(3000):
        height, width = [(375, 500), (500, 333), (224, 224), (60, 600), (1000, 90), (31, 47)][k % 6]
        seed = loaders.sample_seed(k // 6, 123_456_789 * (k % 7))
        box, flip = ii.draw(height, width, seed, flip=True)
        assert (box, flip) == _reference_draws(height, width, seed), (height, width, seed)
        fallbacks += box[2:] in ((60, 80), (120, 90))  # 60x600 and 1000x90 capped at ratio 4/3 and 3/4
    assert fallbacks > 50
    assert ii.draw(375, 500, 5, flip=False)[1] is False


def test_crop_scale_and_ratio_distributions_match_get_params():
    """KS tests of the crop's area share and aspect ratio: the fast path's per-sample seeded draws
    against get_params drawing in sequence from the global RNG (another stream of the same law)."""
    height, width, n = 375, 500, 4000
    fast = np.array([ii.crop_params(height, width, torch.Generator().manual_seed(s))[2:] for s in range(n)])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2024)
        ref = np.array([transforms.RandomResizedCrop.get_params(torch.empty(3, height, width), [0.08, 1.0],
                                                                [3 / 4, 4 / 3])[2:] for _ in range(n)])
    for hw in (fast, ref):
        scale, log_ratio = hw[:, 0] * hw[:, 1] / (height * width), np.log(hw[:, 1] / hw[:, 0])
        assert 0.075 < scale.min() and scale.max() <= 1.0 and np.abs(log_ratio).max() < math.log(4 / 3) + 0.02
    for column in (lambda hw: hw[:, 0] * hw[:, 1], lambda hw: hw[:, 1] / hw[:, 0]):
        assert stats.ks_2samp(column(fast), column(ref)).pvalue > 0.001
    # the law itself: the area share is uniform on [0.08, 1] where the crop fits (nearly always here)
    share = fast[:, 0] * fast[:, 1] / (height * width)
    assert stats.kstest(share[share < 0.5], stats.uniform(0.08, 0.42).cdf).pvalue > 0.001


def _boxes(img: torch.Tensor, n: int, seed: int):
    return [ii.draw(img.shape[1], img.shape[2], seed * 1000 + s, flip=False)[0] for s in range(n)]


def test_crop_is_torchvisions_tensor_kernel_exactly(photos):
    for k, encoded in enumerate(photos):
        img = _decode(encoded)
        for box in _boxes(img, 10, k):
            fast = ii.resized_crop(img, box)
            assert fast.shape == (3, 224, 224) and fast.dtype == torch.uint8
            assert torch.equal(fast, F2.resized_crop(img, *box, [224, 224], antialias=True))
            float_kernel = F1.resized_crop(img, *box, [224, 224], antialias=True)  # casts to float, rounds
            assert (fast.int() - float_kernel.int()).abs().max() <= 1


def _close_to_pil(fast: torch.Tensor, pil: torch.Tensor) -> torch.Tensor:
    diff = fast.int() - pil.int()
    assert diff.abs().max() <= 2 and diff.abs().float().mean() <= 0.3
    return diff


def test_crop_is_within_tolerance_of_the_reference_pil_resize(photos):
    diffs = []
    for k, encoded in enumerate(photos):
        img, pil = _decode(encoded), _pil_rgb(encoded)
        for box in _boxes(img, 40, k):
            diffs.append(_close_to_pil(ii.resized_crop(img, box), _chw(F1.resized_crop(pil, *box, [224, 224]))))
    every = torch.stack(diffs).float()
    assert every.abs().mean() <= 0.1 and every.mean().abs() <= 0.02
    assert (every != 0).float().mean() > 0  # a deliberate deviation: if this fails, the kernels now agree


def test_validation_transform_matches_resize_then_center_crop(photos):
    reference = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])
    for encoded in photos:
        img = _decode(encoded)
        fast = ii.center(img)
        assert fast.shape == (3, 224, 224)
        assert torch.equal(fast, F2.center_crop(F2.resize(img, [256], antialias=True), [224]))
        _close_to_pil(fast, _chw(reference(_pil_rgb(encoded))))


def _build(root, engine, workers=0, batch_size=5, **kw):
    spec = {"dataset": "imagenet", "recipe": _recipe(batch_size)}
    return loaders.build(spec, engine=engine, device=CPU, data_dir=root, download=False, loader_workers=workers,
                         channels_last=False, **kw)


def _epoch(loader, gen):
    return [(x.clone(), y.clone()) for x, y in loader.epoch(gen)]


@pytest.mark.parametrize("split", [0, 1])
def test_fast_batches_are_the_reference_batches(folder, split):
    """The same epoch generator through both engines: the same images in the same order with the same
    crops and flips (a wrong box or flip would differ by far more than the resize tolerance)."""
    fast, ref = _build(folder, "fast")[split], _build(folder, "reference")[split]
    assert isinstance(fast, ii.ImageNetLoader) and fast.decode == "cpu" and len(fast) == len(ref) == [3, 1][split]
    gen = (lambda: epoch_generator(11, 2)) if split == 0 else (lambda: None)
    for (xf, yf), (xr, yr) in zip(_epoch(fast, gen()), _epoch(ref, gen()), strict=True):
        assert xf.shape == xr.shape and xf.dtype == xr.dtype == torch.float32 and xf.is_contiguous()
        assert torch.equal(yf, yr)
        diff = (xf - xr).abs()
        assert diff.max() <= 2 * LEVEL + 1e-6 and diff.mean() <= 0.1 * LEVEL


def test_same_generator_same_epoch_at_any_worker_count_and_rng_untouched(folder):
    one, two = _build(folder, "fast")[0], _build(folder, "fast", workers=2)[0]
    torch.manual_seed(5)
    before = torch.get_rng_state()
    a = _epoch(one, epoch_generator(3, 1))
    interleaved = []
    gen = epoch_generator(3, 1)
    for x, y in two.epoch(gen):  # the trainer draws mixup from the same generator between batches
        interleaved.append((x.clone(), y.clone()))
        torch.rand(3, generator=gen)
    again = _epoch(two, epoch_generator(3, 1))  # persistent workers, second epoch
    assert torch.equal(torch.get_rng_state(), before)
    for batches in (interleaved, again):
        assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, batches, strict=True))
    other = _epoch(one, epoch_generator(3, 2))
    assert not torch.equal(a[0][0], other[0][0])
    assert sorted(torch.cat([y for _, y in a]).tolist()) == sorted(torch.cat([y for _, y in other]).tolist())


def test_file_decoding_path_equals_worker_decoding(folder, monkeypatch):
    """decode="cuda" runs the files-in-workers path with nvJPEG; on a CPU the same code decodes with
    libjpeg-turbo, so its batches must equal the default path's exactly (crops, flips, labels, order),
    also when a batch falls back to per-image decoding."""
    monkeypatch.setattr(ii, "_check_decode", lambda decode, device: None)
    cpu_path = _build(folder, "fast")
    file_path = _build(folder, "fast", decode="cuda")
    assert file_path[0].decode == "cuda"
    for split, gen in ((0, lambda: epoch_generator(4, 0)), (1, lambda: None)):
        expected = _epoch(cpu_path[split], gen())
        assert all(torch.equal(xa, xb) and torch.equal(ya, yb)
                   for (xa, ya), (xb, yb) in zip(expected, _epoch(file_path[split], gen()), strict=True))

    def refuse(*args, **kwargs):
        raise RuntimeError("nvJPEG: unsupported")

    monkeypatch.setattr(ii, "decode_jpeg", refuse)
    fallback = _epoch(file_path[0], epoch_generator(4, 0))
    assert all(torch.equal(xa, xb) for (xa, _), (xb, _) in zip(_epoch(cpu_path[0], epoch_generator(4, 0)), fallback))


def test_options_the_fast_path_cannot_honour_raise(folder):
    samples = [(str(p), 0) for p in sorted((folder / "imagenet" / "train").rglob("*.JPEG"))]
    with pytest.raises(ValueError, match="unknown augmentation 'rotate15'"):
        ii.ImageNetLoader(samples, batch_size=2, train=True, augment=["random_resized_crop", "rotate15"], device=CPU)
    with pytest.raises(ValueError, match="random_resized_crop, then optionally hflip"):
        ii.ImageNetLoader(samples, batch_size=2, train=True, augment=["hflip", "random_resized_crop"], device=CPU)
    with pytest.raises(ValueError, match="unknown decode 'gpu'"):
        ii.ImageNetLoader(samples, batch_size=2, train=True, augment=AUGMENT, device=CPU, decode="gpu")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        ii.ImageNetLoader(samples, batch_size=2, train=True, augment=AUGMENT, device=CPU, decode="cuda")
    with pytest.raises(ValueError, match="fast ImageNet path only"):
        _build(folder, "reference", decode="cuda")
    with pytest.raises(ValueError, match="Generator"):
        _build(folder, "fast")[0].epoch(None)


def _colour_classes(root, per_class: int, seed: int):
    """ImageNet layout, 3 classes told apart by colour (which survives any crop and flip); one image per
    split is stored as CMYK."""
    rng = np.random.default_rng(seed)
    tints = np.array([[230, 40, 40], [40, 230, 40], [40, 40, 230]], dtype=np.float64)
    for split in ("train", "val"):
        for c, tint in enumerate(tints):
            folder = root / "imagenet" / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                img = natural_image(rng, 96, 128).astype(np.float64)
                arr = np.clip(0.5 * img + 0.5 * tint * rng.uniform(0.7, 1.0), 0, 255).astype(np.uint8)
                mode = "CMYK" if (c, i) == (1, 0) else "RGB"
                (folder / f"img{i}.JPEG").write_bytes(_jpeg(arr, mode, quality=90))
    return root


def _tiny_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 8, stride=8), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(8, 3))


def test_a_tiny_imagenet_run_learns_through_build_and_resumes_exactly(tmp_path):
    """Real JPEG files through loaders.build (engine fast) and trainer.fit: the colour classes are learnt
    (labels travel with their images), and a run stopped after 2 epochs and resumed ends identical."""
    root = _colour_classes(tmp_path / "data", per_class=8, seed=0)
    recipe = {"name": "tiny", "dataset": "imagenet", "epochs": 4, "batch_size": 6, "lr": 0.05, "momentum": 0.9,
              "nesterov": False, "weight_decay": 0.0,
              "milestones": [3], "gamma": 0.1, "warmup_epochs": 0, "augment": AUGMENT, "train_split": ["train"]}
    spec = {"dataset": "imagenet", "recipe": recipe}
    train, test = loaders.build(spec, engine="fast", device=CPU, data_dir=root, download=False, loader_workers=0,
                                channels_last=False)
    points = []
    full = fit(_tiny_model(), train, test, recipe, {}, seed=1, device=CPU, store=CheckpointStore(tmp_path / "a"),
               on_epoch=points.append)
    assert points[0].train_loss > points[-1].train_loss + 0.3, [p.train_loss for p in points]
    assert full["top1_err"] <= 10.0, full  # 24 held-out images, chance is 66.7%
    store = CheckpointStore(tmp_path / "b")
    fit(_tiny_model(), train, test, {**recipe, "epochs": 2, "milestones": []}, {}, seed=1, device=CPU, store=store,
        on_epoch=lambda r: None)
    again = fit(_tiny_model(), train, test, recipe, {}, seed=1, device=CPU, store=store, on_epoch=lambda r: None)
    assert {k: v for k, v in again.items() if k != "train_seconds"} == \
        {k: v for k, v in full.items() if k != "train_seconds"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_match_the_cpu_batches(folder):
    """CPU decoding with the finish on the GPU is the CPU epoch to float rounding; nvJPEG decoding draws
    the same crops and flips but decodes differently (IDCT, upsampling): bounded loosely here, the
    measured difference belongs in this docstring once a GPU run has measured it."""
    cuda = torch.device("cuda")
    spec = {"dataset": "imagenet", "recipe": _recipe(5)}
    expected = _epoch(_build(folder, "fast")[0], epoch_generator(2, 0))
    for decode, max_levels in (("cpu", 1e-4), ("cuda", 40.0)):
        train, _ = loaders.build(spec, engine="fast", device=cuda, data_dir=folder, download=False, loader_workers=0,
                                 channels_last=True, decode=decode)
        assert train.decode == decode
        for (xc, yc), (xg, yg) in zip(expected, _epoch(train, epoch_generator(2, 0)), strict=True):
            assert xg.device.type == "cuda" and xg.is_contiguous(memory_format=torch.channels_last)
            assert torch.equal(yc, yg.cpu())
            diff = (xc - xg.cpu()).abs() / LEVEL
            assert diff.max() <= max_levels and (decode == "cpu" or diff.mean() <= 2.0), (decode, diff.max())


def test_cores_per_gpu_is_the_rate_ratio():
    assert cores_per_gpu(3000.0, 500.0) == pytest.approx(6.0)
    assert cores_per_gpu(3000.0, 270.0) == pytest.approx(11.11, abs=0.01)
    with pytest.raises(ValueError, match="positive"):
        cores_per_gpu(3000.0, 0.0)


def test_measure_input_times_both_loaders_over_imagenet_size_jpegs():
    """Values, not speed: the JPEGs are ImageNet-like (~90 KB at 500x375), every image of every timed pass
    is counted, and the derived figures follow from the measured ones."""
    threads = torch.get_num_threads()
    r = measure_input(images=8, batch_size=4, passes=1, split="val")
    assert (r.split, r.images, r.passes, r.device, r.decode) == ("val", 8, 1, "cpu", "cpu")
    assert 70 < r.jpeg_kb < 120
    rates = [r.fast_img_per_cpu_s, r.ref_img_per_cpu_s, r.fast_epoch_img_per_cpu_s, r.ref_epoch_img_per_cpu_s,
             r.fast_epoch_img_per_s, r.ref_epoch_img_per_s]
    assert all(0 < v < 1e5 for v in rates)
    assert r.ratio == pytest.approx(r.fast_img_per_cpu_s / r.ref_img_per_cpu_s)
    assert r.fast_cores_per_gpu == pytest.approx(3000.0 / r.fast_img_per_cpu_s)
    assert torch.get_num_threads() == threads  # it times with one, then restores the caller's


@pytest.mark.timing  # opt in with pytest -m timing, on quiet cores
def test_fast_input_delivers_twice_the_images_per_cpu_second():
    """Issue 16's target, measured here: at least 2x the reference path's images per CPU-second (the
    host's share of the training input; 64 JPEGs of 500x375, 4 interleaved passes)."""
    r = measure_input(passes=4)
    print(r)
    assert r.ratio >= 2.0, r


@pytest.mark.long
def test_repro_bench_data_measures_both_inputs_side_by_side_and_stores_them(tmp_path, cli):
    """`repro bench --data` (issue 16.4): the fast and the reference input on the same JPEGs in one run,
    the cores one GPU needs at the stated rate, one stored row per ImageNet job (values, never a threshold:
    the 2x target is measured by the command, not asserted by a test)."""
    import sqlite3

    db = tmp_path / "b.db"
    proc = cli("bench", "csm/table1", "--data", "--format", "json", "--db", f"sqlite:///{db}", timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert rows and all(r["dataset"] == "imagenet" and r["gpu_rate"] == "assumed" for r in rows)
    for r in rows:
        assert r["fast_img_per_cpu_s"] > 0 and r["ref_img_per_cpu_s"] > 0
        assert r["ratio"] == pytest.approx(r["fast_img_per_cpu_s"] / r["ref_img_per_cpu_s"])
        assert r["fast_cores_per_gpu"] == pytest.approx(3000 / r["fast_img_per_cpu_s"])
    with sqlite3.connect(db) as con:
        stored = con.execute("select job_id, img_per_cpu_s, cores_per_gpu from input_benchmarks").fetchall()
    assert sorted(j for j, *_ in stored) == sorted(r["job"] for r in rows)
