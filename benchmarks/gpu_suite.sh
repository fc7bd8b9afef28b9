#!/usr/bin/env bash
# The GPU check on a lent GPU machine, as the device tool's `run` calls it from the repository
# root (README, "GPU check"; wheels from benchmarks/gpu_wheels.sh, carried as ['.whl']):
#
#   bash benchmarks/gpu_suite.sh [benchmarks/gpu_suite.py options, e.g. --sections a d]
#
# Uses the image's own python3 (jax, flax, optax, orbax-checkpoint, torch with CUDA); writes
# $OUT/gpu_suite.log and $OUT/gpu_suite.json (OUT defaults to /tmp/gpu_suite outside the tool).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_suite}"
mkdir -p "$OUT"

if compgen -G ".whl/*.whl" >/dev/null; then  # what the image lacks (grain, tfds, ml-collections, ...)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # dtda_jax, benchmarks, tests: not installed
export PYTHONUNBUFFERED=1
# JAX and PyTorch share the GPU in one process: JAX preallocates this fraction (its default is
# 0.75), PyTorch's caching allocator takes from the rest.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.5}"
# The suite sets TF32 itself, per variant (jax: matmul precision; torch: allow_tf32); an
# environment override would silently change what the 'tf32 off' rows measure.
unset NVIDIA_TF32_OVERRIDE TORCH_ALLOW_TF32_CUBLAS_OVERRIDE

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | tee "$OUT/nvidia_smi.txt"
python3 benchmarks/gpu_suite.py --out "$OUT/gpu_suite.json" "$@" 2>&1 | tee "$OUT/gpu_suite.log"
