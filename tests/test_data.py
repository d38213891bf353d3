"""Tiny fakes in the real on-disk formats load through the real loading code."""
from __future__ import annotations

import pytest
import torch

from repro.data import datasets, fakes, readers as data


@pytest.mark.parametrize("name, classes", [("cifar10", 10), ("cifar100", 100)])
def test_fake_cifar_loads_through_torchvision(tmp_path, name, classes):
    fakes.write(datasets.get(name), tmp_path)
    train, test = data.load(name, tmp_path, augment=["random_crop_pad4", "hflip", "normalize"], train_split=["train"])
    x, y = train[0]
    assert x.shape == (3, 32, 32) and 0 <= y < classes
    assert len(test) == 100 and len(train) in (500, 500)
    assert sorted({test[i][1] for i in range(len(test))}) == list(range(min(classes, 100)))


def test_fake_svhn_train_plus_extra(tmp_path):
    data.fake_svhn(tmp_path, train=20, test=10, extra=30)
    train, test = data.load("svhn", tmp_path, augment=["to_unit"], train_split=["train", "extra"])
    assert len(train) == 50 and len(test) == 10
    x, y = train[0]
    assert x.shape == (3, 32, 32) and float(x.max()) <= 1.0 and 0 <= y <= 9


def test_fake_imagenet_imagefolder(tmp_path):
    data.fake_imagenet(tmp_path, classes=3, per_class=2)
    train, val = data.load("imagenet", tmp_path, augment=["random_resized_crop", "hflip", "normalize"],
                           train_split=["train"])
    assert len(train.classes) == 3 and train[0][0].shape == (3, 224, 224) and val[0][0].shape == (3, 224, 224)


def test_fake_coco_has_the_coco_layout(tmp_path):
    from pycocotools.coco import COCO

    base = data.fake_coco(tmp_path, images=3)
    coco = COCO(str(base / "annotations" / "instances_val2017.json"))
    assert len(coco.getImgIds()) == 3 and len(coco.getCatIds()) == 3
    assert (base / "val2017" / coco.loadImgs(1)[0]["file_name"]).exists()


def test_missing_data_says_how_to_fix(tmp_path):
    with pytest.raises(data.DataError, match="cifar100 not found under .*cifar-100-python"):
        data.load("cifar100", tmp_path / "nothing", augment=[], train_split=["train"])


def test_smoke_subset_is_fixed():
    ds = torch.utils.data.TensorDataset(torch.arange(1000))
    a, b = data.subset(ds, 10), data.subset(ds, 10)
    assert [int(a[i][0]) for i in range(10)] == [int(b[i][0]) for i in range(10)]
    assert data.subset(ds, None) is ds


@pytest.mark.parametrize("name, split, n_train, n_test, classes", [("cifar100", ["train"], 500, 100, 100),
                                                                  ("svhn", ["train", "extra"], 50, 10, 10)])
def test_arrays_are_the_images_load_reads(tmp_path, name, split, n_train, n_test, classes):
    """Raw arrays for the fast path come through the same dataset classes as ``load``: the same pixels
    (NHWC uint8) and labels (SVHN's '10' already 0), train parts concatenated in the listed order."""
    data.fake_cifar(tmp_path, 100)
    data.fake_svhn(tmp_path, train=20, test=10, extra=30)
    (xtr, ytr), (xte, yte) = data.arrays(name, tmp_path, train_split=split)
    assert xtr.shape == (n_train, 32, 32, 3) and xtr.dtype == torch.uint8 and ytr.dtype == torch.int64
    assert xte.shape == (n_test, 32, 32, 3) and len(yte) == n_test
    train, test = data.load(name, tmp_path, augment=["to_unit"], train_split=split)
    for i in (0, 7, n_train - 1):
        x, y = train[i]
        assert torch.equal((x * 255).round().to(torch.uint8), xtr[i].permute(2, 0, 1)) and y == int(ytr[i])
    assert [test[i][1] for i in range(n_test)] == yte.tolist()
    assert sorted(set(ytr.tolist())) == list(range(classes))


def test_arrays_refuse_file_streamed_datasets_and_missing_files(tmp_path):
    with pytest.raises(data.DataError, match="imagenet is read from its image files"):
        data.arrays("imagenet", tmp_path, train_split=["train"])
    with pytest.raises(data.DataError, match="cifar10 not found under"):
        data.arrays("cifar10", tmp_path / "nothing", train_split=["train"])


def test_digits_is_a_real_10_class_32x32_dataset():
    (xtr, ytr), (xte, yte) = data.arrays("digits", None, train_split=["train"])
    assert xtr.shape == (1347, 32, 32, 3) and xte.shape == (450, 32, 32, 3) and xtr.dtype == torch.uint8
    assert sorted(set(ytr.tolist())) == list(range(10)) and sorted(set(yte.tolist())) == list(range(10))
    # stratified: every class holds 24-26% of its images out
    held_out, kept = torch.bincount(yte, minlength=10), torch.bincount(ytr, minlength=10)
    per_class = held_out / (held_out + kept)
    assert ((per_class > 0.24) & (per_class < 0.26)).all()
    assert int(xtr.max()) == 255 and int(xtr.min()) == 0
    assert torch.equal(xtr[..., 0], xtr[..., 2])  # grey replicated
    assert torch.equal(xtr[:, ::4, ::4].repeat_interleave(4, 1).repeat_interleave(4, 2), xtr)  # 4x4 nearest blocks
    assert data.missing("digits", None) is None  # no files needed


def test_digits_mean_std_constants_are_the_train_splits():
    (xtr, _), _ = data.arrays("digits", None, train_split=["train"])
    x = xtr.double() / 255
    mean, std = datasets.get("digits").mean, datasets.get("digits").std
    assert torch.allclose(x.mean((0, 1, 2)), torch.tensor(mean, dtype=torch.float64), atol=5e-5)
    assert torch.allclose(x.std((0, 1, 2), correction=0), torch.tensor(std, dtype=torch.float64), atol=5e-5)


def test_digits_load_and_arrays_give_the_same_images():
    train, test = data.load("digits", None, augment=["to_unit"], train_split=["train"])
    (xtr, ytr), (xte, yte) = data.arrays("digits", None, train_split=["train"])
    assert len(train) == 1347 and len(test) == 450
    for ds, xs, ys in ((train, xtr, ytr), (test, xte, yte)):
        for i in (0, 100, len(ds) - 1):
            x, y = ds[i]
            assert torch.equal((x * 255).round().to(torch.uint8), xs[i].permute(2, 0, 1)) and y == int(ys[i])
    # the reference engine's PIL transforms apply
    aug, _ = data.load("digits", None, augment=["random_crop_pad4", "hflip", "rotate15", "normalize"],
                       train_split=["train"])
    assert aug[0][0].shape == (3, 32, 32)


def test_digits_missing_scikit_learn_says_how_to_fix(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    err = data.missing("digits", None)
    assert isinstance(err, data.DataError) and "pip install scikit-learn" in str(err)
