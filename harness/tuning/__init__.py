"""Optuna: studies over an entry's search space (each trial a tracked child run), their
storage (journal file or an RDB), pruning from inside Keras, and the best trial written out
as a new entry.

May import runs, results, tracking, training, data, entries and the shared top-level
modules. The only wing besides `study` that imports optuna.
"""
