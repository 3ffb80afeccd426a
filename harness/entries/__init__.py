"""Ablation entries: the strict schema (`spec`), the registry that loads `ablations/*.yaml`
and resolves `extends`, `--set` overrides, diffs against the parent, the lineage list, a
run's settings, and YAML read safely.

The bottom wing: imports only the shared top-level modules (errors), pydantic and PyYAML;
never Keras, TensorFlow, mlflow or optuna.
"""
