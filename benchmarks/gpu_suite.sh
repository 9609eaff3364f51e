#!/usr/bin/env bash
# The GPU benchmark suite: one command, under 8 minutes on one GPU, one markdown report (see gpu_suite.py):
# extraction clips/s and MFU (bf16, ViT-S/B/L, batch 64), pretraining s/iteration ours vs the official loop
# (bf16 and fp32) with peak memory, the shard loader's clips/s with this machine's cores, an FSDP run. It makes its
# own input (a synthetic face world). Exit status: 0 when every part ran, 1 when one failed (listed at the end of
# the report), 124 when the whole suite ran past 13 minutes.
#
#   bash benchmarks/gpu_suite.sh            # on a GPU machine; the report also goes to gpu_suite_<date>.md
#   bash benchmarks/gpu_suite.sh --cpu      # tiny CPU run: checks that every part runs, FSDP over two gloo
#                                           # processes included (numbers mean nothing)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
report="gpu_suite_$(date -u +%Y%m%d_%H%M).md"
[[ " $* " == *" --cpu "* ]] && report="/tmp/$report"
status=0
timeout 780 "$PY" benchmarks/gpu_suite.py "$@" | tee "$report" || status=$?
echo "report: $report (exit status $status)"
exit "$status"
