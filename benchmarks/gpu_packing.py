"""Aggregate training throughput of K ResNet-56 jobs packed on one GPU (issue 9, item 9).

Each of K processes trains its own ResNet-56 on CIFAR-100-shaped synthetic batches (the cra CIFAR
recipe: batch 64, SGD lr 0.1, momentum 0.9, weight decay 1e-4), as `repro bench` measures a job:
warm-up steps, then timed steps with one synchronisation at the end. All K start together (a barrier)
and the aggregate images/s is the sum of theirs. This says whether `--jobs-per-gpu K` pays on a GPU
that one narrow CIFAR job leaves mostly idle.

    python benchmarks/gpu_packing.py --ks 1 2 4 --out gpu_packing.json     # on a GPU machine

Untested on a GPU when written (none was at hand); `--device cpu --steps 3 --warmup 1` checks it runs.
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.multiprocessing as mp


def one_job(rank: int, args, barrier, results) -> None:
    import repro_models as models

    torch.manual_seed(rank)
    device = torch.device(args.device)
    model = models.create(args.model, num_classes=100).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    images = torch.randn(args.batch_size, 3, 32, 32, device=device).to(memory_format=torch.channels_last)
    labels = torch.randint(0, 100, (args.batch_size,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)

    def step():
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(images), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    barrier.wait()  # every job times the same window
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    results[rank] = {"img_per_s": args.steps * args.batch_size / seconds, "seconds": seconds, "peak_mem_mb": peak}


def measure(k: int, args) -> dict:
    ctx = mp.get_context("spawn")
    barrier, manager = ctx.Barrier(k), ctx.Manager()
    results = manager.dict()
    procs = [ctx.Process(target=one_job, args=(r, args, barrier, results)) for r in range(k)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode != 0 for p in procs):
        raise SystemExit(f"error: a job of K={k} failed (exit codes {[p.exitcode for p in procs]})")
    per_job = [results[r] for r in range(k)]
    return {"k": k, "aggregate_img_per_s": sum(j["img_per_s"] for j in per_job),
            "per_job_img_per_s": [j["img_per_s"] for j in per_job],
            "peak_mem_mb": [j["peak_mem_mb"] for j in per_job]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--model", default="resnet56_cifar")
    parser.add_argument("--batch-size", type=int, default=64)  # the cra CIFAR recipe
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--bf16", action="store_true", help="autocast to bfloat16 (the fast engine's precision)")
    parser.add_argument("--out", default="gpu_packing.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    rows = []
    for k in args.ks:
        rows.append(measure(k, args))
        base = rows[0]["aggregate_img_per_s"]
        print(f"K={k}: {rows[-1]['aggregate_img_per_s']:.0f} img/s in all "
              f"({rows[-1]['aggregate_img_per_s'] / base:.2f}x K={rows[0]['k']})", flush=True)
    out = {"device": name, "model": args.model, "batch_size": args.batch_size, "steps": args.steps,
           "warmup": args.warmup, "bf16": args.bf16, "torch": torch.__version__, "results": rows}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
