"""Matplotlib figures saved as PNG: learning curves, confusion matrix, history charts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def learning_curves(history: dict[str, list[float]], title: str, path: Path) -> Path:
    """Loss and accuracy, train and validation, per epoch."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            values = history.get(key)
            if values:
                ax.plot(range(1, len(values) + 1), values, marker=".", label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], title: str, path: Path) -> Path:
    """Counts, true class down, predicted class across."""
    size = max(4.0, 0.55 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=8, color="white" if count > threshold else "black")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def history_chart(
    names: Sequence[str],
    means: Sequence[float],
    stds: Sequence[float],
    claims: Sequence[float | None],
    metric: str,
    path: Path,
) -> Path:
    """The history as bars (mean +/- std over seeds), with the report's claims as markers."""
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(names) + 2), 4.5))
    x = np.arange(len(names))
    ax.bar(x, means, yerr=stds, capsize=3, color="#4c78a8", label="measured (mean +/- std)")
    claimed = [(i, c) for i, c in enumerate(claims) if c is not None]
    if claimed:
        ax.scatter([i for i, _ in claimed], [c for _, c in claimed], color="#e45756", zorder=3, label="report")
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_ylabel(metric)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
