"""The detection runner (job kind ``detect``): RetinaNet on COCO 2017, cra's Table VI.

``fit_detection`` reads top to bottom like ``trainer.fit``, counting iterations instead of
epochs: SGD with momentum and weight decay, ``lr_at_iteration`` (linear warm-up, then x gamma at
each milestone), the loss is the sum of RetinaNet's loss dict, and the box AP of the final model
comes from pycocotools' COCOeval on the validation images. No database code: progress leaves
through ``on_progress`` and ``on_resume``.

Resuming is exact on CPU: a checkpoint (model, optimizer, RNG states, iteration) is written
atomically every ``checkpoint_every`` iterations and at the end, with ``trainer``'s helpers.
Pass p over the training images is ordered by a generator seeded by (seed, p), and a resumed run
rebuilds that order and skips the batches already seen, so it continues mid-pass. The flips and
RetinaNet's own scale choice draw on the global torch RNG, which the checkpoint restores; this is
why the data loads in the main process (worker processes would get batches in a different order
after a mid-pass resume).

Data: ``<data_dir>/coco/{train2017,val2017}`` + ``annotations/instances_{split}.json``. COCO
[x, y, w, h] annotations become xyxy boxes clipped to the image; crowd boxes and boxes without
area are dropped, and training skips images left with no box (Detectron2's and torchvision's
reference practice). Labels are COCO category ids (``num_classes=91``). Training flips
horizontally with p = 0.5; resizing (shorter side 800, longer at most 1333) and normalisation
are RetinaNet's own ``GeneralizedRCNNTransform``. A recipe key ``min_size`` replaces the 800 for
smoke budgets on a CPU (CRA bodies need images of at least 224 pixels).

Pretrained backbones: the paper initialises the bodies from ImageNet-pretrained ResNets. No such
weights ship with this repository. The optional recipe key ``backbone_checkpoint`` names a state
dict of the classification model (``resnet50``, ``cra_resnet50``, ... as trained by the ImageNet
jobs; a trainer checkpoint with a ``model`` entry works too), loaded into ``backbone.body`` with
the FC dropped; without it the detector trains from scratch. Every run reports a metric
``pretrained`` (1.0 / 0.0) so reports can say which happened: from-scratch numbers are not the
paper's setting.

Evaluation runs one image at a time, as Detectron2's, so a detection never depends on the
padding of the images batched with it.
"""
from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.datasets import CocoDetection
from torchvision.transforms import functional as TF

from .checkpoints import CheckpointStore, rng_state, safe_load, set_rng_state
from ..data.readers import DataError, data_root, subset
from ..specs import JobRecipe, Recipe
from ..states import Divergence
from .optimizer import make_optimizer, set_lr
from .schedule import lr_at
from .trainer import Diverged, seed_everything

CHECKPOINT_EVERY = 500  # iterations between checkpoints in run_detect
MAX_DETECTIONS = 100  # per image, as COCO evaluation expects


# --- data -------------------------------------------------------------------------------

def coco_boxes(anns: list[dict], width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """xyxy boxes (N, 4) clipped to the image and labels (N,); no crowd boxes, no empty boxes."""
    boxes = [a["bbox"] for a in anns if not a.get("iscrowd", 0)]
    labels = [a["category_id"] for a in anns if not a.get("iscrowd", 0)]
    xyxy = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    xyxy[:, 2:] += xyxy[:, :2]
    xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, width)
    xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, height)
    keep = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    return xyxy[keep], torch.tensor(labels, dtype=torch.int64)[keep]


def hflip(image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    width = image.shape[-1]
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    return image.flip(-1), {**target, "boxes": boxes}


class CocoBoxes(CocoDetection):
    """COCO images as (float image tensor in [0, 1], {"boxes", "labels", "image_id"})."""

    def __init__(self, images: Path, annotations: Path, train: bool):
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            super().__init__(str(images), str(annotations))
        self.train = train
        if train:
            self.ids = [i for i in self.ids if len(self._target(i)["labels"])]

    def _target(self, image_id: int) -> dict:
        info = self.coco.imgs[image_id]
        boxes, labels = coco_boxes(self.coco.imgToAnns[image_id], info["width"], info["height"])
        return {"boxes": boxes, "labels": labels, "image_id": image_id}

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        image_id = self.ids[index]
        image, target = TF.to_tensor(self._load_image(image_id)), self._target(image_id)
        if self.train and float(torch.rand(())) < 0.5:
            image, target = hflip(image, target)
        return image, target


def load_coco(root: str | Path | None, split: str, train: bool) -> CocoBoxes:
    """COCO 2017 ``split`` (train2017, val2017) from ``<root>/coco``; flips when ``train``."""
    root = data_root(root)
    base = root / "coco"
    images, annotations = base / split, base / "annotations" / f"instances_{split}.json"
    if not images.is_dir() or not annotations.is_file():
        raise DataError(f"coco not found under {root} (expected coco/{split}/*.jpg and "
                        f"coco/annotations/instances_{split}.json; {split}.zip and annotations_trainval2017.zip "
                        f"from https://cocodataset.org/#download, unzipped in {base})")
    return CocoBoxes(images, annotations, train)


def _as_lists(batch: list) -> tuple[list, list]:
    return [image for image, _ in batch], [target for _, target in batch]


def iteration_batches(ds: Dataset, batch_size: int, seed: int, start: int, total: int):
    """Yield (iteration, images, targets) for iterations ``start`` .. ``total - 1``.

    Pass p takes the images in an order drawn from a generator seeded by (seed, p), in full
    batches; a run resumed at ``start`` rebuilds its pass and skips the batches already seen.
    """
    per_pass = len(ds) // batch_size
    if per_pass == 0:
        raise ValueError(f"{len(ds)} training images cannot fill one batch of {batch_size}")
    it = start
    while it < total:
        epoch, skip = divmod(it, per_pass)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(ds), generator=gen).tolist()
        batches = [order[i * batch_size:(i + 1) * batch_size] for i in range(skip, per_pass)][:total - it]
        # the generator also seeds the loader itself, which would otherwise draw on the global RNG
        for images, targets in DataLoader(ds, batch_sampler=batches, collate_fn=_as_lists, generator=gen):
            yield it, images, targets
            it += 1


# --- schedule, model set-up -------------------------------------------------------------

def set_min_size(model: nn.Module, recipe: Recipe) -> None:
    """The recipe's ``min_size`` (shorter image side) replaces the model's; nothing when absent."""
    if recipe.min_size is not None:
        model.transform.min_size = (recipe.min_size,)


def load_backbone(model: nn.Module, path: str | Path | dict | None) -> bool:
    """Load a classification state dict (a file, or the dict itself) into ``model.backbone.body``, its
    classification head dropped; False when there is none. The body's frozen BatchNorms take the
    classifier's statistics, as torchvision's and Detectron's pretrained RetinaNet bodies do."""
    if path is None:
        return False
    state = path if isinstance(path, dict) else safe_load(path)  # weights only: a hostile file runs no code
    state = state.get("model", state)
    body = model.backbone.body
    parts = {name for name, _ in body.named_children()}  # the FC (and pooling) stay behind
    state = {k: v for k, v in state.items() if k.split(".", 1)[0] in parts}
    try:
        body.load_state_dict(state)  # strict: every body tensor must come from the checkpoint
    except RuntimeError as e:
        where = "the upstream weights" if isinstance(path, dict) else f"backbone checkpoint {path}"
        raise ValueError(f"{where} do not fit {type(body).__name__} of this model: {e}") from e
    return True


def _resume(store: CheckpointStore, model: nn.Module, opt: torch.optim.Optimizer) -> int:
    """Restore model, optimizer and RNG states; the number of iterations done (0 without checkpoint)."""
    state = store.load()
    if state is None:
        return 0
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    return state["iteration"]


# --- evaluation -------------------------------------------------------------------------

def coco_detections(image_id: int, output: dict) -> list[dict]:
    """RetinaNet's output for one image (xyxy boxes in image pixels) as COCO result entries.

    COCO's rule, kept by Detectron2 and mmdetection: at most 100 detections per image, the highest
    scored (torchvision's RetinaNet returns up to 300, and COCOeval caps per image and category).
    """
    scores, order = output["scores"].detach().cpu().sort(descending=True, stable=True)
    order = order[:MAX_DETECTIONS]
    boxes = output["boxes"].detach().cpu().double()[order]
    boxes[:, 2:] -= boxes[:, :2]  # xyxy -> xywh
    labels, scores = output["labels"].cpu()[order].tolist(), scores[:MAX_DETECTIONS].tolist()
    return [{"image_id": image_id, "category_id": int(label), "bbox": [float(v) for v in box], "score": float(score)}
            for box, label, score in zip(boxes, labels, scores)]


def coco_metrics(coco_gt, image_ids: list[int], detections: list[dict]) -> dict[str, float]:
    """COCO box AP in %: ``map`` (AP@[.5:.95]), ``map50``, ``map75``. No detections: AP 0."""
    from pycocotools.cocoeval import COCOeval

    if not coco_gt.getAnnIds(imgIds=image_ids, iscrowd=False):
        raise DataError(f"the {len(image_ids)} evaluation images have no ground-truth boxes: AP is undefined")
    if not detections:  # loadRes cannot take an empty list; nothing detected is AP 0
        return {"map": 0.0, "map50": 0.0, "map75": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(detections), "bbox")
        evaluator.params.imgIds = sorted(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    ap, ap50, ap75 = evaluator.stats[:3]
    return {"map": 100.0 * ap, "map50": 100.0 * ap50, "map75": 100.0 * ap75}


def _coco_api(ds: Dataset):
    while isinstance(ds, Subset):
        ds = ds.dataset
    return ds.coco


@torch.no_grad()
def evaluate_coco(model: nn.Module, ds: Dataset, device: torch.device) -> dict[str, float]:
    model.eval()
    image_ids, detections = [], []
    for images, targets in DataLoader(ds, batch_size=1, shuffle=False, collate_fn=_as_lists):
        (output,) = model([images[0].to(device)])
        image_ids.append(targets[0]["image_id"])
        detections += coco_detections(targets[0]["image_id"], output)
    return coco_metrics(_coco_api(ds), image_ids, detections)


# --- the loop ---------------------------------------------------------------------------

def fit_detection(model: nn.Module, train_ds: Dataset, val_ds: Dataset, recipe: JobRecipe | dict, *, seed: int,
                  device: torch.device, store: CheckpointStore,
                  on_progress: Callable[[int, int, float], None] | None = None,
                  on_resume: Callable[[int], None] | None = None,
                  checkpoint_every: int = CHECKPOINT_EVERY) -> dict[str, float]:
    """Train ``model`` for the recipe's iterations; returns COCO box AP (%) on ``val_ds``."""
    recipe = JobRecipe.of(recipe)
    set_min_size(model, recipe)
    model.to(device)
    opt = make_optimizer(model, recipe)  # the classifier's construction: frozen parameters are never handed over
    total = recipe.iterations
    start = _resume(store, model, opt)
    if start > total:
        raise ValueError(f"checkpoint in {store.directory} is at iteration {start}, past this recipe's {total}")
    if start and on_resume:
        on_resume(start)
    model.train()
    for it, images, targets in iteration_batches(train_ds, recipe.batch_size, seed, start, total):
        set_lr(opt, lr_at(recipe, it))
        images = [image.to(device) for image in images]
        targets = [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device)} for t in targets]
        loss = sum(model(images, targets).values())  # focal classification + box regression
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise Diverged(Divergence("nan" if loss_value != loss_value else "inf", "iteration", it + 1,
                                      lr_at(recipe, it)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.grad_clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip_norm)
        opt.step()
        if (it + 1) % checkpoint_every == 0 or it + 1 == total:
            store.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": rng_state(),
                        "iteration": it + 1}, it + 1)
        if on_progress:
            on_progress(it + 1, total, loss_value)
    return {**evaluate_coco(model, val_ds, device), "iterations": float(total)}


def run_detect(spec: dict, data_dir: str | Path | None, download: bool, store: CheckpointStore,
               device: torch.device, on_progress: Callable[[int, int, float], None] | None,
               on_resume: Callable[[int], None] | None, init_state: dict | None = None
               ) -> tuple[dict[str, tuple[float, None]], dict]:
    """Run one ``detect`` job: COCO 2017 train2017 -> val2017 box AP, plus ``pretrained`` (1 when the body
    started from ImageNet weights: ``init_state``, the upstream job's, or the recipe's backbone_checkpoint),
    and the final weights."""
    import repro_models as models

    recipe = JobRecipe.of(spec["recipe"])
    if spec["dataset"] != "coco":
        raise ValueError(f"detect jobs train on coco, not {spec['dataset']!r}")
    try:
        train_ds, val_ds = load_coco(data_dir, "train2017", train=True), load_coco(data_dir, "val2017", train=False)
    except DataError as e:
        if download:  # torchvision has no COCO downloader; the message says where to get it
            raise DataError(f"COCO cannot be downloaded automatically: {e}") from e
        raise
    train_ds = subset(train_ds, recipe.train_images)
    val_ds = subset(val_ds, recipe.test_images)
    seed_everything(spec["seed"])
    model = models.create(spec["model"], **spec["model_kwargs"])
    pretrained = load_backbone(model, init_state if init_state is not None else recipe.backbone_checkpoint)
    metrics = fit_detection(model, train_ds, val_ds, recipe, seed=spec["seed"], device=device,
                            store=store, on_progress=on_progress,
                            on_resume=on_resume, checkpoint_every=CHECKPOINT_EVERY)
    final = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {k: (v, None) for k, v in {**metrics, "pretrained": float(pretrained)}.items()}, final
