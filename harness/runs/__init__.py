"""One entry -> one tracked run or a seed group: planning (resolve, load, check, with
nothing written), the tracked fit (MLflow run, per-epoch logging, checkpoints, evaluation,
artifacts), the runner that reuses finished runs and resumes interrupted ones, and the
final run (the picked model tested once and registered).

The bridge between training (which knows no MLflow) and tracking (which knows no Keras):
may import results, tracking, training, data, entries and the shared top-level modules.
"""
