"""Tables as a user reads them: rounded, labelled columns, as terminal text, Markdown, CSV or
HTML. The comparison table and the leave-one-out table are rendered here; the report uses
the same Markdown tables. Imports no TensorFlow."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from .errors import HarnessError

FORMATS = ("table", "markdown", "csv", "html")


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise HarnessError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")


def missing(value: Any) -> bool:
    """None or NaN: a cell with nothing to show."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table; a named index becomes the first column."""
    if not isinstance(frame.index, pd.RangeIndex):
        frame = frame.reset_index(names="")
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def render_frame(raw: pd.DataFrame, shown: pd.DataFrame, fmt: str) -> str:
    """CSV from the raw numbers; the other formats from the human columns."""
    if fmt == "csv":
        return raw.to_csv(index=False)
    if fmt == "markdown":
        return markdown_table(shown)
    if fmt == "html":
        return shown.to_html(index=False, escape=True)
    return shown.to_string(index=False)


def mean_std_n(mean: Any, std: Any, n: Any) -> str:
    return "" if missing(mean) else f"{mean:.4f} +/- {std:.4f} ({int(n)})"


def comparison(table: pd.DataFrame, key: str) -> pd.DataFrame:
    """The comparison table's human columns: 'mean +/- std (n)', signed deltas, p-values."""
    if table.empty:
        return table
    out = pd.DataFrame()
    out["entry"] = table["entry"]
    out["change vs parent"] = table["change"].map(lambda s: s if len(s) <= 70 else s[:67] + "...")
    out[key] = [mean_std_n(m, s, n) for m, s, n in zip(table[key], table["std"], table["n"])]
    out["delta"] = table["delta"].map(lambda v: "" if missing(v) else f"{v:+.4f}")
    out["p (Welch)"] = table["p_value"].map(lambda v: "" if missing(v) else f"{v:.3g}")
    out["val loss"] = table["val_loss"].map(lambda v: "" if missing(v) else f"{v:.4f}")
    out["train-val gap"] = table["train_val_gap"].map(lambda v: "" if missing(v) else f"{v:+.4f}")
    out["epochs"] = table["epochs"].map(lambda v: "" if missing(v) else f"{v:.1f}")
    out["time s"] = table["train_seconds"].map(lambda v: "" if missing(v) else f"{v:.1f}")
    out["params"] = table["params"].map(lambda v: "" if missing(v) else f"{int(v):,}")
    out["report"] = table["report"].map(lambda v: "" if missing(v) else f"{v:g}")
    return out


def leave_one_out(table: pd.DataFrame, key: str) -> pd.DataFrame:
    """The leave-one-out table's human columns."""
    shown = pd.DataFrame()
    shown["variant"] = table["variant"]
    shown[key] = [mean_std_n(m, s, n) for m, s, n in zip(table[key], table["std"], table["n"])]
    shown["contribution"] = table["contribution"].map(lambda v: "" if missing(v) else f"{v:+.4f}")
    shown["p (Welch)"] = table["p_value"].map(lambda v: "" if missing(v) else f"{v:.3g}")
    shown["note"] = table["note"]
    return shown
