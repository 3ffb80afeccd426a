"""Tables as a user reads them: numbers rounded and signed without -0.0000, and a terminal
table that fits its width, leaving out the least telling columns first and saying which."""

from __future__ import annotations

import pandas as pd

from harness.results import tables


def test_cells():
    assert tables.number(3.0) == "3" and tables.number(12345.0) == "12,345" and tables.number(0.12345) == "0.1235"
    assert tables.number(None) == "" and tables.number(float("nan")) == ""
    assert tables.signed(-0.00001) == "+0.0000" and tables.signed(-0.015) == "-0.0150"
    assert tables.mean_over_seeds(0.5, 0.01, 3) == "0.5000 +/- 0.0100 (n=3)"
    assert tables.mean_over_seeds(0.5, None, 1) == "0.5000 (n=1)"


def test_a_terminal_table_fits_its_width_and_names_what_it_left_out():
    frame = pd.DataFrame(
        {
            "entry": ["baseline", "same_padding"],
            "change vs parent": ["the starting point", "model.padding valid -> same; model.classifier_dropout 0.4"],
            "best_val_accuracy": ["0.5000 (n=1)", "0.6000 (n=1)"],
            "delta": ["no parent", "+0.1000"],
            "p (Welch)": ["", "n<2"],
            "val loss": ["1.2", "1.1"],
            "time s": ["12.0", "13.0"],
            "params": ["1,000", "2,000"],
        }
    )
    text = tables.terminal_table(frame, "digits", width=60)
    lines = text.splitlines()
    assert all(len(line) <= 60 for line in lines), text
    assert "not shown at 60 columns" in text and "params" in text.split("not shown")[1]
    header = next(line for line in lines if "entry" in line)
    assert "best_val_accuracy" in header  # the first columns stay
    wide = tables.terminal_table(frame, "digits", width=300)
    assert "not shown" not in wide


def test_markdown_escapes_pipes_and_keeps_a_named_index():
    frame = pd.DataFrame({"x": ["a|b"]}, index=pd.Index(["row"], name="name"))
    assert tables.markdown_table(frame).splitlines() == ["|  | x |", "|---|---|", "| row | a\\|b |"]
