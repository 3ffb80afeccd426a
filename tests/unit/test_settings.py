"""A run's settings: the overrides apart from its entry, less what names the dataset or the
seed; equal settings give equal fingerprints whatever their order or spelling."""

from __future__ import annotations

from harness.entries import settings


def test_order_spelling_and_repeats_do_not_change_the_settings():
    a = ["training.epochs=2", "training.batch_size=64"]
    b = ["training.batch_size=64", "training.epochs=1", "training.epochs=2.0e0"]
    assert settings.normalized(a) == [("training.batch_size", 64), ("training.epochs", 2)]
    assert settings.fingerprint(a) != settings.fingerprint(b)  # 2.0 (a float) is not 2
    assert settings.fingerprint(a) == settings.fingerprint(list(reversed(a)))
    assert settings.label(a) == "training.batch_size=64 training.epochs=2"


def test_dataset_seed_and_system_metrics_are_not_settings():
    where = ["data.source=digits", "data.subset=300", "training.seed=4", "training.system_metrics=true"]
    assert settings.normalized(where) == []
    assert settings.label(where) == settings.AS_WRITTEN
    assert settings.fingerprint(where) == settings.fingerprint([])


def test_structured_values_read_back_as_json():
    assert settings.label(["model.blocks=[{filters: 8}]"]) == 'model.blocks=[{"filters": 8}]'
