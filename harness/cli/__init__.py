"""The `harness` command: the verbs (parse the options, call the library, print), the
console entry point, and the two web UIs it serves (MLflow's, optuna-dashboard).

May import every wing below it. Holds no logic a verb could not lose: checks, tables and
runs live in the wings; a verb imports what it needs inside its function, so `harness
--help`, `list` and `show` answer without TensorFlow, MLflow or Optuna.
"""
