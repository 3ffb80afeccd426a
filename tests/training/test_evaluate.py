"""Final evaluation: one prediction pass gives the same loss and accuracy as Keras's own
model.evaluate (regularization included), and scikit-learn's per-class figures."""

from __future__ import annotations

import numpy as np
import pytest

from harness.data import pipeline
from harness.data import sources as data
from harness.entries.registry import Registry
from harness.training import train
from harness.training.evaluate import evaluate
from tests.helpers import REPO

pytestmark = pytest.mark.slow  # trains models or starts processes: the full tier only


def test_one_pass_evaluation_matches_keras_evaluate():
    spec = Registry(REPO).resolve("l2", ["data.subset=240", "training.epochs=1"]).spec  # L2: a penalty to include
    dataset = data.load("digits", 0.25, 240, 0)
    model = train.build(spec, dataset)
    train.fit(spec, dataset, model, verbose=0)
    ours = evaluate(model, dataset.val, dataset.class_names)
    loss, accuracy = model.evaluate(dataset.val.x, pipeline.one_hot(dataset.val.y, 10), verbose=0)[:2]
    assert ours.accuracy == pytest.approx(accuracy, abs=1e-6)
    assert ours.loss == pytest.approx(loss, rel=1e-4)
    assert ours.confusion.sum() == len(dataset.val) and np.trace(ours.confusion) == round(accuracy * len(dataset.val))
    assert set(ours.per_class_f1) == set(dataset.class_names)
