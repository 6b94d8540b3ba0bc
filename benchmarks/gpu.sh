#!/usr/bin/env bash
# The `full` training profile for both tasks on one GPU, in under 10 minutes: test figures,
# training images/s, the share of time spent waiting on data, and GPU utilisation sampled
# with nvidia-smi every 0.5 s. For a machine that is lent a GPU; nothing depends on it.
#
#   benchmarks/gpu.sh                        # on the GPU machine (12 epochs per task)
#   benchmarks/gpu.sh --epochs 20 --json out.json
#   benchmarks/gpu.sh --device cpu --quick   # wiring check without a GPU (about 1 minute)
#
# The mapping figures on the same GPU, in a second call, with the lanes bundle it trained
# (keep it with --work DIR; bench_geo picks CUDA when present, --device to choose):
#   python -m benchmarks.bench_geo --model DIR/run_lanes/bundle --threads 16          # km^2/min
#   python -m benchmarks.bench_geo --areas --model DIR/run_lanes/bundle --threads 16  # 1 km^2
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
echo "cpus: $(nproc)"
exec "$PY" -m benchmarks.bench_gpu "$@"
