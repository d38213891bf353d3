#!/usr/bin/env bash
# The GPU benchmark, for a bare machine with one GPU, a preinstalled torch and no internet.
# From the repository root:   bash benchmarks/gpu.sh OUT_DIR
# 1. wheels the CUDA image lacks (pydantic and its three small deps) from .whl/ if carried there
#    (benchmarks/README.md says how to fetch them), 2. the project without dependencies,
# 3. benchmarks/gpu.py (< 8 minutes) -> OUT_DIR/gpu.json, plus the GPU packing script when present.
set -euo pipefail
OUT=${1:-${OUT:-.}}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 || export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia-smi.csv" || true
export PYTHONUNBUFFERED=1
timeout 460 python3 benchmarks/gpu.py --out "$OUT/gpu.json" --budget-s 400 --steps 50 2>&1 | tee "$OUT/gpu.log"
if [ -f benchmarks/gpu_packing.py ]; then
  timeout 100 python3 benchmarks/gpu_packing.py --out "$OUT/packing.json" 2>&1 | tee "$OUT/packing.log" || true
fi
