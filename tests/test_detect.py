"""The detect runner on a tiny fake COCO: schedule, annotation conversion, COCO AP, a short RetinaNet
run through run_detect with a loaded backbone, and exact resume after an interruption mid-pass."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from repro.specs import Recipe

import repro_models as models
from conftest import SPECS
from repro.data.datasets import DataError
from repro.data.fakes import fake_coco
from repro.train.checkpoints import CheckpointStore, safe_load
from repro.train.detect import (coco_detections, coco_metrics, fit_detection, hflip, load_backbone, load_coco,
                          run_detect)
from repro.train.schedule import lr_at
from repro.train.trainer import seed_everything

torch.set_num_threads(1)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    fake_coco(root, images=4, size=128)
    return root


def tiny_recipe(**changes) -> dict:
    recipe = {"name": "tiny", "dataset": "coco", "iterations": 3, "batch_size": 2, "lr": 0.01, "momentum": 0.9,
              "nesterov": False,
              "weight_decay": 1e-4, "milestones": [2], "gamma": 0.1, "warmup_iterations": 2, "min_size": 128}
    return {**recipe, **changes}


def test_lr_follows_the_papers_sentence():
    # "initial learning rate is 0.1 ... divided by 10 at 60k and 80k iterations with 500 iterations warmup"
    recipe = Recipe.model_validate(yaml.safe_load((SPECS / "cra" / "paper.yaml").read_text())["recipes"]["coco"])
    lr = lambda it: lr_at(recipe, it)  # noqa: E731
    assert lr(0) == pytest.approx(0.1 / 500)
    assert lr(249) == pytest.approx(0.05)
    assert lr(499) == pytest.approx(0.1)
    assert lr(500) == lr(59_999) == pytest.approx(0.1)
    assert lr(60_000) == lr(79_999) == pytest.approx(0.01)
    assert lr(80_000) == lr(89_999) == pytest.approx(0.001)
    assert all(lr(i) < lr(i + 1) for i in range(499))


def test_annotations_become_clipped_xyxy_boxes_without_crowds(tmp_path):
    base = fake_coco(tmp_path, images=4, size=128)
    path = base / "annotations" / "instances_val2017.json"
    coco = json.loads(path.read_text())
    first = coco["annotations"][0]
    coco["annotations"] += [
        {**first, "id": 100, "iscrowd": 1},                               # crowd: ignored
        {**first, "id": 101, "bbox": [5.0, 5.0, 0.0, 10.0], "area": 0},   # no width
        {**first, "id": 102, "bbox": [120.0, 0.0, 30.0, 10.0], "area": 300, "category_id": 3},  # clipped to 128
    ]
    coco["annotations"][1]["iscrowd"] = 1  # image 2 is left with no usable box
    path.write_text(json.dumps(coco))
    (base / "annotations" / "instances_train2017.json").write_text(json.dumps(coco))

    val = load_coco(tmp_path, "val2017", train=False)
    image, target = val[0]
    x, y, w, h = first["bbox"]
    assert image.shape == (3, 128, 128) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert target["image_id"] == 1
    assert target["boxes"].tolist() == [[x, y, x + w, y + h], [120.0, 0.0, 128.0, 10.0]]
    assert target["labels"].tolist() == [first["category_id"], 3]
    assert val[1][1]["boxes"].shape == (0, 4) and len(val) == 4
    train = load_coco(tmp_path, "train2017", train=True)
    assert train.ids == [1, 3, 4]  # training skips the image without a box

    flipped_image, flipped = hflip(image, target)
    assert flipped["boxes"].tolist() == [[128 - x - w, y, 128 - x, y + h], [0.0, 0.0, 8.0, 10.0]]
    assert torch.equal(flipped_image[..., 0], image[..., -1])
    assert torch.equal(hflip(flipped_image, flipped)[1]["boxes"], target["boxes"])
    plain_image, plain = load_coco(tmp_path, "train2017", train=False)[0]  # the same image, never flipped
    flipped_image, flipped = hflip(plain_image, plain)
    seen = set()
    for seed in range(8):  # training flips half the time, boxes with the image
        torch.manual_seed(seed)
        train_image, train_target = train[0]
        assert torch.equal(train_image, plain_image if torch.equal(train_target["boxes"], plain["boxes"])
                           else flipped_image)
        seen.add(str(train_target["boxes"].tolist()))
    assert seen == {str(plain["boxes"].tolist()), str(flipped["boxes"].tolist())}


def test_missing_coco_says_how_to_fix(tmp_path):
    with pytest.raises(DataError, match=r"cocodataset.org/#download, unzipped in"):
        load_coco(tmp_path, "val2017", train=False)
    spec = {"model": "retinanet_resnet50", "model_kwargs": {}, "dataset": "coco", "seed": 0, "recipe": tiny_recipe()}
    with pytest.raises(DataError, match=r"cannot be downloaded automatically.*cocodataset.org"):
        run_detect(spec, tmp_path, True, CheckpointStore(tmp_path / "ckpt"), CPU, None, None)


def test_coco_ap_of_known_detections(coco_root):
    val = load_coco(coco_root, "val2017", train=False)
    targets = [val[i][1] for i in range(len(val))]
    ids = [t["image_id"] for t in targets]

    def detections(shift: float) -> list[dict]:
        out = []
        for t in targets:
            boxes = t["boxes"].clone()
            boxes[:, 0::2] += shift * (boxes[:, 2:3] - boxes[:, 0:1])  # IoU 1 / (1 + 2 shift) - ish
            out += coco_detections(t["image_id"], {"boxes": boxes, "labels": t["labels"],
                                                   "scores": torch.ones(len(boxes))})
        return out

    assert coco_metrics(val.coco, ids, detections(0.0)) == pytest.approx({"map": 100.0, "map50": 100.0, "map75": 100.0})
    # RetinaNet may score label 0 or an unused id: COCOeval ignores categories the ground truth lacks
    stray = coco_detections(ids[0], {"boxes": torch.tensor([[0.0, 0.0, 50.0, 50.0]] * 2),
                                     "labels": torch.tensor([0, 12]), "scores": torch.tensor([0.9, 0.8])})
    assert coco_metrics(val.coco, ids, detections(0.0) + stray)["map"] == pytest.approx(100.0)
    # at most 100 detections per image, the best scored
    many = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]).repeat(150, 1),
            "labels": torch.ones(150, dtype=torch.int64), "scores": torch.linspace(0.01, 1.0, 150)}
    kept = coco_detections(ids[0], many)
    assert len(kept) == 100 and kept[0]["score"] == 1.0 and min(d["score"] for d in kept) > many["scores"][49]
    # shifted by a fifth of the width: IoU 0.8 / 1.2 = 0.67 passes 0.50, 0.55, 0.60, 0.65 of the ten thresholds
    assert coco_metrics(val.coco, ids, detections(0.2)) == pytest.approx({"map": 40.0, "map50": 100.0, "map75": 0.0})
    assert coco_metrics(val.coco, ids, []) == {"map": 0.0, "map50": 0.0, "map75": 0.0}


def test_backbone_checkpoint_must_fit_the_body(tmp_path):
    seed_everything(1)
    state = models.create("resnet50").state_dict()
    detector = models.create("retinanet_resnet50")
    assert load_backbone(detector, None) is False
    for broken in ({k: v for k, v in state.items() if k != "layer3.0.conv1.weight"},
                   {**state, "layer1.0.attn.gdconv.weight": torch.zeros(1)}):
        torch.save(broken, tmp_path / "broken.pt")
        with pytest.raises(ValueError, match="do not fit"):
            load_backbone(detector, tmp_path / "broken.pt")


def test_run_detect_trains_a_pretrained_retinanet(coco_root, tmp_path):
    seed_everything(123)
    classifier = models.create("resnet50").state_dict()
    torch.save({"model": classifier, "epoch": 100}, tmp_path / "imagenet.pt")  # a trainer checkpoint
    spec = {"model": "retinanet_resnet50", "model_kwargs": {"num_classes": 91}, "dataset": "coco", "seed": 0,
            "recipe": tiny_recipe(train_images=3, backbone_checkpoint=str(tmp_path / "imagenet.pt"))}
    progress = []
    store = CheckpointStore(tmp_path / "ckpt" / "job1")
    metrics, final = run_detect(spec, coco_root, False, store, CPU,
                                lambda it, total, loss: progress.append((it, total, loss)), None)
    assert set(final) == set(models.create("retinanet_resnet50").state_dict())  # the artifact it keeps

    assert set(metrics) == {"map", "map50", "map75", "iterations", "pretrained"}
    for name in ("map", "map50", "map75"):
        value, detail = metrics[name]
        assert math.isfinite(value) and 0.0 <= value <= 100.0 and detail is None
    assert metrics["iterations"] == (3.0, None) and metrics["pretrained"] == (1.0, None)
    assert [p[:2] for p in progress] == [(1, 3), (2, 3), (3, 3)] and all(math.isfinite(p[2]) for p in progress)
    state = safe_load(store.known[0].path)
    assert state["iteration"] == 3 and store.known[0].step == 3
    body = {k.removeprefix("backbone.body."): v for k, v in state["model"].items() if k.startswith("backbone.body.")}
    # stem and stage 1 are frozen: still the ImageNet weights; stage 4 trained away from them
    assert torch.equal(body["conv1.weight"], classifier["conv1.weight"])
    assert torch.equal(body["layer1.2.conv3.weight"], classifier["layer1.2.conv3.weight"])
    assert torch.equal(body["bn1.running_var"], classifier["bn1.running_var"])
    assert not torch.equal(body["layer4.2.conv3.weight"], classifier["layer4.2.conv3.weight"])


@pytest.mark.long
def test_resume_mid_pass_equals_an_uninterrupted_run(coco_root, tmp_path):
    train = load_coco(coco_root, "train2017", train=True)
    val = load_coco(coco_root, "val2017", train=False)
    recipe = tiny_recipe(batch_size=1)  # 4 batches a pass: iteration 2 is in the middle of pass 0

    def detector():
        seed_everything(0)
        return models.create("retinanet_resnet50")

    def fit(model, iterations, store, **kw):
        """The global RNG state after the run: flips and RetinaNet's scale choice draw on it."""
        fit_detection(model, train, val, {**recipe, "iterations": iterations}, seed=0, device=CPU,
                      store=store, checkpoint_every=1, **kw)
        return torch.get_rng_state()

    a_store, b_store = CheckpointStore(tmp_path / "a"), CheckpointStore(tmp_path / "b")
    fit(detector(), 2, a_store)  # the interrupted run: stopped after its second checkpoint
    after_two = safe_load(a_store.known[0].path)["model"]
    resumed_at = []
    resumed = detector()
    rng_resumed = fit(resumed, 3, a_store, on_resume=resumed_at.append)
    straight = detector()
    rng_straight = fit(straight, 3, b_store)

    assert resumed_at == [2]
    # one flip after the resume agrees by chance half the time; the RNG stream must agree always
    assert torch.equal(rng_resumed, rng_straight)
    a, b = resumed.state_dict(), straight.state_dict()
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert not torch.equal(a["head.classification_head.cls_logits.weight"],
                           after_two["head.classification_head.cls_logits.weight"])
    opt_a = safe_load(a_store.known[0].path)["optimizer"]["state"]
    opt_b = safe_load(b_store.known[0].path)["optimizer"]["state"]
    assert all(torch.equal(opt_a[i]["momentum_buffer"], opt_b[i]["momentum_buffer"]) for i in opt_b)
