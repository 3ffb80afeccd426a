"""A model of the user's own through `model.builder` (a function named by import path):
a project made by `harness init` outside this repository runs its history as a study and
every step gets a verdict; params change like any other key and join the fingerprint with
the builder's source; each bad builder or param is one line naming the file and key, exit
2, nothing written."""

from __future__ import annotations

import csv
import io

import pytest

from tests.cli.test_hostile import assert_clean_refusal
from tests.helpers import run_cli

# Builders the bad cases call, beside the template's small_resnet.
EXTRA_BUILDERS = """

def needs_depth(input_shape, num_classes, depth: int):
    return small_resnet(input_shape, num_classes, depth=depth)


def raises(input_shape, num_classes):
    raise ValueError("no model today")


def exits(input_shape, num_classes):
    raise SystemExit(3)


def not_a_model(input_shape, num_classes):
    return 3


def three_outputs(input_shape, num_classes):
    return small_resnet(input_shape, 3)


def no_shape(num_classes, width: int = 4):
    return None


class Boom(BaseException):
    pass


def booms(input_shape, num_classes):
    raise Boom("not an Exception")


def rank_three(input_shape, num_classes):
    inputs = keras.Input(shape=input_shape)
    x = layers.Dense(3 * num_classes)(layers.GlobalAveragePooling2D()(inputs))
    return keras.Model(inputs, layers.Softmax()(layers.Reshape((3, num_classes))(x)))


def named_outputs(input_shape, num_classes):
    inputs = keras.Input(shape=input_shape)
    x = layers.GlobalAveragePooling2D()(inputs)
    return keras.Model(inputs, {"a": layers.Dense(num_classes, activation="softmax")(x)})


def loose(input_shape, num_classes, **params):
    return 3


def fixed_input(input_shape, num_classes):
    return small_resnet((32, 32, 3), num_classes)
"""


@pytest.fixture
def own_project(tmp_path):
    """A project as `harness init` makes it, in a folder of its own (no copy of this repo)."""
    folder = tmp_path / "mine"
    made = run_cli(["init", str(folder)], tmp_path)
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in (folder / "ablations").iterdir()) == [
        "baseline.yaml",
        "regularised.yaml",
        "wider.yaml",
    ]
    return folder


def test_init_refuses_a_folder_that_holds_a_project(own_project):
    again = run_cli(["init", str(own_project)], own_project.parent)
    assert again.returncode == 2 and again.stderr.startswith("error: ") and "already holds" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_init_history_runs_as_a_study_and_every_step_gets_a_verdict(own_project):
    studied = run_cli(["study", "regularised", "--seeds", "2", "--epochs", "1"], own_project, timeout=900)
    assert studied.returncode == 0, studied.stderr[-3000:]
    table = run_cli(["compare", "--format", "csv"], own_project)
    assert table.returncode == 0, table.stderr
    rows = {row["entry"]: row for row in csv.DictReader(io.StringIO(table.stdout))}
    assert set(rows) == {"baseline", "wider", "regularised"}
    for step in ("wider", "regularised"):  # small_resnet: residual blocks, a skip connection each
        assert rows[step]["verdict"], rows[step]
        assert rows[step]["n"] == "2" and float(rows[step]["best_val_accuracy"]) > 0
    assert "model.params.width 16 -> 32" in rows["wider"]["change"]
    # tune searches a builder's param like any key: a trial per choice, the entry's own first
    (own_project / "ablations" / "wider.yaml").write_text(
        (own_project / "ablations" / "wider.yaml").read_text()
        + "search:\n  model.params.width: {categorical: [8, 32]}\n"
    )
    tuned = run_cli(["tune", "wider", "--trials", "2", "--epochs", "1", "--pruner", "none"], own_project, timeout=900)
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    assert "model.params.width=" in tuned.stdout


def test_params_are_keys_like_any_other_and_the_builder_source_joins_the_fingerprint(own_project, harness_cli):
    from harness.entries.registry import Registry

    before = Registry(own_project).resolve("wider")
    assert before.flat()["model.params.width"] == 32 and before.flat()["model.params.depth"] == 1
    assert before.source_of("model.params.width") == "ablations/wider.yaml"
    changed = Registry(own_project).resolve("wider", ["model.params.width=64"])
    assert changed.flat()["model.params.width"] == 64 and changed.fingerprint() != before.fingerprint()
    shown = harness_cli(["show", "wider", "--diff"], own_project)
    assert shown.returncode == 0 and "model.params.width" in shown.stdout and "32" in shown.stdout
    models = own_project / "mymodels.py"
    models.write_text(models.read_text() + "\n# an edited builder\n")
    edited = Registry(own_project).resolve("wider").fingerprint()
    assert edited != before.fingerprint()
    (own_project / "helpers.py").write_text("WIDTH = 16\n")  # a project module the builder may import
    assert Registry(own_project).resolve("wider").fingerprint() != edited


BAD_BUILDERS = {  # (the model section, fragments of the one line)
    "no_colon": ('{builder: "mymodels.small_resnet"}', ["model.builder", "'module:function'"]),
    "no_such_module": ('{builder: "theirmodels:small_resnet"}', ["model.builder", "no module 'theirmodels'"]),
    "params_not_a_mapping": ('{builder: "mymodels:small_resnet", params: [16, 1]}', ["model.params"]),
    "params_nan": ('{builder: "mymodels:small_resnet", params: {width: .nan}}', ["model.params", "finite"]),
    "params_without_builder": ("{params: {width: 16}}", ["model.params", "only a model.builder"]),
    "builder_and_arch": ('{builder: "mymodels:small_resnet", arch: vgg16}', ["model.builder", "model.arch"]),
    "no_such_function": ('{builder: "mymodels:large_resnet"}', ["no function 'large_resnet'"]),
    "unknown_param": (
        '{builder: "mymodels:small_resnet", params: {widht: 8}}',
        ["model.params.widht", "takes no parameter 'widht'", "width"],
    ),
    "missing_param": ('{builder: "mymodels:needs_depth"}', ["model.params.depth", "missing"]),
    "wrong_type": ('{builder: "mymodels:small_resnet", params: {width: wide}}', ["model.params.width", "an integer"]),
    "bool_for_int": ('{builder: "mymodels:small_resnet", params: {width: yes}}', ["model.params.width", "True"]),
    "harness_param": ('{builder: "mymodels:small_resnet", params: {num_classes: 3}}', ["model.params.num_classes"]),
    "builder_raises": ('{builder: "mymodels:raises"}', ["raised ValueError: no model today"]),
    "builder_exits": ('{builder: "mymodels:exits"}', ["raised SystemExit: 3"]),
    "not_a_model": ('{builder: "mymodels:not_a_model"}', ["returned int, not a keras.Model"]),
    "output_mismatch": ('{builder: "mymodels:three_outputs"}', ["output has shape (None, 3)", "10 classes"]),
    "no_input_shape": ('{builder: "mymodels:no_shape"}', ["takes no input_shape"]),
    "base_exception": ('{builder: "mymodels:booms"}', ["raised Boom: not an Exception"]),
    "rank_three_output": ('{builder: "mymodels:rank_three"}', ["output has shape (None, 3, 10)"]),
    "named_outputs": ('{builder: "mymodels:named_outputs"}', ["output has shape dict"]),
    "ignores_input_shape": ('{builder: "mymodels:fixed_input"}', ["fails on (8, 8, 1) images"]),
    "nested_value_for_an_int": (
        '{builder: "mymodels:small_resnet", params: {width: {a: 1}}}',
        ["ablations/hostile.yaml: model.params.width", "an integer"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_BUILDERS))
def test_a_bad_builder_or_param_is_one_line_before_anything_is_written(own_project, case, harness_cli):
    model, fragments = BAD_BUILDERS[case]
    models = own_project / "mymodels.py"
    models.write_text(models.read_text() + EXTRA_BUILDERS)
    (own_project / "ablations" / "hostile.yaml").write_text(f"model: {model}\ntraining: {{epochs: 1}}\n")
    result = harness_cli(["run-ablation", "hostile", "--set", "data.subset=240"], own_project)
    assert_clean_refusal(result, own_project, "ablations/hostile.yaml", *fragments)


def test_a_builder_module_that_raises_on_import_is_one_line(own_project, harness_cli):
    (own_project / "broken.py").write_text("raise RuntimeError('half-written module')\n")
    (own_project / "ablations" / "hostile.yaml").write_text('model: {builder: "broken:f"}\n')
    result = harness_cli(["run-ablation", "hostile", "--epochs", "1", "--set", "data.subset=240"], own_project)
    assert_clean_refusal(result, own_project, "ablations/hostile.yaml", "importing broken raised RuntimeError")


def test_a_project_module_that_would_shadow_an_installed_one_is_refused(own_project, harness_cli):
    (own_project / "json.py").write_text("def f(input_shape, num_classes):\n    return None\n")
    (own_project / "ablations" / "hostile.yaml").write_text('model: {builder: "json:f"}\n')
    result = harness_cli(["run-ablation", "hostile", "--epochs", "1", "--set", "data.subset=240"], own_project)
    assert_clean_refusal(result, own_project, "ablations/hostile.yaml", "shadow the installed module 'json'")
    import json

    assert hasattr(json, "JSONEncoder")  # the standard library's, untouched


def test_a_bad_builder_anywhere_in_a_study_is_refused_before_any_cell_trains(own_project, harness_cli):
    models = own_project / "mymodels.py"
    models.write_text(models.read_text() + EXTRA_BUILDERS)
    (own_project / "ablations" / "wider.yaml").write_text('extends: baseline\nmodel: {builder: "mymodels:loose"}\n')
    (own_project / "ablations" / "regularised.yaml").write_text(
        'extends: wider\nmodel: {builder: "mymodels:small_resnet"}\n'
    )
    args = ["study", "regularised", "--seeds", "2", "--epochs", "1", "--set", "data.subset=240"]
    result = harness_cli(args, own_project)
    assert_clean_refusal(result, own_project, "ablations/wider.yaml", "returned int, not a keras.Model")


def test_a_searched_param_is_checked_against_the_builder_before_any_trial(own_project, harness_cli):
    wider = own_project / "ablations" / "wider.yaml"
    wider.write_text(wider.read_text() + "search:\n  model.params.width: {categorical: [16, wide]}\n")
    result = harness_cli(["tune", "wider", "--trials", "1", "--epochs", "1", "--set", "data.subset=240"], own_project)
    assert_clean_refusal(result, own_project, "ablations/wider.yaml", "search.model.params.width", "'wide'")


def test_a_bad_param_is_one_line_from_a_real_process_too(own_project):
    (own_project / "ablations" / "hostile.yaml").write_text(
        'model: {builder: "mymodels:small_resnet", params: {widht: 8}}\n'
    )
    result = run_cli(["run-ablation", "hostile", "--epochs", "1", "--set", "data.subset=240"], own_project)
    assert_clean_refusal(result, own_project, "ablations/hostile.yaml", "model.params.widht")  # no TensorFlow lines
