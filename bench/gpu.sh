#!/usr/bin/env bash
# The prepared GPU check (README, GPU): one command on a lent device machine, which has
# Python 3.12 with JAX (CUDA) and no TensorFlow, Keras, MLflow or network. It installs the
# wheels bench/gpu_wheels.sh carried in .whl/, unpacks the CIFAR-10 copy carried in .data/,
# and runs bench/gpu.py with Keras on JAX. Extra arguments go to bench/gpu.py (--tiny: a
# dry run of the whole script, on any machine).
#   device: run(command="bash bench/gpu.sh", carry=[".whl", ".data"], timeout_s=590)
# bench/gpu.py keeps itself to --budget-seconds (480 by default) and tees its output to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" KERAS_BACKEND=jax PYTHONUNBUFFERED=1 HARNESS_CACHE=/tmp/harness-cache
mkdir -p /tmp/cifar
[ -d /tmp/cifar/train ] || tar xzf .data/cifar10-train-jpg.tar.gz -C /tmp/cifar
OUT_DIR="${OUT:-/tmp/gpu-out}"
mkdir -p "$OUT_DIR"
echo "set up (wheels, CIFAR-10 unpacked) in ${SECONDS} s"
"$PYTHON" bench/gpu.py --data /tmp/cifar --out "$OUT_DIR" "$@" 2>&1 | tee "$OUT_DIR/gpu.log"
