"""GPU-hours still needed to finish a paper's training cells, measured where we can, assumed where not.

Per pending full-budget training configuration (one seed), in this order of preference:

1. measured: the fastest images/s that ``repro bench`` stored for that configuration on a CUDA device
   (any engine, precision or compile setting; the ``benchmarks`` table, matched by ``config_key``):
   hours = images seen / images/s. CPU measurements are not GPU-hours and are ignored;
2. assumed: 3 x forward MACs (forward + backward) x images seen / a sustained throughput,
   ``REPRO_GPU_TMACS`` (default 60 TMAC/s, about a quarter of an H100's dense BF16/TF32 peak in
   MACs). Small 32x32 models rarely sustain it, so this part is a lower bound;
3. unknown: neither a measurement nor a stored MAC count (or a dataset whose size only its files
   know); left out of the hours and named in the note.

Forward MACs are those of the paper's counter profile at the dataset's input size, read from what is
stored, never computed by a reader: a done profile job of the same configuration (a static cell), or the
``model_counts`` table, which caches counts by configuration and model-code version
(``modelcheck.code_version``). Only a write builds models to fill it: ``store_counts``, which
``repro models count TARGET`` calls for the training configurations of its targets.
"""
from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field

from .data import datasets
from .db import Database
from .expanded import ExpandedPaper, expand
from .modelcheck import code_version
from .plan import config_key, job_hash
from .specs import Paper
from .train.length import images_seen

DETECTION_INPUT = (1, 3, 512, 512)
DETECTION_AREA_SCALE = (800 * 1333) / (512 * 512)  # COCO images resized to 800x1333


def throughput_tmacs() -> float:
    return float(os.environ.get("REPRO_GPU_TMACS", "60"))


def count_config(model: str, model_kwargs: dict, input_size, profile: str, source: dict | None = None) -> dict:
    """The profile-job configuration of a count (its ``config_key`` is a static cell's, if one exists);
    ``source``: where a model from outside this repository comes from (``plan.model_source``)."""
    return {"kind": "profile", "model": model, "model_kwargs": model_kwargs, "input_size": list(input_size),
            "counter_profile": profile, **({"source": source} if source else {})}


def code() -> str:
    """The model code's version (``modelcheck.code_version``, computed once per process)."""
    return code_version()


def cache_key(key: str) -> str:
    """The ``model_counts`` key of a count configuration under this model code."""
    return job_hash({"config_key": key, "code": code()})


def forward_macs(db: Database, configs: dict[str, dict]) -> dict[str, int]:
    """MACs of the count configurations (keyed by config key) that are stored: the count cache of this
    model code, else a done profile job of the same configuration. Absent keys are unknown; nothing is built."""
    keys = {k: cache_key(k) for k in configs}
    cached = db.model_counts(keys.values()) if keys else {}
    out = {k: int(cached[ck]["macs"]) for k, ck in keys.items() if ck in cached}
    missing = [k for k in configs if k not in out]
    for r in db.results_for(missing) if missing else []:
        if r["kind"] == "profile" and "macs" in r["metrics"]:
            out[r["config_key"]] = int(r["metrics"]["macs"])
    return out


def store_counts(db: Database, configs: dict[str, dict], progress=None) -> int:
    """Count and cache the forward MACs (and parameters) of the count configurations (keyed by config key)
    that nothing stored holds yet; returns how many it counted. A write: it builds the models.
    ``progress(i, n, model)`` is called before each count."""
    stored = forward_macs(db, configs)
    missing = {k: c for k, c in configs.items() if k not in stored}
    if not missing:
        return 0
    rows = []
    for i, (k, cfg) in enumerate(missing.items()):
        if progress is not None:
            progress(i, len(missing), cfg["model"])
        macs, params = _count(cfg)
        rows.append({"key": cache_key(k), "config_key": k, "code": code(), "model": cfg["model"],
                     "model_kwargs": cfg["model_kwargs"], "input_size": cfg["input_size"],
                     "counter_profile": cfg["counter_profile"], "macs": macs, "params": params})
    db.put_model_counts(rows)
    return len(rows)


def count_configs(paper: Paper | ExpandedPaper, tables: list[str] | None = None) -> dict[str, dict]:
    """The count configurations (forward pass at the dataset's input size, the paper's counter profile) of the
    training configurations of ``tables`` (default all), by config key: what ``store_counts`` fills."""
    paper = expand(paper)
    counts = (_count_config_of(cfg, paper.spec.counter_profile) for cfg in paper.configs(tables=tables).values())
    return {config_key(c): c for c in counts if c is not None}  # None: a dataset with no declared input size


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


def _count_config_of(cfg: dict, profile: str) -> dict | None:
    if cfg["kind"] == "detect":
        return count_config(cfg["model"], cfg["model_kwargs"], DETECTION_INPUT, profile, cfg.get("source"))
    size = datasets.for_job(cfg).input_size
    return None if size is None else count_config(cfg["model"], cfg["model_kwargs"], size, profile, cfg.get("source"))


@dataclass
class Estimate:
    hours: float  # of the configurations that are measured or assumed; the unknown ones are left out
    pending: int
    assumed: int
    measured: dict[str, list[str]] = field(default_factory=dict)  # device -> models it measured
    profile: str = ""
    unknown: list[str] = field(default_factory=list)  # models of pending configurations with no stored count
    unsized: int = 0  # pending configurations left out: their dataset's size or image count needs its files
    inputs: list[dict] = field(default_factory=list)  # repro bench --data: the JPEG input's cores per GPU

    @property
    def hours_text(self) -> str:
        """The hours as a report's column shows them: 'unknown' when nothing is known, '≥ N' when a part is."""
        left_out = len(self.unknown) + self.unsized
        if left_out and left_out == self.pending:
            return "unknown"
        return ("≥ " if left_out else "") + f"{self.hours:,.0f}"

    @property
    def note(self) -> str:
        note = self._note()
        if self.unsized:
            note += (f"; {self.unsized} more left out (their dataset declares no image_size or its training images "
                     f"are counted from its files)")
        return note + self._input_note()

    def _input_note(self) -> str:
        """How many CPU cores one GPU needs to feed its JPEG input, at the rate ``repro bench --data`` measured."""
        if not self.inputs:
            return ""
        b = self.inputs[0]  # the newest measurement
        return (f"; the fast ImageNet input measured {b['img_per_cpu_s']:,.0f} images/s per core on {b['device']} "
                f"(reference {b['ref_img_per_cpu_s']:,.0f}): at {b['gpu_img_per_s']:,.0f} GPU images/s one GPU needs "
                f"{b['cores_per_gpu']:.1f} cores (reference {b['ref_cores_per_gpu']:.1f})")

    def _note(self) -> str:
        n_unknown = len(self.unknown)
        n_measured = self.pending - self.assumed - n_unknown - self.unsized
        head = f"{self.pending} pending training configuration(s), one seed each"
        unknown = (f"{n_unknown} unknown, left out: no MAC count stored for the current model code "
                   f"({', '.join(sorted(set(self.unknown)))}; `repro models count` stores them)"
                   if n_unknown else "")
        if n_unknown and n_unknown + self.unsized == self.pending:
            return f"{head}: GPU-hours {unknown}"
        total = f"{'at least ' if n_unknown else ''}{self.hours:,.0f} GPU-hours" + (f"; {unknown}" if unknown else "")
        if n_measured == 0:
            return (f"{head}: assumed throughput ({throughput_tmacs():g} TMAC/s), not measured on a GPU yet; "
                    f"3 x forward MACs ({self.profile}) x images seen / {throughput_tmacs():g} TMAC/s sustained "
                    f"per GPU (small 32x32 models rarely sustain it: read this as a lower bound) = {total}")
        devices = "; ".join(f"{d} ({len(m)}: {', '.join(sorted(set(m)))})" for d, m in sorted(self.measured.items()))
        rest = (f"; the other {self.assumed} assumed at {throughput_tmacs():g} TMAC/s (3 x forward MACs, "
                f"{self.profile}; a lower bound)" if self.assumed else "")
        return (f"{head}: measured on {devices} by repro bench for {n_measured} of {self.pending} "
                f"configurations (fastest engine/precision measured, images seen / images/s){rest} = {total}")


def estimate(paper: Paper | ExpandedPaper, db: Database) -> Estimate:
    """The paper's pending full-budget training configurations in GPU-hours (a read: nothing is built)."""
    paper = expand(paper)
    configs = paper.configs()
    done = db.done_configs(configs, "full")
    pending = {k: cfg for k, cfg in configs.items() if k not in done}
    profile = paper.spec.counter_profile
    bench = measured_throughput(db, pending)
    seen = {k: images_seen(cfg) for k, cfg in pending.items()}
    counts = {k: _count_config_of(cfg, profile) for k, cfg in pending.items() if k not in bench}
    unsized = {k for k in pending if seen[k] is None or (k not in bench and counts[k] is None)}
    count_keys = {k: config_key(c) for k, c in counts.items() if k not in unsized}
    macs = forward_macs(db, {count_keys[k]: counts[k] for k in count_keys})
    seconds, measured, unknown = 0.0, defaultdict(list), []
    for k, cfg in pending.items():
        if k in unsized:
            continue
        if k in bench:
            seconds += seen[k] / bench[k]["img_per_s"]
            measured[bench[k]["device"]].append(cfg["model"])
        elif count_keys[k] in macs:
            work = macs[count_keys[k]] * (DETECTION_AREA_SCALE if cfg["kind"] == "detect" else 1)
            seconds += 3 * work * seen[k] / (throughput_tmacs() * 1e12)
        else:
            unknown.append(cfg["model"])
    inputs = [b for b in db.input_benchmarks() if b["config_key"] in pending]
    return Estimate(hours=seconds / 3600, pending=len(pending), assumed=len(count_keys) - len(unknown),
                    measured=dict(measured), profile=profile, unknown=unknown, unsized=len(unsized), inputs=inputs)
