"""Datasets: the sources (digits, cifar10, folder:DIR), the stratified splits and their
fingerprints (`splits`, a leaf every other module here imports), the decoded folder cache,
the split memo, and the batches that feed training.

May import entries and the shared top-level modules; never mlflow or optuna. Keras and
TensorFlow are imported only where batches are made or CIFAR-10 is downloaded.
"""
