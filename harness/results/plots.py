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

BLUE, RED, GREY, GREEN, ORANGE = "#4c78a8", "#e45756", "#9d9d9d", "#54a24b", "#f2a33a"
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


# One colour per verdict, the same in the waterfall and the forest plot.
VERDICT_COLOURS = {
    "helped": GREEN,
    "hurt": RED,
    "no practical difference": BLUE,
    "undecided": ORANGE,
    "cannot act": GREY,
}


def verdict_colour(verdict: str) -> str:
    """The colour of a verdict ('undecided (n=2)' is undecided's)."""
    return next((c for word, c in VERDICT_COLOURS.items() if str(verdict).startswith(word)), GREY)


def _verdict_legend(ax, seen: set[str], extra: Sequence = ()) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(color=c, label=word) for word, c in VERDICT_COLOURS.items() if word in seen]
    ax.legend(handles=[*handles, *extra], loc="best", fontsize=8)


def waterfall(table, key: str, path: Path) -> Path:
    """The history as a waterfall: the first step's metric as a bar from zero, then each
    step's change against its parent as a bar from the level the steps before it reached,
    coloured by its verdict, its 95% interval as an error bar (inside [0, 1] for accuracy);
    the report's figure for each step as a diamond. A step that was not run, or whose parent
    was not, is named with why, and the next measured step starts again from its own level."""
    names = list(table["entry"])
    fig, ax = plt.subplots(figsize=(max(7.0, 0.7 * len(names) + 2), 5.0))
    level: Optional[float] = None
    seen: set[str] = set()
    bounded = "accuracy" in key or "f1" in key
    for i, row in enumerate(table.itertuples(index=False)):
        mean, delta = _finite(table[key].iloc[i]), _finite(row.delta)
        verdict = str(getattr(row, "verdict", "") or "")
        if delta is not None and level is not None:
            colour = verdict_colour(verdict)
            seen.add(next((w for w in VERDICT_COLOURS if verdict.startswith(w)), "cannot act"))
            ax.bar(i, delta, bottom=level, color=colour, width=0.6)
            low, high = _finite(row.delta_ci_low), _finite(row.delta_ci_high)
            if low is not None and high is not None:
                top, lo, hi = level + delta, level + low, level + high
                if bounded:  # the ends inside [0, 1], never past the bar's top (levels add up paired changes)
                    lo, hi = min(max(lo, 0.0), top), max(min(hi, 1.0), top)
                ax.errorbar(i, top, yerr=[[top - lo], [hi - top]], color="black", capsize=3, linewidth=1)
            level += delta
        elif mean is not None:
            ax.bar(i, mean, color="#bbbbbb", width=0.6, hatch="//", edgecolor="white")
            level = mean
        else:
            reason = row.status or row.delta_note or "not run"
            ax.annotate(reason, (i, 0), rotation=90, ha="center", va="bottom", fontsize=9, color="#555555")
    from matplotlib.lines import Line2D

    claims = [(i, _finite(v)) for i, v in enumerate(table["report"]) if _finite(v) is not None]
    extra = []
    if claims:
        ax.scatter([i for i, _ in claims], [v for _, v in claims], marker="D", color=RED, zorder=3, s=25)
        extra.append(Line2D([], [], marker="D", color=RED, linestyle="", label="the report's figure (CIFAR-10)"))
    extra.append(Line2D([], [], color="#bbbbbb", linewidth=6, label="a level measured (start)"))
    ax.set_xlim(-0.6, len(names) - 0.4)  # one slot per step whatever is drawn
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    if bounded:  # [0, 1.05], widened where added-up changes run past it
        drawn_low, drawn_high = ax.get_ylim()
        ax.set_ylim(min(0.0, drawn_low), max(1.05, drawn_high))
    ax.set_ylabel(key)
    ax.set_title(
        f"{key}, step by step: each bar one step's change against its parent\n(mean over seeds, 95% interval)",
        fontsize=10,
    )
    ax.grid(axis="y", alpha=0.3)
    _verdict_legend(ax, seen, extra)
    return _save(fig, path)


def forest(rows, key: str, not_run: Sequence[str], path: Path) -> Path:
    """Leave-one-out: each step's contribution to the full entry (full minus without), with
    its 95% interval, sorted, coloured by its verdict, zero line drawn; steps with no result
    listed apart, with why. rows: (step, contribution, ci_low or None, ci_high or None, verdict)."""
    rows = sorted(rows, key=lambda r: r[1])
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.45 * len(rows) + 1.8)))
    seen: set[str] = set()
    for i, (_step, value, low, high, verdict) in enumerate(rows):
        colour = verdict_colour(verdict)
        seen.add(next((w for w in VERDICT_COLOURS if str(verdict).startswith(w)), "cannot act"))
        if low is not None and high is not None:
            ax.plot([low, high], [i, i], color=colour, linewidth=2)
        ax.plot([value], [i], "o", color=colour, markersize=7)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.set_xlabel(f"contribution to {key} (full minus without the step), 95% interval")
    title = "Leave-one-out: what each step contributes, coloured by verdict"
    if not_run:
        title += f"\nnot run: {', '.join(not_run)}"
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    if rows:
        _verdict_legend(ax, seen)
    return _save(fig, path)
