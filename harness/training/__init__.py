"""The training core: the model an entry describes, fit with its callbacks, the whole
training state backed up every epoch, evaluation with scikit-learn, what the `auto`
settings mean on this device, and the geometry check that runs before Keras loads.

May import data, entries and the shared top-level modules; never mlflow or optuna, so
`fit` works alone and its overhead is measurable against plain Keras.
"""
