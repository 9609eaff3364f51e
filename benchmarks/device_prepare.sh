#!/usr/bin/env bash
# Run HERE, on a machine with pip and PyPI, before using a lent GPU machine (see benchmarks/device_run.sh): puts
# what the device image lacks into .device_carry/ (ignored by git, carried with the run): PyAV's wheel for the
# image's Python (3.12; no PyAV there, and synth, the loader and extraction decode with it) and the 224 px face
# crop that the end-to-end rows of bench_backends.py extract (../shared does not travel).
#   bash benchmarks/device_prepare.sh [PYTHON_VERSION]     (default 3.12, the image's python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PYV="${1:-3.12}"
AV=$(grep -E '^av==' scripts/constraints.txt)  # the version CI and the tests use
mkdir -p .device_carry/whl
grep -qx '/.device_carry/' .git/info/exclude 2>/dev/null || echo '/.device_carry/' >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .device_carry/whl "$AV"
cp ../shared/fixtures/official/tiny224/cropped01.mp4 .device_carry/
du -sh .device_carry
