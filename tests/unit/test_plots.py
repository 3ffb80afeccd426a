"""The charts draw any table the comparisons can produce, without a store or training."""

from __future__ import annotations

import pandas as pd

from harness.results.plots import waterfall


def test_a_waterfall_whose_added_up_changes_pass_one_still_draws(tmp_path):
    """Paired changes add up to levels no run measured: a bar may end above 1 while its
    interval is clipped to [0, 1]. The error bar must still be drawn, not fail."""
    table = pd.DataFrame(
        {
            "entry": ["a", "b", "c"],
            "best_val_accuracy": [0.6, 0.9, 0.95],
            "delta": [None, 0.3, 0.25],
            "delta_ci_low": [None, 0.1, 0.05],
            "delta_ci_high": [None, 0.5, 0.45],
            "verdict": ["", "helped", "undecided (n=2)"],
            "report": [None, None, None],
            "status": ["", "", ""],
            "delta_note": ["", "", ""],
        }
    )
    path = waterfall(table, "best_val_accuracy", tmp_path / "w.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
