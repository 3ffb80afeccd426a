"""What the `auto` settings mean on this machine: the device, the precision policy, XLA, and
deterministic ops. Training core: imports neither mlflow nor optuna."""

from __future__ import annotations

import functools
from typing import Optional

import keras

from harness.entries.spec import Spec


def device_kind() -> str:
    """'gpu' when the Keras backend sees an accelerator, else 'cpu'."""
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
        if backend == "jax":
            import jax

            return "gpu" if jax.default_backend() in ("gpu", "cuda", "rocm") else "cpu"
        if backend == "torch":
            import torch

            return "gpu" if torch.cuda.is_available() else "cpu"
    except Exception:  # noqa: BLE001 - a broken device query means: use the CPU settings
        return "cpu"
    return "cpu"


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none), read once."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def auto_precision(device: str, backend: str, flags: frozenset[str], capability: Optional[float] = None) -> str:
    """What training.precision "auto" means. On a GPU: mixed_bfloat16 where it has bfloat16
    tensor cores (compute capability 8.0 and later: A100, H100), which needs no loss scaling,
    else mixed_float16. On a CPU: mixed_bfloat16 where the CPU has AMX-BF16 and the backend is
    TensorFlow (the final entry trained at 1.5-2.4x its float32 speed on such a Xeon, README,
    Performance), else float32 (bfloat16 ran at half the float32 speed on a CPU without
    bfloat16 units)."""
    if device == "gpu":
        return "mixed_bfloat16" if capability is not None and capability >= 8.0 else "mixed_float16"
    if backend == "tensorflow" and "amx_bf16" in flags:
        return "mixed_bfloat16"
    return "float32"


@functools.lru_cache(maxsize=1)
def gpu_capability() -> Optional[float]:
    """The first GPU's CUDA compute capability (9.0 for an H100), or None."""
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            value = getattr(jax.devices()[0], "compute_capability", None)
            return float(value) if value else None
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            major, minor = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))
            return major + minor / 10
        if backend == "torch":
            import torch

            major, minor = torch.cuda.get_device_capability()
            return major + minor / 10
    except Exception:  # noqa: BLE001 - unknown: the float16 rule, which every GPU runs
        return None
    return None


def resolve_precision(spec: Spec) -> str:
    """training.precision, with "auto" resolved for this machine (auto_precision)."""
    if spec.training.precision != "auto":
        return spec.training.precision
    device = device_kind()
    capability = gpu_capability() if device == "gpu" else None
    return auto_precision(device, keras.backend.backend(), cpu_flags(), capability)


def set_determinism(enabled: bool) -> None:
    """Deterministic kernels on (training.deterministic) or off, for TensorFlow; JAX on the
    CPU is deterministic already."""
    if keras.backend.backend() != "tensorflow":
        return
    from tensorflow.python.framework import config

    if enabled:
        config.enable_op_determinism()
    elif config.is_op_determinism_enabled():
        config.disable_op_determinism()
