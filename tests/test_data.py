"""Tiny fakes in the real on-disk formats load through the real loading code."""
from __future__ import annotations

import pytest
import torch

from repro import data


@pytest.mark.parametrize("name, classes", [("cifar10", 10), ("cifar100", 100)])
def test_fake_cifar_loads_through_torchvision(tmp_path, name, classes):
    data.FAKES[name](tmp_path)
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
    with pytest.raises(data.DataError, match="--download.*repro data fake cifar100"):
        data.load("cifar100", tmp_path / "nothing", augment=[], train_split=["train"])


def test_smoke_subset_is_fixed():
    ds = torch.utils.data.TensorDataset(torch.arange(1000))
    a, b = data.subset(ds, 10), data.subset(ds, 10)
    assert [int(a[i][0]) for i in range(10)] == [int(b[i][0]) for i in range(10)]
    assert data.subset(ds, None) is ds
