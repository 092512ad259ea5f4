#!/usr/bin/env bash
# The one GPU run: kernel tests natively on the GPU, then the kernel and end-to-end
# benchmarks at ImageBind-huge shapes. Budget: under 8 minutes on one A100/H100/H200.
# PYTHON selects the interpreter (default python3). Every step has its own time limit and
# the benchmarks write their tables as they go, so a step cut short keeps what it measured.
#
#   bash benchmarks/gpu_suite.sh [OUT_DIR]      (default benchmarks/results/<date>-<gpu>/kernels;
#                                                 a rerun the same day: kernels-2, kernels-3, ...)
#
# Writes OUT_DIR/{machine.json, env.txt, tests.txt, attention.{json,md}, patch_embed.{json,md},
# encoders.{json,md}, encoders_compile.{json,md}, steps.txt}.
# Each step runs even if an earlier one failed; the exit status is the first failure.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_suite: no CUDA device visible to torch; nothing to do" >&2
  exit 3
fi
out=${1:-$("$PY" -m benchmarks.common dir kernels --gpu --fresh)} || exit 1
mkdir -p "$out"
unset TRITON_INTERPRET
. benchmarks/steps.sh  # step NAME TIMEOUT_S CMD...
"$PY" -m benchmarks.common record > "$out/machine.json"   # the machine record every benchmark carries
{ nvidia-smi; "$PY" -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"; date -u; } > "$out/env.txt" 2>&1
step tests 120 "$PY" -m pytest tests/kernels tests/runtime/test_triton_backend.py -q -p no:cacheprovider -o addopts="" \
  --junitxml="$out/tests.xml" > "$out/tests.txt" 2>&1
tail -n 30 "$out/tests.txt"
step attention 90 "$PY" -m benchmarks.kernels.bench_attention "$out/attention" --batches 64,256
step patch_embed 45 "$PY" -m benchmarks.kernels.bench_patch_embed "$out/patch_embed"
step encoders 110 "$PY" -m benchmarks.kernels.bench_encoder_e2e "$out/encoders" --modalities vision,audio,depth \
  --batches 1,8,64 --dtypes bf16,fp16 --no-compile
step encoders_compile 100 "$PY" -m benchmarks.kernels.bench_encoder_e2e "$out/encoders_compile" --modalities vision \
  --batches 8,64 --dtypes bf16 --compile-mode default
echo "results in $out"
exit $status
