#!/usr/bin/env bash
# The `masking` and `modules` studies of docs/ablations.md at a GPU budget (one GPU, e.g. an H200): the same
# 14x14-position geometry (ablate14_cpu: 112 px, 8 px patches, 1568 tokens) on a 4x larger world, 2000
# iterations of batch 32 per arm (~67x the CPU run's 120 x 8 clips), 3 seeds. Pretraining runs on the GPU
# (Lightning picks it), features on the GPU in bf16 (--device auto, --precision auto), the probes on the CPU.
# Not run yet: no GPU was available to the session that wrote it (docs/ablations.md records its table once run).
# Resumable: run the same command again after an interruption; finished arms are kept.
#   bash benchmarks/gpu_ablate.sh [OUT]          (default OUT: ablate_gpu)
set -euo pipefail
OUT="${1:-ablate_gpu}"
MARLIN="${MARLIN:-.venv/bin/marlin}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || { echo "no GPU visible" >&2; exit 2; }
time "$MARLIN" ablate masking modules --out "$OUT" --steps 2000 --seeds 3 --num-items 2000 --test-items 1000 \
    --readout-pool 2 --workers 12 --feature-batch 64 --quiet \
    --set overrides.batch_size=32 --set overrides.cache_mb=4096 --set overrides.ckpt_every=500
for study in masking modules; do
    echo "== $OUT/$study/ablation.md"; cat "$OUT/$study/ablation.md"
done
