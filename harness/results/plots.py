"""Matplotlib figures saved as PNG: learning curves (one run, or the mean and spread of a
seed group), the confusion matrix, the history as a waterfall of changes, and the
leave-one-out forest plot. Readable at 80 DPI in a browser; epochs on integer ticks."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from harness.paths import write_file  # noqa: E402

BLUE, RED, GREY, GREEN = "#4c78a8", "#e45756", "#9d9d9d", "#54a24b"
DPI = 100  # the PNGs are shown at about 80 DPI in a browser: fonts stay readable


def _save(fig, path: Path) -> Path:
    """The figure in the format its suffix names (png without one), written whole or not at
    all (paths.write_file)."""
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, dpi=DPI, format=Path(path).suffix.lstrip(".").lower() or "png")
    plt.close(fig)
    return write_file(path, image.getvalue())


def learning_curves(history: dict[str, list[float]], title: str, path: Path) -> Path:
    """Loss and accuracy, train and validation, per epoch of one run."""
    return seed_curves({k: [v] for k, v in history.items()}, title, path)


def seed_curves(histories: dict[str, list[list[float]]], title: str, path: Path) -> Path:
    """Loss and accuracy per epoch: the mean over seeds, with a band of +/- one standard
    deviation where there are several (each metric: one list of values per seed)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    seeds = max((len(runs) for runs in histories.values()), default=1)
    longest = 1
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, label, color in ((metric, "train", BLUE), (f"val_{metric}", "validation", RED)):
            runs = [r for r in histories.get(key, []) if r]
            if not runs:
                continue
            length = min(len(r) for r in runs)
            longest = max(longest, length)
            values = np.array([r[:length] for r in runs], dtype=float)
            epochs = np.arange(1, length + 1)
            mean = values.mean(axis=0)
            ax.plot(epochs, mean, marker=".", color=color, label=label if len(runs) == 1 else f"{label} (mean)")
            if len(runs) > 1:
                std = values.std(axis=0, ddof=1)
                ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        if longest <= 10:  # MaxNLocator puts a run of one or two epochs at 0.95, 1.05
            ax.set_xticks(range(1, longest + 1))
            ax.set_xlim(0.5, longest + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title + (f" ({seeds} seeds: mean, band +/- 1 std)" if seeds > 1 else ""))
    return _save(fig, path)


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
    return _save(fig, path)


def _finite(value) -> Optional[float]:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def waterfall(table, key: str, path: Path) -> Path:
    """One bar per step of the history: its change against its parent (mean over seeds),
    the 95% interval as an error bar, steps with Welch p < 0.05 in a strong colour and
    starred, the report's claimed change as a diamond beside the bar. Steps that were not
    run, or whose parent was not, are named with the reason instead of a bar."""
    names = list(table["entry"])
    fig, ax = plt.subplots(figsize=(max(7.0, 0.7 * len(names) + 2), 5.0))
    x = np.arange(len(names))
    for i, row in enumerate(table.itertuples(index=False)):
        delta, p = _finite(row.delta), _finite(row.p_value)
        if delta is None:
            reason = row.status or row.delta_note or "no parent"
            ax.annotate(reason, (i, 0), rotation=90, ha="center", va="bottom", fontsize=9, color="#555555")
            continue
        significant = p is not None and p < 0.05
        ax.bar(i, delta, color=GREEN if significant else BLUE, alpha=1.0 if significant else 0.55, width=0.6)
        low, high = _finite(row.delta_ci_low), _finite(row.delta_ci_high)
        if low is not None and high is not None:
            ax.errorbar(i, delta, yerr=[[delta - low], [high - delta]], color="black", capsize=3, linewidth=1)
        if significant:
            ax.annotate("*", (i, high if high is not None else delta), ha="center", va="bottom", fontsize=12)
    claimed = [(i, _finite(v)) for i, v in enumerate(table["report_delta"]) if _finite(v) is not None]
    if claimed:
        ax.scatter(
            [i + 0.3 for i, _ in claimed],
            [v for _, v in claimed],
            marker="D",
            color=RED,
            zorder=3,
            label="the report's claimed change (CIFAR-10)",
        )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlim(-0.6, len(names) - 0.2)  # one slot per step whatever is drawn (a lone diamond no longer sets the range)
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_ylabel(f"change in {key} vs parent")
    ax.set_title(f"What each step changed in {key}\nmean over seeds, 95% interval; * Welch p < 0.05", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    if claimed:
        ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def forest(rows, key: str, not_run: Sequence[str], path: Path) -> Path:
    """Leave-one-out: each step's contribution to the full entry (full minus without), with
    its 95% interval, sorted, zero line drawn; steps with no result listed apart, with why.
    rows: (step, contribution, ci_low or None, ci_high or None, p or None)."""
    rows = sorted(rows, key=lambda r: r[1])
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.45 * len(rows) + 1.8)))
    for i, (_step, value, low, high, p) in enumerate(rows):
        significant = p is not None and p < 0.05
        color = GREEN if significant else BLUE
        if low is not None and high is not None:
            ax.plot([low, high], [i, i], color=color, linewidth=2)
        ax.plot([value], [i], "o", color=color, markersize=7)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [f"{r[0]}{' *' if r[4] is not None and r[4] < 0.05 else ''}" for r in rows])
    ax.set_xlabel(f"contribution to {key} (full minus without the step), 95% interval")
    title = "Leave-one-out: what each step contributes; * Welch p < 0.05"
    if not_run:
        title += f"\nnot run: {', '.join(not_run)}"
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)
