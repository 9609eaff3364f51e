#!/usr/bin/env bash
# Run ON a lent GPU machine (the device tool's `run`, carry [".device_carry"], after benchmarks/device_prepare.sh
# here). Two parts, each one call (a call may run 10 minutes; a session has 15 minutes of device time in all):
#   bash benchmarks/device_run.sh gpu    # benchmarks/gpu_suite.sh (under 8 minutes): timeout_s 600
#   bash benchmarks/device_run.sh cpu    # bench_backends.py on this machine's CPU, 2 threads, ViT-B batch 1 and
#                                        # end to end: the bf16 rows of issue 28 if it has AMX / AVX512-BF16
# Reports go to $OUT (they come back) and stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"  # the image's python3 holds PyTorch, Lightning, onnxruntime, ...
if ! "$PY" -c 'import av' 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .device_carry/whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHON="$PY" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/device_out}"
mkdir -p "$OUT"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-); bf16 flags: $(grep -m1 -ow -E 'amx_bf16|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
case "${1:-}" in
    gpu) bash benchmarks/gpu_suite.sh "${@:2}" | tee "$OUT/gpu_suite.md" ;;  # --cpu: the tiny check
    cpu) "$PY" benchmarks/bench_backends.py --models B --batches 1 --reps 2 --threads 2 \
            --video .device_carry/cropped01.mp4 | tee "$OUT/backends_cpu.md" ;;
    *) echo "usage: bash benchmarks/device_run.sh gpu|cpu" >&2; exit 2 ;;
esac
