#!/usr/bin/env bash
# Download, into the git-ignored folder .whl/, the wheels that the GPU machine lacks for
# bench/device_check.sh (see bench/README.md). Run here, from anywhere in the checkout:
#
#     bash bench/fetch_device_wheels.sh
#
# The machine (Python 3.12, x86-64, no package registry) has JAX 0.11.2 with CUDA 13, NumPy,
# h5py, SciPy, scikit-image, OpenCV, Matplotlib, Pillow, rich, absl-py, ml-dtypes, packaging
# and typing-extensions, but no Keras and no pycocotools. Keras needs, beyond those, namex
# (pure Python) and optree (compiled: the cp312 manylinux x86-64 wheel); pycocotools (the
# abi3 wheel; it needs only NumPy) because mrcnn.evaluation imports mrcnn.report, which
# imports it. albumentations (augmentation only) is imported only where it is used, so it
# does not travel. About 3.2 MB in all. Versions are pinned: one version of each, so that
# the machine's `pip install --no-index --no-deps .whl/*.whl` is the same every time.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(
    keras==3.15.1
    namex==0.1.0
    optree==0.20.0
    pycocotools==2.0.11
)
mkdir -p .whl
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
# Keep only the pinned versions (two versions of one package stop the machine's install).
for wheel in .whl/*.whl; do
    name=$(basename "$wheel" | cut -d- -f1 | tr '_' '-' | tr 'A-Z' 'a-z')
    version=$(basename "$wheel" | cut -d- -f2)
    if ! printf '%s\n' "${WHEELS[@]}" | grep -qx "$name==$version"; then
        echo "removing $wheel (not pinned here)"
        rm -f "$wheel"
    fi
done
ls -l .whl
du -sh .whl
