"""The harness's line per epoch, in place of Keras's progress output: Keras's figures, at
most 80 columns, the learning rate only where a schedule moved it."""

from __future__ import annotations

from harness.training.callbacks import epoch_line

LOGS = {"loss": 0.41234, "accuracy": 0.88, "val_loss": 0.30125, "val_accuracy": 0.91024, "epoch_seconds": 12.345}


def test_the_figures_keras_prints_in_one_short_line():
    line = epoch_line(3, 8, LOGS)
    assert line == "epoch 3/8  loss 0.4123 acc 0.8800  val loss 0.3013 acc 0.9102  12.3s"


def test_a_moved_learning_rate_is_shown_and_the_line_still_fits_80_columns():
    line = epoch_line(13, 100, LOGS, 5e-4)
    assert "lr 5e-4" in line and len(line) <= 80, (len(line), line)


def test_missing_figures_are_left_out_not_shown_as_zero():
    assert epoch_line(1, 2, {"loss": 1.5}) == "epoch 1/2  loss 1.5000"
