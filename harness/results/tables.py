"""Tables as a user reads them: rounded, labelled columns, as terminal text fitted to the
terminal, Markdown, CSV or HTML. The comparison table and the leave-one-out table are
rendered here; the report uses the same Markdown tables. Imports no TensorFlow."""

from __future__ import annotations

import html
import io
import math
import shutil
import textwrap
from dataclasses import dataclass
from typing import Any, Optional

import pandas as pd

from harness.errors import HarnessError

FORMATS = ("table", "markdown", "csv", "html")
REPORT_COLUMN = "report (CIFAR-10)"  # the report's figures are CIFAR-10 results, whatever the dataset here
CSV_FLOATS = "%.10g"  # ten significant digits: 0.2, not 0.20000000000000007


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


# The order columns are kept in when the width runs short (ints: positions, for the metric's
# column, whose name is the metric's); the rest follow in their own order.
COLUMN_GAP = 3  # what rich's SIMPLE_HEAD box puts around and between cells
ANSWER_COLUMNS = 4  # the first four in PRIORITY (entry, verdict, change, metric) get their width first
PRIORITY = ("entry", "variant", "verdict", "change [95% interval]", "contribution [95% interval]", 1, 2, 3, "p (Holm)")


@dataclass(frozen=True)
class Rendered:
    """A table as text, and the columns a terminal's width left out (named on stderr)."""

    text: str
    left_out: tuple[str, ...] = ()

    def note(self, width: Optional[int] = None) -> str:
        """The line for stderr that names the columns left out ('' when none)."""
        if not self.left_out:
            return ""
        width = width or shutil.get_terminal_size((80, 24)).columns
        text = f"(not shown at {width} columns: {', '.join(self.left_out)}; --format markdown has every column)"
        return textwrap.fill(text, width, break_on_hyphens=False, break_long_words=False)


def terminal_table(frame: pd.DataFrame, caption: str = "", width: Optional[int] = None) -> Rendered:
    """The table as text that fits `width` columns (the terminal's, else 80). Columns are
    taken in PRIORITY order while their header and longest word fit (cells wrap between
    words, never inside one), then widened; while the answer's columns (entry, verdict,
    change, metric) would still wrap, the least telling column is left out to make room.
    What is left out is named in Rendered.left_out."""
    from rich.box import SIMPLE_HEAD
    from rich.console import Console
    from rich.table import Table

    width = width or shutil.get_terminal_size((80, 24)).columns
    cells = {c: [str(c), *(str(v) for v in frame[c])] for c in frame.columns}
    natural = {c: max(len(v) for v in cells[c]) for c in frame.columns}
    narrowest = {  # a header stays on one line; cells wrap between words, never inside one
        c: max([len(str(c))] + [len(w) for v in cells[c][1:] for w in v.split()]) for c in frame.columns
    }
    named = [frame.columns[p] if isinstance(p, int) and p < len(frame.columns) else p for p in PRIORITY]
    order = list(dict.fromkeys([c for c in named if c in frame.columns] + list(frame.columns)))
    chosen, widths = _fit(order, natural, narrowest, width)
    answer = order[:ANSWER_COLUMNS]
    while len(chosen) > ANSWER_COLUMNS and any(widths[c] < natural[c] for c in answer if c in widths):
        order = [c for c in order if c != chosen[-1]]  # the least telling column gives its room to the answer
        chosen, widths = _fit(order, natural, narrowest, width)
    shown = [c for c in frame.columns if c in chosen]
    table = Table(box=SIMPLE_HEAD, title=caption or None, title_justify="left", pad_edge=False, collapse_padding=True)
    for column in shown:
        table.add_column(str(column), overflow="fold", min_width=widths[column], max_width=widths[column])
    for row in frame[shown].itertuples(index=False):
        table.add_row(*(str(v) for v in row))
    buffer = io.StringIO()
    Console(file=buffer, width=width, highlight=False, color_system=None).print(table)
    text = "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()).strip("\n")
    return Rendered(text, tuple(str(c) for c in frame.columns if c not in chosen))


def _fit(order: list, natural: dict, narrowest: dict, width: int) -> tuple[list, dict]:
    """Columns taken in `order` at their narrowest until one does not fit, then widened towards
    their natural width with what is left, the nearest to it first (an interval or a mean
    unwrapped before a long verdict takes the room): (chosen, width of each). A
    narrower column further down never takes the place of one before it (raw p shown where
    p (Holm) was left out would read as the corrected one)."""
    chosen, used = [], 1  # the table's left edge
    for column in order:
        if chosen and used + narrowest[column] + COLUMN_GAP > width:
            break
        chosen.append(column)
        used += narrowest[column] + COLUMN_GAP
    widths = {c: narrowest[c] for c in chosen}
    for column in sorted(chosen, key=lambda c: natural[c] - narrowest[c]):  # fewest lines saved per column first
        extra = max(min(width - used, natural[column] - widths[column]), 0)
        widths[column] += extra
        used += extra
    return chosen, widths


def render_frame(
    raw: pd.DataFrame, shown: pd.DataFrame, fmt: str, caption: str = "", width: Optional[int] = None
) -> Rendered:
    """CSV from the raw numbers; the other formats from the human columns, captioned: HTML
    a whole document, Markdown the table alone with the caption in its header."""
    if fmt == "csv":
        return Rendered(raw.to_csv(index=False, float_format=CSV_FLOATS).rstrip("\n"))
    if fmt == "markdown":
        return Rendered(
            markdown_table(
                shown.rename(columns={shown.columns[0]: f"{shown.columns[0]} ({caption})"}) if caption else shown
            )
        )
    if fmt == "html":
        body = shown.to_html(index=False, escape=True)
        if caption:
            body = body.replace(">\n", f">\n  <caption>{html.escape(caption)}</caption>\n", 1)
        return Rendered(html_document(caption or "harness table", body))
    return terminal_table(shown, caption, width=width)


HTML_STYLE = (
    "body{font-family:sans-serif;max-width:1150px;margin:2em auto;color:#222}table{border-collapse:collapse;"
    "font-size:14px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}"
    "caption{text-align:left;font-weight:bold;padding:4px 0}img{max-width:100%}figcaption{color:#555}"
    ".runs,.note{font-size:13px;color:#555}"
)


def html_document(title: str, body: str) -> str:
    """A whole HTML page (UTF-8, titled, styled) around `body`."""
    head = f"<meta charset='utf-8'><title>{html.escape(title)}</title><style>{HTML_STYLE}</style>"
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"


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


VERDICT, CHANGE, HOLM = "verdict", "change [95% interval]", "p (Holm)"
CLAIM = "report's claim"
HOLM_NOTE = (
    "change: child minus parent, paired by seed; interval: 95%, over the seeds (their spread moderated "
    "across the steps of this table) and the validation images (docs/statistics.md); p (Holm): two-sided, "
    "corrected across the steps of this table by Holm's method; "
    "no practical difference: the whole interval inside +/-{rope} percentage points."
)


def verdict_table(table: pd.DataFrame, key: str) -> pd.DataFrame:
    """What a study's reader wants first: each step, its verdict, its change with the
    interval, and the report's claim beside it with whether it holds."""
    shown = comparison(table, key)
    return shown[["entry", VERDICT, CHANGE, key, CLAIM]] if not shown.empty else shown


def verdict_counts(table: pd.DataFrame) -> dict[str, int]:
    """How many steps got each kind of verdict (steps without a parent left out)."""
    words = [str(v) for v in table.get("verdict", []) if isinstance(v, str) and v]
    kinds = {"helped": "helped", "hurt": "hurt", "no practical difference": "no_difference"}
    counts = {name: sum(w == word for w in words) for word, name in kinds.items()}
    counts["undecided"] = sum(w.startswith("undecided") for w in words)
    counts["cannot_act"] = sum(w.startswith("cannot act") for w in words)
    counts["decided"] = counts["helped"] + counts["hurt"] + counts["no_difference"]
    counts["steps"] = len(words)
    return counts


def verdict_summary(table: pd.DataFrame) -> str:
    """One sentence: 'of 14 steps, 3 helped (adam, dropout, batch_128), 1 hurt (l2), ...'."""
    groups: dict[str, list[str]] = {}
    for entry, verdict in zip(table.get("entry", []), table.get("verdict", [])):
        if isinstance(verdict, str) and verdict:
            word = verdict.split(" (")[0]
            groups.setdefault(word, []).append(str(entry))
    total = sum(len(v) for v in groups.values())
    parts = [f"{len(names)} {word} ({', '.join(names)})" for word, names in groups.items()]
    return f"of {total} steps: " + "; ".join(parts) if parts else "no step has a parent to be compared with"


def comparison(table: pd.DataFrame, key: str) -> pd.DataFrame:
    """The comparison table's human columns: the verdict, the change with its interval, the
    metric over seeds (or why there is none), p corrected and raw, what the step changed,
    the report's claim and whether it holds, then loss, gap, epochs, time and size."""
    if table.empty:
        return table
    out = pd.DataFrame()
    out["entry"] = table["entry"]
    if "settings" in table:
        out["settings"] = table["settings"]
    out[VERDICT] = [
        verdict if not missing(verdict) and verdict else (status or note)
        for verdict, status, note in zip(table["verdict"], table["status"], table["delta_note"])
    ]
    out[CHANGE] = [
        interval(v, low, high) for v, low, high in zip(table["delta"], table["delta_ci_low"], table["delta_ci_high"])
    ]
    out[key] = [
        status or mean_over_seeds(m, s, n)
        for status, m, s, n in zip(table["status"], table[key], table["std"], table["n"])
    ]
    out[HOLM] = table["p_holm"].map(p_value)
    out["p"] = table["p_value"].map(p_value)
    out["change vs parent"] = table["change"]
    out[CLAIM] = [
        "" if missing(v) else (f"{v:g}: {verdict}" if verdict else f"{v:g}")
        for v, verdict in zip(table["report"], table["claim_verdict"])
    ]
    out["val loss"] = table["val_loss"].map(number)
    out["train-val gap"] = table["train_val_gap"].map(lambda v: "" if missing(v) else signed(v))
    out["epochs"] = table["epochs"].map(lambda v: number(v, 1))
    out["time s"] = table["train_seconds"].map(lambda v: "" if missing(v) else f"{v:.1f}")
    out["params"] = table["params"].map(lambda v: "" if missing(v) else f"{int(v):,}")
    return out


def interval(value: Any, low: Any, high: Any, digits: int = 4) -> str:
    """'+0.0550 [+0.0210, +0.0890]', or the value alone where there is no interval."""
    if missing(value):
        return ""
    if missing(low) or missing(high):
        return signed(value, digits)
    return f"{signed(value, digits)} [{signed(low, digits)}, {signed(high, digits)}]"


def p_value(value: Any) -> str:
    """A p-value as a cell: three significant digits, '<0.001' below what the draws resolve."""
    if missing(value):
        return ""
    return "<0.001" if value < 0.001 else f"{value:.3g}"


def leave_one_out(table: pd.DataFrame, key: str) -> pd.DataFrame:
    """The leave-one-out table's human columns: each step's verdict (did it help the full
    entry?), its contribution (full minus without) with its interval, the variant's metric,
    p corrected and raw, and why a step has no contribution."""
    shown = pd.DataFrame()
    shown["variant"] = table["variant"]
    shown[VERDICT] = table["verdict"]
    shown["contribution [95% interval]"] = [
        interval(v, low, high) for v, low, high in zip(table["contribution"], table["ci_low"], table["ci_high"])
    ]
    shown[key] = [mean_over_seeds(m, s, n) for m, s, n in zip(table[key], table["std"], table["n"])]
    shown[HOLM] = table["p_holm"].map(p_value)
    shown["p"] = table["p_value"].map(p_value)
    shown["note"] = table["note"]
    return shown
