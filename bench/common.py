"""Shared set-up for the benchmarks: a throw-away project, the CIFAR-10 folder subset, the
machine's description. Benchmarks print figures; they are not tests."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = os.environ.get(
    "HARNESS_BENCH_DATA", "/tmp/cifar"
)  # tar xzf ../shared/data/cifar10-train-jpg.tar.gz -C /tmp/cifar


def machine() -> str:
    """One line naming the machine the figures came from."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = ""
    if shutil.which("nvidia-smi"):
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True
        )
        gpu = f", GPU {out.stdout.strip()}" if out.returncode == 0 else ""
    import keras

    keras_version = f"Keras {keras.__version__} on {keras.backend.backend()}"
    return f"{os.cpu_count()} cores ({cpu}){gpu}, Python {platform.python_version()}, {keras_version}"


def scratch_project() -> Path:
    """A temporary project with the repository's entries and an empty store."""
    folder = Path(tempfile.mkdtemp(prefix="harness-bench-"))
    shutil.copytree(REPO / "ablations", folder / "ablations")
    return folder


def data_overrides(data_dir: str, subset: int) -> list[str]:
    """Spec overrides for the CIFAR-10 image folder at `data_dir` (or `digits`), subset N."""
    if data_dir == "digits":
        return ["data.source=digits"] + ([f"data.subset={subset}"] if subset < 1437 else [])
    if not Path(data_dir, "train").is_dir():
        raise SystemExit(
            f"no CIFAR-10 image folder at {data_dir}: tar xzf ../shared/data/cifar10-train-jpg.tar.gz -C {data_dir}"
        )
    return [f"data.source=folder:{data_dir}", f"data.subset={subset}"]


def data_label(data_dir: str, subset: int, dataset) -> str:
    """How a benchmark's data reads in its printout, e.g. CIFAR-10 folder subset 5000 (4500 train / 500 val)."""
    name = "digits" if data_dir == "digits" else f"CIFAR-10 folder subset {subset}"
    return f"{name} ({len(dataset.train)} train / {len(dataset.val)} val)"


def median(values) -> float:
    import statistics

    return statistics.median(values)
