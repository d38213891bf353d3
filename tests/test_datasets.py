"""Datasets beyond the built-ins: declared in a paper.yaml (an image folder, torchvision's MNIST and kin by
name) or registered by a plugin, referenced by recipes like the built-ins, trained through both engines,
normalised by statistics computed once from the training set, and written as fakes in their real format."""
from __future__ import annotations

import json
import shutil
import sqlite3
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets as tv

from repro.data import channel_stats, datasets, fakes, loaders, readers as data
from repro.catalog import load_catalog
from repro.plan import cell_config, plan, resolve_targets
from repro.specs import DatasetSpec, JobRecipe, SpecError, table_cells

CPU = torch.device("cpu")

# the form the issue asks to work as written
PAPER = """\
paper: {slug}
title: "Digits as PNG files"
authors: "Nobody"
source: none.txt
counter_profile: thop-2001
datasets:
  digits-png:              # the name recipes use
    kind: imagefolder
    path: digits-png       # under --data-dir: train/<class>/*.png and test/<class>/*.png
    num_classes: 10
{extra}recipes:
  tiny:
    dataset: {dataset}
    epochs: 4
    batch_size: 32
    lr: 0.05
    weight_decay: 5.0e-4
    milestones: [2, 3]
    gamma: 0.2
    augment: [random_crop_pad4, hflip, normalize]
"""
TABLE = """\
table: table1
title: "Table 1"
columns:
  - {label: Error, metric: top1_err}
defaults: {recipe: tiny}
rows:
  - {label: ResNet-8, model: resnet_cifar, model_kwargs: {depth: 8}, values: {Error: "5.00"}}
"""


def write_paper(root: Path, slug: str = "digitspaper", *, extra: str = "", dataset: str = "digits-png",
                table: str = TABLE) -> Path:
    d = root / slug
    d.mkdir(parents=True, exist_ok=True)
    (d / "paper.yaml").write_text(PAPER.format(slug=slug, extra=textwrap.indent(extra, "  "), dataset=dataset))
    (d / "table1.yaml").write_text(table)
    return root


@pytest.fixture(scope="module")
def digits_png(tmp_path_factory) -> Path:
    """200 of scikit-learn's real 8x8 handwritten digits as grey PNG files: every 4th a test image."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    root = tmp_path_factory.mktemp("data")
    grey = np.round(digits.images[:200] * (255 / 16)).astype(np.uint8)
    for i, (img, label) in enumerate(zip(grey, digits.target[:200])):
        folder = root / "digits-png" / ("test" if i % 4 == 0 else "train") / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:04d}.png")
    return root


def _train_pixels(root: Path) -> np.ndarray:
    files = sorted((root / "digits-png" / "train").rglob("*.png"))
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])


DIGITS_PNG = DatasetSpec(kind="imagefolder", path="digits-png", num_classes=10)


def _recipe(dataset="x", augment=("random_crop_pad4", "hflip", "normalize"), **kw) -> dict:
    return JobRecipe(name="t", dataset=dataset, epochs=1, batch_size=kw.pop("batch_size", 16), lr=0.1,
                     weight_decay=0.0, augment=list(augment), **kw).job_dict()


def test_declared_imagefolder_trains_end_to_end_with_both_engines(cli, tmp_path, digits_png):
    specs = write_paper(tmp_path / "specs")
    env = {"REPRO_CACHE_DIR": str(tmp_path / "cache")}
    for engine in ("fast", "reference"):
        url = f"sqlite:///{tmp_path}/{engine}.db"
        cli("run", "digitspaper/table1", "--budget", "smoke", "--engine", engine, "--data-dir", str(digits_png),
            "--checkpoint-dir", str(tmp_path / engine), "--specs-dir", str(specs), "--db", url, env=env, check=True)
        with sqlite3.connect(tmp_path / f"{engine}.db") as con:
            (spec, state, budget), = con.execute("select spec, state, budget from jobs").fetchall()
            metrics = dict(con.execute("select name, value from metrics").fetchall())
            (ran,), = con.execute("select engine from runs").fetchall()
        assert state == "done" and budget == "smoke" and ran == engine
        assert 0 <= metrics["top1_err"] <= 100 and metrics["top5_err"] <= metrics["top1_err"]
        assert json.loads(spec)["dataset_spec"] == {"kind": "imagefolder", "path": "digits-png", "num_classes": 10}
    # the normalisation was computed once, from the 150 training images as the model sees them (RGB)
    (entry,) = json.loads((tmp_path / "cache" / "dataset-stats.json").read_text()).values()
    pixels = _train_pixels(digits_png) / 255
    assert entry["images"] == 150 and entry["dataset"] == "digits-png"
    assert np.allclose(entry["mean"], pixels.mean((0, 1, 2)), atol=1e-12)
    assert np.allclose(entry["std"], pixels.std((0, 1, 2)), atol=1e-12)


def test_mean_std_computed_once_per_files_and_recorded(tmp_path, digits_png, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "data"
    shutil.copytree(digits_png, root)
    info = datasets.declared("digits-png", DIGITS_PNG, "digitspaper")
    assert info.image_size is None and info.mean is None
    resolved, how = channel_stats.resolve(info, root)
    assert resolved.image_size == (8, 8) and how["mean_std"].startswith("computed from the 150 training images (cached")
    assert np.allclose(resolved.mean, _train_pixels(root).mean((0, 1, 2)) / 255)

    def boom(*a, **k):
        raise AssertionError("recomputed although the files did not change")

    with monkeypatch.context() as m:
        m.setattr(channel_stats, "compute", boom)
        again, how = channel_stats.resolve(info, root)
    assert again.mean == resolved.mean and "cached" in how["mean_std"]
    # a changed training file is another key: computed again, from the new pixels
    first = sorted((root / "digits-png" / "train").rglob("*.png"))[0]
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(first)
    changed, _ = channel_stats.resolve(info, root)
    assert changed.mean[0] > resolved.mean[0]
    # the loaders carry what was used and where it came from, for the run's provenance
    spec = {**datasets.job_fields("digits-png", {"digits-png": DIGITS_PNG}), "recipe": _recipe("digits-png")}
    train, test = loaders.build(spec, engine="fast", device=CPU, data_dir=root, download=False, loader_workers=0,
                                channels_last=False)
    p = train.data_provenance
    assert p is test.data_provenance and p["path"] == "device" and p["mean"] == list(changed.mean)
    assert p["image_size"] == [8, 8] and p["train_images"] == 150 and "cached" in p["mean_std"]


def test_both_paths_give_the_same_evaluation_batches_and_large_sets_stream(tmp_path, digits_png, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    spec = {**datasets.job_fields("digits-png", {"digits-png": DIGITS_PNG}), "recipe": _recipe("digits-png")}
    build = dict(device=CPU, data_dir=digits_png, download=False, loader_workers=0, channels_last=False)
    _, fast = loaders.build(spec, engine="fast", **build)
    _, ref = loaders.build(spec, engine="reference", **build)
    (xf, yf), (xr, yr) = next(iter(fast.epoch(None))), next(iter(ref.epoch(None)))
    assert xf.shape == xr.shape == (50, 3, 8, 8) and torch.equal(yf, yr)
    assert torch.allclose(xf, xr, atol=1e-6, rtol=0)
    assert fast.data_provenance["path"] == "device" and ref.data_provenance["path"] == "dataloader"
    monkeypatch.setattr(loaders, "FAST_MAX_BYTES", 10_000)  # 200 x 8x8x3 = 38,400 bytes
    train, _ = loaders.build(spec, engine="fast", **build)
    assert isinstance(train, loaders.TorchLoader) and "exceed the device-resident limit" in \
        train.data_provenance["path_reason"]


def test_mnist_by_name_through_its_fake(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    specs = write_paper(tmp_path / "specs", extra="mnist: {kind: torchvision, name: MNIST, num_classes: 10}\n",
                        dataset="mnist")
    root = tmp_path / "data"
    out = cli("data", "fake", "mnist", str(root), "--specs-dir", str(specs), check=True)
    assert "wrote a tiny mnist" in out.stdout and (root / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    reference = tv.MNIST(root, train=True)  # torchvision itself reads the fake
    catalog = load_catalog(specs)
    paper = catalog.papers["digitspaper"]
    (config,) = [cell_config(paper, c) for c in table_cells(paper, paper.tables["table1"])]
    assert config["dataset_spec"] == {"kind": "torchvision", "name": "MNIST", "num_classes": 10}
    info = datasets.for_job(config)
    (xtr, ytr), (xte, _) = data.arrays(info, root, train_split=["train"])
    assert xtr.shape == (300, 28, 28, 1) and xte.shape == (100, 28, 28, 1)
    assert torch.equal(xtr[..., 0], reference.data) and torch.equal(ytr, reference.targets)
    spec = {**config, "recipe": _recipe("mnist", augment=["random_crop_pad4", "rotate15", "normalize"])}
    train, test = loaders.build(spec, engine="fast", device=CPU, data_dir=root, download=False, loader_workers=0,
                                channels_last=True)
    x, _ = next(iter(train.epoch(torch.Generator().manual_seed(0))))
    assert x.shape == (16, 3, 28, 28) and torch.equal(x[:, 0], x[:, 2])  # grey replicated for the RGB stem
    p = test.data_provenance
    assert p["channels"] == 1 and p["model_channels"] == 3 and p["grey_to_rgb"] and len(p["mean"]) == 1
    assert abs(p["mean"][0] - float(reference.data.double().mean() / 255)) < 1e-9


@pytest.mark.parametrize("name", list(datasets.TORCHVISION))
def test_torchvision_fakes_are_read_by_torchvision(tmp_path, name):
    """Each fake is what torchvision 0.29 reads: the class itself opens it (CIFAR through our safe reader)."""
    info = datasets.declared(name.lower(), DatasetSpec(kind="torchvision", name=name,
                                                       num_classes=datasets.TORCHVISION[name][0]))
    fakes.write(info, tmp_path)
    assert data.missing(info, tmp_path) is None
    train, test = data.open_raw(info, tmp_path, train=True), data.open_raw(info, tmp_path, train=False)
    assert (len(train), len(test)) == (300, 100)
    img, label = train.image(7)
    side = datasets.TORCHVISION[name][1]
    assert img.size == (side, side) and img.mode == ("L" if info.channels == 1 else "RGB")
    assert 0 <= label < info.num_classes
    if name not in ("CIFAR10", "CIFAR100"):
        assert label == getattr(tv, name)(tmp_path, train=True)[7][1]


class Stripes(torch.utils.data.Dataset):
    """A plugin's dataset: uint8 (3, 20, 24) tensors, two classes (horizontal or vertical stripes)."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, 2, (n,), generator=g)
        self.noise = torch.randint(0, 60, (n, 3, 20, 24), generator=g, dtype=torch.uint8)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        rows, cols = torch.arange(20).view(-1, 1) % 4 < 2, torch.arange(24).view(1, -1) % 4 < 2
        stripes = (rows if self.labels[i] == 0 else cols).expand(20, 24)
        return self.noise[i] + stripes.to(torch.uint8) * 180, int(self.labels[i])


def test_a_plugin_dataset_from_register_dataset(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "_REGISTRY", dict(datasets._REGISTRY))  # this test's registrations vanish after it
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    opened = []

    @datasets.register_dataset("stripes", num_classes=2, image_size=(20, 24), train_size=64)
    def stripes(root: Path, train: bool, download: bool):
        opened.append((root, train, download))
        return Stripes(64 if train else 32, seed=int(train))

    for taken in ("stripes", "cifar10"):
        with pytest.raises(ValueError, match=f"dataset '{taken}' is registered twice"):
            datasets.register_dataset(taken, num_classes=2, image_size=8)(stripes)
    with pytest.raises(ValueError, match="one value per channel"):
        datasets.register_dataset("bad", num_classes=2, image_size=8, channels=1, mean=[0.5] * 3, std=[0.2] * 3)
    # the catalog and the planner see it like a built-in
    specs = write_paper(tmp_path / "specs", dataset="stripes", table=TABLE.replace(
        "columns:\n", "columns:\n  - {label: Params, metric: params}\n").replace(
        'values: {Error: "5.00"}', 'values: {Error: "5.00", Params: "1K"}'))
    paper = load_catalog(specs).papers["digitspaper"]
    configs = {c["kind"]: c for c in (cell_config(paper, cell) for cell in table_cells(paper, paper.tables["table1"]))}
    profile, train_cfg = configs["profile"], configs["train"]
    assert profile["input_size"] == [1, 3, 20, 24] and profile["model_kwargs"]["num_classes"] == 2
    assert train_cfg["dataset"] == "stripes" and "dataset_spec" not in train_cfg
    # both engines read the plugin's images; evaluation batches agree exactly
    spec = {**train_cfg, "recipe": _recipe("stripes", augment=["hflip", "normalize"])}
    build = dict(device=CPU, data_dir=tmp_path, download=False, loader_workers=0, channels_last=False)
    _, fast = loaders.build(spec, engine="fast", **build)
    _, ref = loaders.build(spec, engine="reference", **build)
    (xf, yf), (xr, yr) = next(iter(fast.epoch(None))), next(iter(ref.epoch(None)))
    assert xf.shape == (32, 3, 20, 24) and torch.equal(yf, yr) and torch.allclose(xf, xr, atol=1e-6, rtol=0)
    assert opened[0] == (tmp_path, True, False)
    assert fast.data_provenance["mean_std"] == ("computed from the 64 training images (not cached: the dataset "
                                                "names no files to key it by)")
    with pytest.raises(data.DataError, match="no fake writer"):
        fakes.write(datasets.get("stripes"), tmp_path)


def _catalog_error(tmp_path, extra="", dataset="digits-png", table=TABLE) -> str:
    specs = write_paper(tmp_path / "specs", extra=extra, dataset=dataset, table=table)
    with pytest.raises(SpecError) as e:
        load_catalog(specs)
    return str(e.value)


@pytest.mark.parametrize("extra, match", [
    ("cifar10: {kind: torchvision, name: CIFAR10, num_classes: 10}\n",
     r"datasets.cifar10: 'cifar10' is already a dataset \(built-in\)"),
    ("emnist: {kind: torchvision, name: EMNIST, num_classes: 47}\n",
     "datasets.emnist: torchvision dataset 'EMNIST' is not one whose constructor is .*MNIST, FashionMNIST"),
    ("mnist: {kind: torchvision, name: MNIST, num_classes: 100}\n", "MNIST has 10 classes, not 100"),
    ("mnist: {kind: torchvision, name: MNIST, num_classes: 10, mean: [0.1, 0.1, 0.1], std: [0.3, 0.3, 0.3]}\n",
     r"1 channel\(s\) as stored \(grey\): give 1 value\(s\) each"),
    ("up: {kind: imagefolder, path: ../elsewhere, num_classes: 10}\n", "datasets.up.path: '../elsewhere' must be"),
])
def test_declarations_that_cannot_work_are_spec_errors(tmp_path, extra, match):
    assert __import__("re").search(match, _catalog_error(tmp_path, extra))


def test_static_counts_need_a_known_image_size(tmp_path):
    params = TABLE.replace("columns:\n", "columns:\n  - {label: Params, metric: params}\n").replace(
        'values: {Error: "5.00"}', 'values: {Error: "5.00", Params: "1K"}')
    msg = _catalog_error(tmp_path, table=params)
    assert "'ResNet-8' / 'Params': input_size: missing: digits-png declares no image_size" in msg
    specs = write_paper(tmp_path / "sized", extra="digits-16: {kind: imagefolder, path: digits-png, num_classes: 10, "
                                                  "image_size: 16}\n", dataset="digits-16", table=params)
    paper = load_catalog(specs).papers["digitspaper"]
    configs = {c["kind"]: c for c in (cell_config(paper, cell) for cell in table_cells(paper, paper.tables["table1"]))}
    assert configs["profile"]["input_size"] == [1, 3, 16, 16]


def test_declared_names_belong_to_their_paper(tmp_path):
    """Two papers may declare one name differently: each job carries its own declaration, so they never
    share a job; a built-in's job JSON is what it was before declarations existed."""
    root = tmp_path / "specs"
    write_paper(root, "paper-a", extra="mnist: {kind: torchvision, name: MNIST, num_classes: 10}\n", dataset="mnist")
    write_paper(root, "paper-b", extra="mnist: {kind: torchvision, name: MNIST, num_classes: 10, path: b}\n",
                dataset="mnist")
    write_paper(root, "paper-c", dataset="cifar10")
    catalog = load_catalog(root)
    jobs = plan(catalog, resolve_targets(catalog, ["paper-a", "paper-b", "paper-c"]), budget="smoke")
    by_paper = {j.cells[0].split("/")[0]: j.spec for j in jobs}
    assert by_paper["paper-a"]["dataset"] == by_paper["paper-b"]["dataset"] == "mnist"
    assert by_paper["paper-b"]["dataset_spec"]["path"] == "b" and len(jobs) == 3
    assert "dataset_spec" not in by_paper["paper-c"]
    # the data check finds each paper's files where its declaration says
    from repro.plan import split_missing_data

    fakes.write(datasets.for_job(by_paper["paper-a"]), tmp_path / "data")
    runnable, held = split_missing_data(jobs, tmp_path / "data")
    assert [j.spec.get("dataset_spec", {}).get("path") for j in runnable] == [None]
    assert "mnist not found under" in held["mnist"][0] and "b/MNIST/raw" in held["mnist"][0]


def test_the_estimate_counts_declared_training_images():
    from repro.train.length import images_seen

    mnist = {**datasets.job_fields("m", {"m": DatasetSpec(kind="torchvision", name="MNIST", num_classes=10)}),
             "recipe": _recipe("m")}
    folder = {**datasets.job_fields("d", {"d": DIGITS_PNG}), "recipe": _recipe("d")}
    assert images_seen(mnist) == 60_000 and images_seen(folder) is None
    assert images_seen({"dataset": "svhn", "recipe": _recipe("svhn", train_split=["train", "extra"])}) == 604_388


def test_imagefolder_mistakes_are_one_clear_error(tmp_path, digits_png):
    root = tmp_path / "data"
    shutil.copytree(digits_png, root)
    info = datasets.declared("digits-png", DIGITS_PNG)
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(root / "digits-png" / "train" / "3" / "odd.png")
    with pytest.raises(data.DataError, match=r"odd.png: 8x9 \(width x height\), but digits-png images are 8x8"):
        data.arrays(info, root, train_split=["train"])
    shutil.rmtree(root / "digits-png" / "test" / "9")
    with pytest.raises(data.DataError, match="9 class folders, but digits-png declares num_classes 10"):
        data.open_raw(info, root, train=False)
    assert "digits-png not found under" in str(data.missing(info, tmp_path / "nothing"))


def test_repro_data_list_and_fake_see_declared_datasets(cli, tmp_path):
    specs = write_paper(tmp_path / "specs", extra="mnist: {kind: torchvision, name: MNIST, num_classes: 10}\n")
    rows = json.loads(cli("data", "list", "--specs-dir", str(specs), "--format", "json", check=True).stdout)
    by = {r["dataset"]: r for r in rows}
    assert by["cifar100"]["origin"] == "built-in" and by["cifar100"]["mean_std"] == "published"
    assert by["digits-png"]["origin"] == "paper digitspaper" and by["digits-png"]["image_size"] is None
    assert by["mnist"]["channels"] == 1 and by["mnist"]["mean_std"] == "computed from the training set"
    out = cli("data", "fake", "digits-png", str(tmp_path / "data"), "--specs-dir", str(specs), check=True)
    assert "wrote a tiny digits-png" in out.stdout
    train = data.open_raw(datasets.declared("digits-png", DIGITS_PNG), tmp_path / "data", train=True)
    assert len(train) == 300 and train.classes == [f"class{i}" for i in range(10)]
    bad = cli("data", "fake", "nothing", str(tmp_path / "data"), "--specs-dir", str(specs))
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown dataset 'nothing'")
    assert cli("data", "fake", "cifar100", str(tmp_path / "tiny"), check=True).returncode == 0


STRIPES_PLUGIN = '''\
from pathlib import Path

import numpy as np
import torch
from repro.plugins import register_dataset


def write(root: Path) -> Path:
    rng = np.random.default_rng(0)
    (root / "stripes").mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 40), ("test", 20)):
        labels = np.arange(n) % 2
        images = rng.integers(0, 90, (n, 1, 12, 16), dtype=np.uint8)
        images[labels == 0, :, ::2] += 150  # horizontal stripes
        images[labels == 1, :, :, ::2] += 150  # vertical stripes
        np.savez(root / "stripes" / f"{split}.npz", images=images, labels=labels)
    return root / "stripes"


@register_dataset("stripes-file", num_classes=2, image_size=(12, 16), channels=1, train_size=40,
                  required=["stripes/train.npz", "stripes/test.npz"], fake=write)
def stripes(root: Path, train: bool, download: bool):
    arrays = np.load(root / "stripes" / ("train.npz" if train else "test.npz"))
    return torch.utils.data.TensorDataset(torch.from_numpy(arrays["images"]), torch.from_numpy(arrays["labels"]))
'''


def test_a_plugin_file_registers_a_dataset_through_repro_plugins(tmp_path, monkeypatch):
    """The plugin mechanism's way in: a paper's plugin file imports ``repro.plugins.register_dataset``; the
    dataset is attributed to it, its file hash is in the identity of the jobs that read it, its fake and
    its required files are the presence check and the statistics' cache key, and a taken name is refused."""
    from repro import plugin_loader

    monkeypatch.setattr(datasets, "_REGISTRY", dict(datasets._REGISTRY))
    monkeypatch.setattr(plugin_loader, "_LOADED", dict(plugin_loader._LOADED))
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    specs = write_paper(tmp_path / "specs", extra="", dataset="stripes-file")
    meta = specs / "digitspaper" / "paper.yaml"
    meta.write_text(meta.read_text() + "plugins: [stripes.py]\n")
    (specs / "digitspaper" / "stripes.py").write_text(STRIPES_PLUGIN)
    paper = load_catalog(specs).papers["digitspaper"]
    info = datasets.get("stripes-file")
    assert info.origin == "plugin stripes.py" and info.input_size == [1, 3, 12, 16]
    (config,) = [cell_config(paper, c) for c in table_cells(paper, paper.tables["table1"])]
    assert config["source"]["dataset"].startswith("plugin stripes.py sha256:") and "dataset_spec" not in config
    root = tmp_path / "data"
    assert "stripes-file not found under" in str(data.missing(info, root))
    fakes.write(info, root)
    assert data.missing(info, root) is None
    spec = {**config, "recipe": _recipe("stripes-file", augment=["random_crop_pad4", "normalize"])}
    train, test = loaders.build(spec, engine="fast", device=CPU, data_dir=root, download=False, loader_workers=0,
                                channels_last=False)
    x, y = next(iter(test.epoch(None)))
    assert x.shape == (20, 3, 12, 16) and test.data_provenance["grey_to_rgb"] and y.tolist() == [0, 1] * 10
    assert "cached" in test.data_provenance["mean_std"]  # keyed by the files the plugin requires
    clash = tmp_path / "clash.py"
    clash.write_text("from repro.plugins import register_dataset\n"
                     "register_dataset('svhn', num_classes=10, image_size=32)(lambda root, train, download: None)\n")
    with pytest.raises(plugin_loader.PluginError,
                       match="registers dataset 'svhn', which already exists \\(built-in\\)"):
        plugin_loader.load_file(clash)
