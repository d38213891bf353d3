"""GPU-hours still needed to finish a paper's training cells, measured where we can, assumed where not.

Per pending full-budget training configuration (one seed), in this order of preference:

1. measured: the fastest images/s that ``repro bench`` stored for that configuration on a CUDA device
   (any engine, precision or compile setting; the ``benchmarks`` table, matched by ``config_key``):
   hours = images seen / images/s. CPU measurements are not GPU-hours and are ignored;
2. assumed: 3 x forward MACs (forward + backward) x images seen / a sustained throughput,
   ``REPRO_GPU_TMACS`` (default 60 TMAC/s, about a quarter of an H100's dense BF16/TF32 peak in
   MACs). Small 32x32 models rarely sustain it, so this part is a lower bound.

Forward MACs are those of the paper's counter profile at the dataset's input size. They are never
recomputed per report: the ``model_counts`` table caches them by configuration and code version,
and a done profile job of the same configuration (a static cell) is used as it is.
"""
from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from . import datasets
from .db import Database
from .plan import cell_config, config_key, job_hash
from .specs import Catalog, JobRecipe, Paper, table_cells

DETECTION_INPUT = (1, 3, 512, 512)
DETECTION_AREA_SCALE = (800 * 1333) / (512 * 512)  # COCO images resized to 800x1333
_REPO = Path(__file__).resolve().parent.parent


def throughput_tmacs() -> float:
    return float(os.environ.get("REPRO_GPU_TMACS", "60"))


def counting_code_version() -> str:
    """Hash of the sources counts depend on (models/ and the counter): a model fix is a cache miss."""
    h = hashlib.sha256()
    for path in sorted((_REPO / "models").rglob("*.py")) + [_REPO / "repro" / "counting.py"]:
        h.update(path.relative_to(_REPO).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def count_config(model: str, model_kwargs: dict, input_size, profile: str) -> dict:
    """The profile-job configuration of a count (its ``config_key`` is a static cell's, if one exists)."""
    return {"kind": "profile", "model": model, "model_kwargs": model_kwargs, "input_size": list(input_size),
            "counter_profile": profile}


def forward_macs(db: Database, configs: dict[str, dict]) -> dict[str, int]:
    """MACs of each count configuration (keyed by its config key): cached, measured, or counted now."""
    code = counting_code_version()
    cache_key = {k: job_hash({"config_key": k, "code": code}) for k in configs}
    cached = db.model_counts(cache_key.values())
    out = {k: int(cached[ck]["macs"]) for k, ck in cache_key.items() if ck in cached}
    missing = [k for k in configs if k not in out]
    for r in db.results_for(missing) if missing else []:
        if r["kind"] == "profile" and "macs" in r["metrics"]:
            out[r["config_key"]] = int(r["metrics"]["macs"])
    rows = []
    for k in (k for k in configs if k not in out):
        cfg = configs[k]
        macs, params = _count(cfg)
        out[k] = macs
        rows.append({"key": cache_key[k], "config_key": k, "code": code, "model": cfg["model"],
                     "model_kwargs": cfg["model_kwargs"], "input_size": cfg["input_size"],
                     "counter_profile": cfg["counter_profile"], "macs": macs, "params": params})
    if rows:
        db.put_model_counts(rows)
    return out


def _count(cfg: dict) -> tuple[int, int]:
    import repro_models as models
    from .counting import count_macs, count_params, skip_init

    with skip_init():
        model = models.create(cfg["model"], **cfg["model_kwargs"])
    return count_macs(model, tuple(cfg["input_size"]), cfg["counter_profile"]), count_params(model)


def measured_throughput(db: Database, keys) -> dict[str, dict]:
    """Per configuration key, the fastest CUDA benchmark row (engine/precision/compile as measured)."""
    keys = set(keys)
    best: dict[str, dict] = {}
    for row in db.benchmarks():
        k = row["config_key"]
        if k in keys and str(row["device"]).startswith("cuda") and row["img_per_s"] > 0:
            if k not in best or row["img_per_s"] > best[k]["img_per_s"]:
                best[k] = row
    return best


def images_seen(cfg: dict) -> float | None:
    """Training images a configuration sees in all (None: its dataset's size is known only from its files)."""
    r = JobRecipe.of(cfg["recipe"])
    if r.iterations:
        return r.iterations * r.batch_size
    per_epoch = datasets.for_job(cfg).train_images(r.train_split)
    return None if per_epoch is None else per_epoch * r.total_epochs


def _count_config_of(cfg: dict, profile: str) -> dict | None:
    if cfg["kind"] == "detect":
        return count_config(cfg["model"], cfg["model_kwargs"], DETECTION_INPUT, profile)
    size = datasets.for_job(cfg).input_size
    return None if size is None else count_config(cfg["model"], cfg["model_kwargs"], size, profile)


@dataclass
class Estimate:
    hours: float
    pending: int
    assumed: int
    measured: dict[str, list[str]] = field(default_factory=dict)  # device -> models it measured
    profile: str = ""
    unknown: int = 0  # pending configurations left out: their dataset's size or image count needs its files

    @property
    def note(self) -> str:
        if not self.unknown:
            return self._note()
        return (f"{self._note()}; {self.unknown} more left out (their dataset declares no image_size or its "
                f"training images are counted from its files)")

    def _note(self) -> str:
        n_measured = self.pending - self.assumed - self.unknown
        head = f"{self.pending} pending training configuration(s), one seed each"
        if n_measured == 0:
            return (f"{head}: assumed throughput ({throughput_tmacs():g} TMAC/s), not measured on a GPU yet; "
                    f"3 x forward MACs ({self.profile}) x images seen / {throughput_tmacs():g} TMAC/s sustained "
                    f"per GPU (small 32x32 models rarely sustain it: read this as a lower bound) = "
                    f"{self.hours:,.0f} GPU-hours")
        devices = "; ".join(f"{d} ({len(m)}: {', '.join(sorted(set(m)))})" for d, m in sorted(self.measured.items()))
        rest = (f"; the other {self.assumed} assumed at {throughput_tmacs():g} TMAC/s (3 x forward MACs, "
                f"{self.profile}; a lower bound)" if self.assumed else "")
        return (f"{head}: measured on {devices} by repro bench for {n_measured} of {self.pending} "
                f"configurations (fastest engine/precision measured, images seen / images/s){rest} = "
                f"{self.hours:,.0f} GPU-hours")


def estimate(catalog: Catalog, paper: Paper, db: Database) -> Estimate:
    configs = {}
    for spec in paper.tables.values():
        for cell in table_cells(paper, spec):
            cfg = cell_config(paper, cell)
            if cfg and cfg["kind"] != "profile":
                configs[config_key(cfg)] = cfg
    done = db.done_configs(configs, "full")
    pending = {k: cfg for k, cfg in configs.items() if k not in done}
    profile = paper.spec.counter_profile
    bench = measured_throughput(db, pending)
    unknown = {k for k, cfg in pending.items()
               if images_seen(cfg) is None or (k not in bench and _count_config_of(cfg, profile) is None)}
    counts = {k: _count_config_of(cfg, profile) for k, cfg in pending.items() if k not in bench and k not in unknown}
    macs = forward_macs(db, {config_key(c): c for c in counts.values()})
    seconds, measured = 0.0, defaultdict(list)
    for k, cfg in pending.items():
        if k in unknown:
            continue
        if k in bench:
            seconds += images_seen(cfg) / bench[k]["img_per_s"]
            measured[bench[k]["device"]].append(cfg["model"])
        else:
            work = macs[config_key(counts[k])] * (DETECTION_AREA_SCALE if cfg["kind"] == "detect" else 1)
            seconds += 3 * work * images_seen(cfg) / (throughput_tmacs() * 1e12)
    return Estimate(hours=seconds / 3600, pending=len(pending), assumed=len(counts), measured=dict(measured),
                    profile=profile, unknown=len(unknown))


def estimate_gpu_hours(catalog: Catalog, paper: Paper, db: Database) -> tuple[float, str]:
    e = estimate(catalog, paper, db)
    return e.hours, e.note
