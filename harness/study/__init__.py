"""The whole study: `harness study` (every step of a history and its leave-one-out
variants, over seeds, as cells that workers claim through Optuna's storage, then the final
steps once) and `harness ablate --leave-one-out` (the same variants in one process).

May import tuning (for the shared Optuna storage), runs, results, tracking, training, data,
entries and the shared top-level modules; nothing above it but the command line imports it.
"""
