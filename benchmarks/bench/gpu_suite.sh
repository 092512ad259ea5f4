#!/usr/bin/env bash
# The GPU suite of `bindrt bench`: imagebind_huge-size vision, audio and depth towers with random
# weights, every backend and tier that runs on the GPU, batch 1 to 128. Fits a 10-minute lease on one
# A100/H100/H200 (each step has its own time limit; a step cut short keeps the rows it wrote).
# The same command gives V100/A100 figures on a user's own machine.
#
#   bash benchmarks/bench/gpu_suite.sh [OUT_DIR]     (default benchmarks/results/<date>-<gpu>/bench)
#   EXPORT=1 bash benchmarks/bench/gpu_suite.sh      (also export fp32/fp16 ONNX graphs first, for the
#                                                     onnxruntime CUDA EP and TensorRT rows; ~5 min more)
#
# Rows that cannot run here (TensorRT not installed, no onnxruntime-gpu, no exported graphs) are
# `skipped:` lines in the report, with the reason. Exit status: the first failing step's.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "bench gpu_suite: no CUDA device visible to torch; nothing to do" >&2
  exit 3
fi
out=${1:-$("$PY" -m benchmarks.common dir bench --gpu --fresh)} || exit 1
mkdir -p "$out"
unset TRITON_INTERPRET
work=${WORKDIR:-/tmp/bindrt-gpu-suite}
. benchmarks/steps.sh  # step NAME TIMEOUT_S CMD...
step bundle 120 "$PY" -c "
from pathlib import Path
from benchmarks.bench.cpu_suite import build_bundle
import os
build_bundle(Path('$work/huge'), 'imagebind_huge', ['vision', 'audio', 'depth'], export=os.environ.get('EXPORT') == '1')
"
common=(--device cuda --modalities vision audio depth --batch 1,8,32,128 --duration 1.5 --rounds 3 --warmup 2 --plots --out "$out")
step eager_and_kernels 300 "$PY" -m bindrt bench "$work/huge" --name gpu-suite "${common[@]}" \
  --backends torch:fp32 torch:bf16 torch:fp16 triton:bf16 triton:fp16 onnxruntime:fp16 tensorrt:fp16 tensorrt:bf16
step compile 240 "$PY" -m bindrt bench "$work/huge" --name gpu-compile "${common[@]}" --no-preprocess \
  --backends torch:bf16 torch.compile:bf16 torch.compile:fp16
echo "results in $out"
exit $status
