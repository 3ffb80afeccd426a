"""Tables as a user reads them: rounded, labelled columns, as terminal text fitted to the
terminal, Markdown, CSV or HTML. The comparison table and the leave-one-out table are
rendered here; the report uses the same Markdown tables. Imports no TensorFlow."""

from __future__ import annotations

import html
import io
import math
import shutil
from typing import Any, Optional

import pandas as pd

from harness.errors import HarnessError

FORMATS = ("table", "markdown", "csv", "html")
REPORT_COLUMN = "report (CIFAR-10)"  # the report's figures are CIFAR-10 results, whatever the dataset here


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


WRAPPED = "change vs parent"  # the one column that wraps; the others keep their width
WRAP_MIN = 20  # narrowest the wrapped column gets before columns are left out
PRIORITY = ("entry", "variant", 1, 2, "delta", "contribution", "p (Welch)", WRAPPED, "note")  # 1, 2: by position


def terminal_table(frame: pd.DataFrame, caption: str = "", width: Optional[int] = None, wrapped: str = WRAPPED) -> str:
    """The table as text that fits `width` columns (the terminal's, else 80): the wrapped
    column takes what is left; columns that do not fit are left out, the least telling
    first (PRIORITY), and named under the table."""
    import textwrap

    from rich.box import SIMPLE_HEAD
    from rich.console import Console
    from rich.table import Table

    width = width or shutil.get_terminal_size((80, 24)).columns
    natural = {c: max([len(str(c))] + [len(str(v)) for v in frame[c]]) for c in frame.columns}
    named = [frame.columns[p] if isinstance(p, int) and p < len(frame.columns) else p for p in PRIORITY]
    order = list(dict.fromkeys([c for c in named if c in frame.columns] + list(frame.columns)))
    longest_word = max([len(w) for v in frame.get(wrapped, []) for w in str(v).split()] or [0])
    wrap_width = WRAP_MIN
    chosen, used = set(), 1  # the table's edge
    prioritized = len([c for c in named if c in frame.columns])
    for rank, column in enumerate(order):
        if rank == prioritized and wrapped in chosen:  # the telling columns are in: widen the wrapped one
            extra = min(width - used, longest_word - wrap_width, width // 3 - wrap_width)
            wrap_width += max(extra, 0)  # so it wraps between words, not inside keys
            used += max(extra, 0)
        need = (wrap_width if column == wrapped else natural[column]) + 3  # padding and divider
        if rank < 2 or used + need <= width:
            chosen.add(column)
            used += need
    shown = [c for c in frame.columns if c in chosen]
    left_out = [c for c in frame.columns if c not in chosen]
    table = Table(box=SIMPLE_HEAD, title=caption or None, title_justify="left", pad_edge=False)
    for column in shown:
        wraps = column == wrapped
        table.add_column(
            str(column),
            no_wrap=not wraps,
            overflow="fold" if wraps else "ellipsis",
            min_width=wrap_width if wraps else None,
        )
    for row in frame[shown].itertuples(index=False):
        table.add_row(*(str(v) for v in row))
    buffer = io.StringIO()
    Console(file=buffer, width=width, highlight=False, color_system=None).print(table)
    text = "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()).strip("\n")
    if left_out:
        note = f"(not shown at {width} columns: {', '.join(map(str, left_out))}; --format markdown has every column)"
        text += "\n" + "\n".join(textwrap.wrap(note, width))
    return text


def render_frame(raw: pd.DataFrame, shown: pd.DataFrame, fmt: str, caption: str = "", **terminal) -> str:
    """CSV from the raw numbers; the other formats from the human columns, captioned;
    terminal: width and wrapped, for terminal_table."""
    if fmt == "csv":
        return raw.to_csv(index=False).rstrip("\n")
    if fmt == "markdown":  # the caption goes in the header: the output is the table alone
        return markdown_table(
            shown.rename(columns={shown.columns[0]: f"{shown.columns[0]} ({caption})"}) if caption else shown
        )
    if fmt == "html":
        body = shown.to_html(index=False, escape=True)
        return body.replace(">\n", f">\n  <caption>{html.escape(caption)}</caption>\n", 1) if caption else body
    return terminal_table(shown, caption, **terminal)  # width, wrapped


def number(value: Any, digits: int = 4) -> str:
    """A number as a cell: integers as integers, others to `digits` decimals, missing as ''."""
    if missing(value):
        return ""
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}" if abs(value) >= 10_000 else str(int(value))
    return f"{value:.{digits}f}"


def signed(value: float, digits: int = 4) -> str:
    """A difference as a cell: '+0.0550', '-0.0150', and '+0.0000' (never '-0.0000')."""
    text = f"{value:+.{digits}f}"
    return "+" + text[1:] if float(text) == 0 else text


def mean_over_seeds(mean: Any, std: Any, n: Any) -> str:
    """'0.5764 +/- 0.0123 (n=3)', or '0.5764 (n=1)' where one seed gives no spread."""
    if missing(mean):
        return ""
    n = int(n)
    return f"{mean:.4f} (n={n})" if n < 2 else f"{mean:.4f} +/- {std:.4f} (n={n})"


def comparison(table: pd.DataFrame, key: str) -> pd.DataFrame:
    """The comparison table's human columns: the metric over seeds (or why there is none),
    signed deltas (or why there is none), p-values, and the report's CIFAR-10 figure."""
    if table.empty:
        return table
    out = pd.DataFrame()
    out["entry"] = table["entry"]
    if "settings" in table:
        out["settings"] = table["settings"]
    out["change vs parent"] = table["change"]
    out[key] = [
        status or mean_over_seeds(m, s, n)
        for status, m, s, n in zip(table["status"], table[key], table["std"], table["n"])
    ]
    out["delta"] = [note if missing(v) else signed(v) for v, note in zip(table["delta"], table["delta_note"])]
    out["p (Welch)"] = [
        (note if note in ("n<2", "no spread") else "") if missing(v) else f"{v:.3g}"
        for v, note in zip(table["p_value"], table["delta_note"])
    ]
    out["val loss"] = table["val_loss"].map(number)
    out["train-val gap"] = table["train_val_gap"].map(lambda v: "" if missing(v) else signed(v))
    out["epochs"] = table["epochs"].map(lambda v: number(v, 1))
    out["time s"] = table["train_seconds"].map(lambda v: "" if missing(v) else f"{v:.1f}")
    out["params"] = table["params"].map(lambda v: "" if missing(v) else f"{int(v):,}")
    out[REPORT_COLUMN] = table["report"].map(lambda v: "" if missing(v) else f"{v:g}")
    return out


def leave_one_out(table: pd.DataFrame, key: str) -> pd.DataFrame:
    """The leave-one-out table's human columns."""
    shown = pd.DataFrame()
    shown["variant"] = table["variant"]
    shown[key] = [mean_over_seeds(m, s, n) for m, s, n in zip(table[key], table["std"], table["n"])]
    shown["contribution"] = table["contribution"].map(lambda v: "" if missing(v) else signed(v))
    shown["p (Welch)"] = table["p_value"].map(lambda v: "" if missing(v) else f"{v:.3g}")
    shown["note"] = table["note"]
    return shown
