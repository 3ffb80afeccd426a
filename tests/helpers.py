"""What many tests share: the repository's paths, the CLI run as a user runs it (in a new
process, or in the background to be signalled), a store's runs read back, a quiet Context,
entry files, and the small chains of entries several test modules train."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENTRIES = sorted(p.stem for p in (REPO / "ablations").glob("*.yaml"))

# One epoch on a few hundred digits: enough to exercise every part, fast on 2 cores.
TINY = ["data.subset=240", "training.epochs=1"]
LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"  # every session's and CI's machine runs it
OUTSIDE_ENV = ("MLFLOW_TRACKING_URI", "HARNESS_ROOT", "MLFLOW_REGISTRY_URI")  # would point runs elsewhere


def run_cli(args, cwd, env=None, timeout=600, **kwargs) -> subprocess.CompletedProcess:
    """`harness ARGS` in a subprocess, as a user would type it."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HARNESS_ROOT")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def start_cli(args, cwd, stderr=subprocess.STDOUT) -> subprocess.Popen:
    """`harness ARGS` started in the background, its lines readable as they are printed
    (stdout, and stderr unless given apart), Ctrl-C deliverable (interruptible)."""
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        text=True,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # see each line as it is printed
        preexec_fn=interruptible,
    )


def store_runs(project: Path, experiment: str):
    """(MlflowClient, every run of `experiment` in the project's store; [] if there is none)."""
    from mlflow import MlflowClient

    from harness.tracking.uri import default_tracking_uri

    client = MlflowClient(default_tracking_uri(project))
    found = client.get_experiment_by_name(experiment)
    return client, (client.search_runs([found.experiment_id]) if found else [])


def interruptible() -> None:
    """preexec_fn for a child a test will Ctrl-C: a shell that runs the suite in the background
    (job control off) starts it with SIGINT ignored, and Python keeps an inherited SIG_IGN."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def quiet(project: Path):
    """A Context for in-process calls: the project, its local store, no printing."""
    from harness.context import Context

    return Context(project, echo=lambda _: None, verbose=0)


def write_entry(project: Path, name: str, text: str) -> Path:
    path = project / "ablations" / f"{name}.yaml"
    path.write_text(text)
    return path


TINY_CHAIN = {  # a short chain of tiny entries on 300 digits (compare, budgets, records)
    "tiny": """\
description: A tiny CNN, the root of the test chain.
model: {blocks: [{filters: 4, convs: 1}], padding: same}
optimizer: {name: sgd, learning_rate: 0.05}
training: {epochs: 3, batch_size: 64}
data: {subset: 300}
report: {val_accuracy: 0.5}
""",
    "tiny_adam": "extends: tiny\ndescription: Adam instead of SGD.\noptimizer: {name: adam, learning_rate: 0.01}\n",
    "tiny_wide": "extends: tiny_adam\ndescription: Twice the filters.\nmodel: {blocks: [{filters: 8, convs: 1}]}\n",
}


GEO_CHAIN = {  # a chain whose middle step changes the geometry (leave-one-out, study)
    # 8x8 digits, one valid 3x3 block: 8 -> 6 -> pool 3.
    "geo": "description: One small valid block.\nmodel: {blocks: [{filters: 4, convs: 1}], padding: valid}\n"
    "optimizer: {name: adam, learning_rate: 0.01}\ntraining: {epochs: 2, batch_size: 64}\ndata: {subset: 300}\n",
    "geo_same": "extends: geo\ndescription: Same padding.\nmodel: {padding: same}\n",
    # Two blocks: with same padding 8 -> 4 -> 2; with valid padding the second block gets 1x1 to pool.
    "geo_deep": "extends: geo_same\ndescription: A second block.\n"
    "model: {blocks: [{filters: 4, convs: 1}, {filters: 4, convs: 1}]}\n",
}


TUNABLE = """\
extends: baseline
description: A tiny Adam CNN for tuning tests.
model:
  blocks: [{filters: 8, convs: 1}]
optimizer: {name: adam, learning_rate: 0.01}
training: {epochs: 4, batch_size: 64}
search:
  optimizer.learning_rate: {float: [1.0e-7, 0.05], log: true}
"""


SLOW = """\
extends: baseline
description: Small enough for tests, slow enough to be killed mid-run.
model: {blocks: [{filters: 16, convs: 2}], padding: same}
optimizer: {name: adam, learning_rate: 0.01}
training: {epochs: 8, batch_size: 8}
search:
  optimizer.learning_rate: {float: [1.0e-3, 0.05], log: true}
"""


def wait_for(process, marker, seconds=180):
    deadline = time.time() + seconds
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            return "".join(seen)
        if time.time() > deadline:
            break
    raise AssertionError(f"never saw {marker!r}:\n{''.join(seen)[-2000:]}")


# CI installs JAX and sets HARNESS_REQUIRE_JAX=1: there, a missing JAX fails these tests.
needs_jax = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None and not os.environ.get("HARNESS_REQUIRE_JAX"),
    reason="JAX is not installed (pip install jax; CI installs it)",
)
