"""The report's history as entries: chain, values, provenance, diffs, and `final` as
section 1's architecture layer by layer."""

from __future__ import annotations

import pytest

from harness.entries.diffs import diff_against_parent
from harness.entries.registry import Registry
from tests.helpers import ENTRIES, REPO

HISTORY = [
    "baseline",
    "same_padding",
    "batchnorm",
    "adam",
    "dropout",
    "early_stopping",
    "extra_blocks",
    "dense_128",
    "batch_128",
    "l2",
    "lr_scheduler",
    "class_weights",
    "focal_loss",
    "augmentation",
    "final",
]
TRANSFER = ["resnet50", "vgg16", "squeezenet"]


@pytest.fixture(scope="module")
def registry():
    return Registry(REPO)


def test_the_history_is_one_chain_in_the_report_order(registry):
    assert registry.history("final") == HISTORY
    assert sorted(ENTRIES) == sorted(HISTORY + TRANSFER)
    for name in TRANSFER:
        assert registry.entry(name).parent == "final"


@pytest.mark.parametrize("name", ENTRIES)
def test_every_entry_resolves_and_describes_itself(registry, name):
    resolved = registry.resolve(name)
    assert len(resolved.entry.description) > 40
    assert resolved.fingerprint() != registry.resolve("baseline").fingerprint() or name == "baseline"


@pytest.mark.parametrize("name", HISTORY[1:] + TRANSFER)
def test_every_step_changes_something_against_its_parent(registry, name):
    assert diff_against_parent(registry, registry.resolve(name)).changes


def test_each_step_changes_what_the_report_says(registry):
    def changed(name):
        return {c.key: c.new for c in diff_against_parent(registry, registry.resolve(name)).changes}

    assert changed("same_padding") == {"model.padding": "same"}
    assert changed("batchnorm") == {"model.batch_norm": True}
    assert changed("adam") == {"optimizer.name": "adam", "optimizer.learning_rate": 0.001}
    assert changed("dropout") == {"model.blocks.0.dropout": 0.2, "model.classifier_dropout": 0.6}
    assert changed("early_stopping")["training.early_stopping.patience"] == 5
    assert changed("early_stopping")["training.early_stopping.monitor"] == "val_accuracy"
    assert changed("early_stopping")["training.early_stopping.mode"] == "max"
    assert changed("early_stopping")["training.early_stopping.restore_best_weights"] is True
    assert changed("dense_128")["model.dense.0.units"] == 128
    assert changed("batch_128") == {"training.batch_size": 128}
    assert changed("l2") == {"model.dense.0.l2": 0.005}
    assert changed("lr_scheduler")["training.epochs"] == 100
    assert changed("class_weights")["training.class_weight.mode"] == "balanced"
    assert changed("focal_loss") == {"loss.name": "focal"}  # gamma 2 / alpha 0.25 are the schema defaults
    assert changed("augmentation") == {"model.augment.translate": 0.05, "model.augment.flip": "horizontal"}
    spec = registry.resolve("focal_loss").spec
    assert (spec.loss.gamma, spec.loss.alpha) == (2.0, 0.25)
    assert registry.resolve("class_weights").spec.training.class_weight.boost == {3: 2.0, 5: 2.0}


def test_report_figures_are_kept_with_their_steps(registry):
    final = registry.entry("final").report
    assert (final.train_accuracy, final.val_accuracy, final.test_accuracy) == (0.9482, 0.9059, 0.8963)
    assert (final.train_loss, final.val_loss, final.test_loss) == (0.0241, 0.0460, 0.0489)
    assert registry.entry("adam").report.val_accuracy == 0.8
    assert registry.entry("batch_128").report.train_accuracy == 0.95
    assert registry.entry("squeezenet").report.val_accuracy == 0.77


def test_values_say_which_file_set_them(registry):
    resolved = registry.resolve("final")
    assert resolved.source_of("optimizer.name") == "ablations/adam.yaml"
    assert resolved.source_of("training.batch_size") == "ablations/batch_128.yaml"
    assert resolved.source_of("model.blocks.2.dropout") == "ablations/final.yaml"
    assert resolved.source_of("data.source") == "default"
    overridden = registry.resolve("final", ["training.epochs=3"])
    assert overridden.spec.training.epochs == 3
    assert overridden.source_of("training.epochs") == "--set"
    assert overridden.fingerprint() != resolved.fingerprint()


def test_final_is_section_1_layer_by_layer(registry):
    from harness.training.model import build_model

    spec = registry.resolve("final").spec
    model = build_model(spec.model.model_copy(update={"bn_momentum": 0.99}), (32, 32, 3), 10)
    layers = [(type(layer).__name__, _detail(layer)) for layer in model.layers[1:]]
    expected = [("Translate", 0.05), ("Flip", "horizontal")]  # the report's RandomTranslation, RandomFlip
    for filters, dropout in ((64, 0.1), (128, 0.2), (256, 0.5)):
        for _ in range(2):
            expected += [("Conv2D", (filters, (3, 3), "same")), ("BatchNormalization", None), ("Activation", "relu")]
        expected += [("MaxPooling2D", (2, 2)), ("Dropout", dropout)]
    expected += [
        ("Flatten", None),
        ("Dense", (128, 0.005)),
        ("BatchNormalization", None),
        ("Activation", "relu"),
        ("Dropout", 0.4),
        ("Dense", (10, None)),
        ("Activation", "softmax"),
    ]
    assert layers == expected
    assert model.layers[-1].dtype_policy.compute_dtype == "float32"


def _detail(layer):
    name = type(layer).__name__
    config = layer.get_config()
    if name == "Translate":
        return config["factor"]
    if name == "Flip":
        return config["mode"]
    if name == "Conv2D":
        return (config["filters"], tuple(config["kernel_size"]), config["padding"])
    if name == "MaxPooling2D":
        return tuple(config["pool_size"])
    if name == "Dropout":
        return config["rate"]
    if name == "Activation":
        return config["activation"]
    if name == "Dense":
        regularizer = config["kernel_regularizer"]
        return (config["units"], round(regularizer["config"]["l2"], 6) if regularizer else None)
    return None
