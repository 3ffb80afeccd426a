"""Every entry builds and trains (digits subset, one epoch), like lightning-hydra-template's
tests over every config. Transfer-learning entries train from scratch here: the test
machine has no ImageNet weights and no network."""

from __future__ import annotations

import math

import pytest

from harness.data import sources as data
from harness.entries.registry import Registry
from harness.training import train
from tests.helpers import ENTRIES, REPO, TINY

pytestmark = pytest.mark.slow  # trains models or starts processes: the full tier only

FROM_SCRATCH = {"resnet50": ["model.pretrained=null"], "vgg16": ["model.pretrained=null"]}


@pytest.fixture(scope="module")
def digits():
    return data.load("digits", 0.25, 240, 0)


@pytest.mark.parametrize("name", ENTRIES)
def test_entry_builds_and_trains_one_epoch(name, digits):
    spec = Registry(REPO).resolve(name, [*TINY, *FROM_SCRATCH.get(name, [])]).spec
    model = train.build(spec, digits)
    result = train.fit(spec, digits, model, verbose=0)
    assert result.epochs_run == 1
    assert math.isfinite(result.history["loss"][0])
    assert 0.0 <= result.history["val_accuracy"][0] <= 1.0
    assert result.images_per_second > 0
    assert model.output_shape == (None, 10)
