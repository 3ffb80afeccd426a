"""Ablation studies of Keras CNN image classifiers, tracked in MLflow and tuned with Optuna."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
__version__ = "0.1.0"
