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


def test_a_terminal_table_fits_its_width_keeps_the_answer_and_breaks_no_word():
    frame = pd.DataFrame(
        {
            "entry": ["baseline", "same_padding", "early_stopping"],
            "verdict": ["no parent", "helped", "cannot act at this budget (early stopping's patience 5 >= 4 epochs)"],
            "change [95% interval]": ["", "+0.1000 [+0.0400, +0.1600]", "+0.0000 [-0.0100, +0.0100]"],
            "best_val_accuracy": ["0.5000 (n=1)", "0.6000 +/- 0.0100 (n=2)", "0.6000 +/- 0.0100 (n=2)"],
            "p (Holm)": ["", "0.004", ""],
            "change vs parent": ["the starting point", "model.padding valid -> same; model.classifier_dropout 0.4", ""],
            "val loss": ["1.2", "1.1", "1.1"],
            "params": ["1,000", "2,000", "2,000"],
        }
    )
    for width in (60, 80, 120):
        rendered = tables.terminal_table(frame, "digits", width=width)
        lines = rendered.text.splitlines()
        assert all(len(line) <= width for line in lines), rendered.text
        header = next(line for line in lines if "entry" in line)
        for kept in ("entry", "verdict", "change [95% interval]"):
            assert kept in header, (width, header)
        allowed = {w for cell in frame.to_numpy().ravel() for w in str(cell).split()}
        allowed |= set(" ".join(frame.columns).split()) | {"digits"}
        printed = {w for line in lines for w in line.split() if set(w) != {"─"}}
        assert printed <= allowed, f"broken words: {printed - allowed}"
        assert ("params" in rendered.left_out) == ("params" not in header)
        if rendered.left_out:
            assert f"not shown at {width} columns" in rendered.note(width)
    wide = tables.terminal_table(frame, "digits", width=300)
    assert not wide.left_out and wide.note() == ""


def test_markdown_escapes_pipes_and_keeps_a_named_index():
    frame = pd.DataFrame({"x": ["a|b"]}, index=pd.Index(["row"], name="name"))
    assert tables.markdown_table(frame).splitlines() == ["|  | x |", "|---|---|", "| row | a\\|b |"]


def test_the_footer_names_exactly_the_columns_the_table_leaves_out():
    frame = pd.DataFrame(
        {
            "entry": ["baseline", "dropout"],
            "verdict": ["no parent", "undecided at 2 seeds (needs about 6)"],
            "change [95% interval]": ["", "+0.0100 [-0.0200, +0.0400]"],
            "best_val_accuracy": ["0.5000 (n=2)", "0.5100 +/- 0.0100 (n=2)"],
            "p (Holm)": ["", "0.4000"],
            "change vs parent": ["the starting point", "model.blocks.0.dropout None -> 0.2"],
            "p": ["", "0.20"],
        }
    )
    for width in range(40, 201, 4):
        rendered = tables.terminal_table(frame, "", width=width)
        header = next(line for line in rendered.text.splitlines() if "entry" in line).split()
        shown_p = [c for c in ("p (Holm)", "p") if c not in rendered.left_out]
        assert header.count("p") == len(shown_p), (width, header, rendered.left_out)
        assert "(Holm)" in header or "p" in rendered.left_out, (width, header)
        assert ("vs" in header) == ("change vs parent" not in rendered.left_out), (width, header)
