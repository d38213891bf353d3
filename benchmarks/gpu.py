"""GPU throughput of the training engine at the papers' exact recipes, in one process, one JSON file.

For SE-ResNet-50 (se-r, CIFAR-100, batch 128), WRN-28-10 (cmpe-se, CIFAR-10, batch 128), ResNet-56 (cra,
CIFAR-10, batch 64) and pre-act ResNet-164 (cmpe-se, CIFAR-10, batch 128): images/s of the reference loop
and of the fast engine, in fp32 and bf16, without and with torch.compile, through repro.train.bench.measure
(synthetic images of the real shape, the recipe's augmentations, loss and optimizer). Runs the most
important measurements first and skips what would not fit in the time budget (recorded as skipped).
First, the ImageNet input pipeline alone (repro.train.bench.measure_input, ~30 s): the fast path's images per
CPU-second with libjpeg-turbo and with nvJPEG decoding, each beside the reference PIL path, over the
same real JPEG files, normalisation on the GPU.

    python benchmarks/gpu.py --out gpu.json [--budget-s 420] [--steps 50]
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

import torch

from repro.train.bench import imagenet_jpegs, measure, measure_data, measure_input
from repro.catalog import load_catalog
from repro.plan import plan, resolve_targets
from repro.train.trainer import Engine

MODELS = [("se-r/table3", "se_resnet50", "cifar100"), ("cmpe-se/table2", "wrn28_10", "cifar10"),
          ("cra/table4", "resnet56_cifar", "cifar10"), ("cmpe-se/table1", "preact_resnet164", "cifar10")]
# (engine, precision, compile), in the order they run: the headline comparison first, compile last
CONFIGS = [("reference", "fp32", False), ("fast", "bf16", False), ("fast", "fp32", False),
           ("reference", "bf16", False), ("fast", "bf16", True), ("fast", "fp32", True)]


def find_job(catalog, target: str, model: str, dataset: str):
    for job in plan(catalog, resolve_targets(catalog, [target]), kinds={"train"}):
        if job.model == model and job.spec["dataset"] == dataset:
            return job
    for job in plan(catalog, resolve_targets(catalog, [target.split("/")[0]]), kinds={"train"}):
        if job.model == model and job.spec["dataset"] == dataset:
            return job
    raise SystemExit(f"no {model} job on {dataset} in {target}")


def input_rows(device: torch.device) -> list[dict]:
    """measure_input with CPU and (on a GPU) nvJPEG decoding, over one folder of 256 JPEGs."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = imagenet_jpegs(tmp, n=256)
        for decode in ("cpu", "cuda") if device.type == "cuda" else ("cpu",):
            try:
                rows.append(measure_input(root, images=256, batch_size=128, passes=2, device=device,
                                          decode=decode).row())
            except Exception as e:  # one failure must not cost the other measurements
                rows.append({"decode": decode, "error": f"{type(e).__name__}: {str(e)[:300]}"})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget-s", type=float, default=420.0)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of the script's own code")
    ap.add_argument("--models", nargs="*", help="only these models (default all four)")
    args = ap.parse_args()
    t_start = time.perf_counter()
    device = torch.device(args.device)
    catalog = load_catalog()
    out = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "torch": torch.__version__,
           "python": platform.python_version(),
           "steps": args.steps, "results": []}
    jobs = [(find_job(catalog, *m), m) for m in MODELS if not args.models or m[1] in args.models]

    def save():
        out["wall_s"] = time.perf_counter() - t_start
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)

    out["imagenet_input"] = input_rows(device)
    save()

    for engine, precision, compiled in CONFIGS:
        for job, (target, model, dataset) in jobs:
            row = {"model": model, "dataset": dataset, "target": target, "job": job.id, "engine": engine,
                   "precision": precision, "compile": compiled, "batch_size": job.spec["recipe"]["batch_size"]}
            # reference loops are slow per step: fewer steps keep them inside the budget
            steps = args.steps if engine == "fast" else max(10, args.steps // 3)
            if time.perf_counter() - t_start > args.budget_s:
                row["skipped"] = "time budget"
                out["results"].append(row)
                continue
            try:
                eng = Engine("fast" if engine == "fast" else "reference", precision,
                             channels_last=engine == "fast", compile=compiled)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                img_s, ms, peak = measure(job.spec, eng, device, steps, warmup=5 if compiled else 3)
                row.update(img_per_s=img_s, ms_per_step=ms, peak_mem_mb=peak, steps=steps)
                if not compiled and precision == "bf16":
                    row["data_img_per_s"] = measure_data(job.spec, eng, device, 40)
            except Exception as e:  # one failure must not cost the other measurements
                row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            out["results"].append(row)
            print(json.dumps(row), flush=True)
            save()
    by = {(r["model"], r["engine"], r["precision"], r["compile"]): r.get("img_per_s") for r in out["results"]}
    out["ratios_vs_reference_fp32"] = {
        f"{m} {e}/{p}{'/compile' if c else ''}": (v / by[(m, "reference", "fp32", False)]
                                                 if v and by.get((m, "reference", "fp32", False)) else None)
        for (m, e, p, c), v in by.items()}
    save()


if __name__ == "__main__":
    main()
