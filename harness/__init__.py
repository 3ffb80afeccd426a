"""Ablation studies of Keras CNN image classifiers, tracked in MLflow and tuned with Optuna."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per artifact read
__version__ = "0.1.0"
