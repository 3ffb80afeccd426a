"""Import Keras (and TensorFlow) without TensorFlow's C++ start-up lines on stderr.

TensorFlow 2.21 writes absl log lines straight to file descriptor 2 while it loads and
first looks for devices, whatever TF_CPP_MIN_LOG_LEVEL says. They bury the harness's own
one-line messages, so the import runs with descriptor 2 pointed at /dev/null.
"""

from __future__ import annotations

import os
import sys

from harness.interrupts import GUARD


def load_keras() -> None:
    """Import keras and initialise the backend's devices with C++ logging silenced."""
    if "keras" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    GUARD.stderr_fd = saved  # a signal's message still reaches the terminal
    try:
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")
            # Every trial and seed builds a new model, so every predict is a first trace: TF's
            # "triggered tf.function retracing" advice would print once per run and means nothing here.
            tf.get_logger().setLevel("ERROR")
    finally:
        GUARD.stderr_fd = None
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
