#!/usr/bin/env bash
# The wheels the harness needs on a lent GPU machine that its image lacks (README, GPU).
# That image has Python 3.12 with JAX, NumPy, pandas, scikit-learn, SciPy, matplotlib,
# Pillow, PyYAML, rich, typer, click, psutil, requests, protobuf, h5py, absl-py, ml-dtypes
# and more (the device tool's KINDS.md), but no Keras, MLflow, Optuna or pydantic, and no
# network. This downloads exactly the missing ones, cp312 manylinux, into .whl/ (ignored),
# copies the CIFAR-10 archive into .data/ (ignored: ../shared does not travel), checks that
# the two fit the 64 MiB a device call may carry beside the repository, and lists them.
# The set was found by a dry run of bench/gpu.sh --tiny in a Python 3.12 environment holding
# only the image's packages (JAX on the CPU, no TensorFlow).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(
    keras==3.15.1 namex==0.1.0 optree==0.20.0                         # Keras 3 and what it imports
    pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5  # the spec schema
    mlflow-skinny==3.17.2 mlflow-tracing==3.17.2                      # the tracking client (no UI: not needed there)
    sqlalchemy==2.1.9 alembic==1.20.1 mako==1.4.3 greenlet             # MLflow's SQLite store and its migrations
    sqlparse==0.6.1 cachetools==7.3.3 python-dotenv==1.2.4 importlib-metadata==9.1.0
    opentelemetry-api opentelemetry-sdk opentelemetry-semantic-conventions opentelemetry-proto  # mlflow imports them
    gitpython gitdb smmap                                              # the commit tag
    fastapi==0.165.0 starlette==1.10.0 databricks-sdk==0.162.0         # imported by `import mlflow` (genai, gateway)
    cryptography==50.0.2 cffi==2.1.1 pycparser                        # MLflow's SQL store imports them
    optuna==5.1.0 colorlog==6.12.0                                     # harness study's work queue (the journal file)
)
ARCHIVE="${HARNESS_CIFAR_ARCHIVE:-../shared/data/cifar10-train-jpg.tar.gz}"
LIMIT=$((64 * 1024 * 1024))

rm -rf .whl && mkdir -p .whl .data
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_34_x86_64 \
    -d .whl "${WHEELS[@]}" 2>&1 | grep -v "^WARNING: Location" || true
[ -f "$ARCHIVE" ] || { echo "no CIFAR-10 archive at $ARCHIVE (set HARNESS_CIFAR_ARCHIVE)" >&2; exit 2; }
cp "$ARCHIVE" .data/cifar10-train-jpg.tar.gz

wheels=$(du -cb .whl/*.whl | tail -1 | cut -f1)
data=$(du -cb .data/* | tail -1 | cut -f1)
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
total=$((wheels + data + tree))
ls -1 .whl | sed 's/^/  /'
printf 'wheels %d files, %.1f MiB; CIFAR-10 archive %.1f MiB; repository %.1f MiB; together %.1f of %d MiB\n' \
    "$(ls .whl | wc -l)" "$(echo "$wheels/1048576" | bc -l)" "$(echo "$data/1048576" | bc -l)" \
    "$(echo "$tree/1048576" | bc -l)" "$(echo "$total/1048576" | bc -l)" $((LIMIT / 1048576))
if [ "$total" -gt "$LIMIT" ]; then
    echo "too large for one device call: drop wheels or carry less" >&2
    exit 1
fi
