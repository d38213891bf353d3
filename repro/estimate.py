"""GPU-hours still needed to finish a paper's training cells, with the assumption stated.

Estimate per pending full-budget job: 3 x forward MACs (forward + backward) x images seen /
sustained throughput. Forward MACs come from the counter (thop-0.1 rules) at the dataset's
input size. No GPU throughput has been measured in this project yet, so the throughput is an
assumption: ``REPRO_GPU_TMACS`` (default 60 TMAC/s, about a quarter of an H100's dense
BF16/TF32 peak in MACs). Small CIFAR models run well below that, so the figure is a lower bound.
"""
from __future__ import annotations

import functools
import json
import os

from .db import Database
from .plan import cell_config, config_key
from .specs import Catalog, Paper, table_cells

TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "digits": 1_347, "imagenet": 1_281_167}
DETECTION_INPUT = (1, 3, 512, 512)
DETECTION_AREA_SCALE = (800 * 1333) / (512 * 512)  # COCO images resized to 800x1333


def throughput_tmacs() -> float:
    return float(os.environ.get("REPRO_GPU_TMACS", "60"))


@functools.lru_cache(maxsize=None)
def forward_macs(model: str, kwargs_json: str, input_size: tuple[int, ...]) -> int:
    import models
    from .counting import count_macs

    return count_macs(models.create(model, **json.loads(kwargs_json)), input_size, "thop-0.1")


def _images(cfg: dict) -> float:
    r = cfg["recipe"]
    if r.get("iterations"):
        return r["iterations"] * r["batch_size"]
    per_epoch = TRAIN_IMAGES.get(cfg["dataset"])
    if cfg["dataset"] == "svhn":
        per_epoch = 73_257 + (531_131 if "extra" in r["train_split"] else 0)
    return per_epoch * (r["epochs"] + r.get("mixup_extra_epochs", 0))


def estimate_gpu_hours(catalog: Catalog, paper: Paper, db: Database) -> tuple[float, str]:
    configs = {}
    for spec in paper.tables.values():
        for cell in table_cells(paper, spec):
            cfg = cell_config(paper, cell)
            if cfg and cfg["kind"] != "profile":
                configs[config_key(cfg)] = cfg
    done = {r["config_key"] for r in db.results_for(configs) if r["budget"] == "full"}
    total = 0.0
    for key, cfg in configs.items():
        if key in done:
            continue
        if cfg["kind"] == "detect":
            macs = forward_macs(cfg["model"], json.dumps(cfg["model_kwargs"], sort_keys=True), DETECTION_INPUT)
            macs *= DETECTION_AREA_SCALE
        else:
            size = 224 if cfg["dataset"] == "imagenet" else 32
            macs = forward_macs(cfg["model"], json.dumps(cfg["model_kwargs"], sort_keys=True), (1, 3, size, size))
        total += 3 * macs * _images(cfg)
    hours = total / (throughput_tmacs() * 1e12) / 3600
    note = (f"{len(configs) - len(done)} pending training configuration(s), one seed each; 3 x forward MACs "
            f"(thop-0.1) x images seen / {throughput_tmacs():g} TMAC/s assumed sustained per GPU (not measured: "
            f"no GPU was available to this project's sessions yet; small 32x32 models rarely sustain it, so read "
            f"this as a lower bound) = {hours:,.0f} GPU-hours")
    return hours, note
