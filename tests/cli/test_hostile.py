"""A hostile user's inputs, one table per category, through the command line: each is one
line naming the file, key or value, exit status 2, no traceback, and
nothing written to the store. The tables run the CLI in this process (harness_cli); one case
of each table also runs as a real `harness` process. How fast each is refused is a figure
for bench/hostile.py, not an assert here."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.helpers import run_cli, write_entry


def assert_clean_refusal(result, project, *fragments, seconds=None):
    output = result.stderr + result.stdout
    assert result.returncode == 2, output
    assert "Traceback" not in output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not (project / "mlruns" / "mlflow.db").exists(), "the store was written"


# Values the schema must refuse rather than coerce: (YAML under `extends: baseline`, fragments).
STRICT_VALUES = {
    "batch_size_yes": ("training: {batch_size: yes}", ["training.batch_size", "True"]),
    "epochs_true": ("training: {epochs: true}", ["training.epochs"]),
    "epochs_text": ("training: {epochs: '3'}", ["training.epochs", "'3'"]),
    "filters_true": ("model: {blocks: [{filters: true}]}", ["model.blocks.0.filters"]),
    "pool_off_text": ("model: {blocks: [{filters: 8, pool: 'off'}]}", ["model.blocks.0.pool", "'off'"]),
    "lr_inf": ("optimizer: {learning_rate: .inf}", ["optimizer.learning_rate", "finite"]),
    "lr_nan": ("optimizer: {learning_rate: .nan}", ["optimizer.learning_rate", "finite"]),
    "l2_nan": ("model: {dense: [{units: 8, l2: .nan}]}", ["model.dense.0.l2", "finite"]),
    "gamma_inf": ("loss: {name: focal, gamma: .inf}", ["loss.gamma", "finite"]),
    "min_lr_inf": ("training: {lr_schedule: {min_lr: .inf}}", ["training.lr_schedule.min_lr", "finite"]),
    "weight_decay_nan": ("optimizer: {name: adamw, weight_decay: .nan}", ["optimizer.weight_decay"]),
    "boost_inf": ("training: {class_weight: {boost: {3: .inf}}}", ["training.class_weight.boost.3"]),
    "boost_negative": (
        "training: {class_weight: {boost: {3: -2.0}}}",
        ["training.class_weight.boost.3", "greater than 0"],
    ),
    "monitor_unknown": (
        "training: {early_stopping: {monitor: val_f1}}",
        ["training.early_stopping.monitor", "'val_f1'"],
    ),
    "activation_unknown": ("model: {activation: relux}", ["model.activation", "'relux'"]),
    "seed_negative": ("training: {seed: -1}", ["training.seed"]),
    "seed_too_big": ("training: {seed: 4294967296}", ["training.seed"]),
    "data_seed_negative": ("data: {seed: -5}", ["data.seed"]),
    "kernel_too_big": ("model: {blocks: [{filters: 8, kernel_size: 50}]}", ["model.blocks.0.kernel_size"]),
    "too_many_blocks": ("model: {blocks: [" + ", ".join(["{filters: 1}"] * 100) + "]}", ["model.blocks", "at most 32"]),
    "claim_negative_accuracy": ("report: {val_accuracy: -3.0}", ["report.val_accuracy", "-3.0"]),
    "claim_accuracy_percent": ("report: {test_accuracy: 90}", ["report.test_accuracy", "90"]),
    "claim_negative_loss": ("report: {val_loss: -0.1}", ["report.val_loss"]),
    "trainable_said_once": ("model: {arch: vgg16, trainable: 'top:x'}", ["model.trainable", "got 'top:x'"]),
    "key_read_as_boolean": ("training: {yes: 3}", ["training: key True is not a name", "quote it"]),
    "lone_surrogate_text": ('description: "\\ud800"', ["not valid Unicode"]),
    "trainable_unicode_digit": ("model: {arch: vgg16, trainable: 'top:²'}", ["model.trainable", "top:²"]),
    "cross_section_check_named_plainly": (
        "model: {pretrained: imagenet}",
        ["ablations/hostile.yaml: model.pretrained: the cnn"],
    ),
    "union_branches_named_plainly": (
        "model: {bn_momentum: 2.0}",
        ["model.bn_momentum: expected 'auto' or less than 1"],
    ),
}


def test_a_value_is_named_once_and_no_branch_tag_shows(project, harness_cli):
    write_entry(project, "hostile", "extends: baseline\nmodel: {arch: vgg16, trainable: 'top:x'}\n")
    line = harness_cli(["show", "hostile"], project).stderr
    assert line.count("'top:x'") == 1, line
    write_entry(project, "hostile", "extends: baseline\nmodel: {bn_momentum: x}\n")
    line = harness_cli(["show", "hostile"], project).stderr
    assert "literal[" not in line and "constrained" not in line, line


@pytest.mark.parametrize("case", sorted(STRICT_VALUES))
def test_absurd_values_are_refused_not_coerced(project, case, harness_cli):
    text, fragments = STRICT_VALUES[case]
    write_entry(project, "hostile", f"extends: baseline\n{text}\n")
    result = harness_cli(["run-ablation", "hostile"], project)
    assert_clean_refusal(result, project, "ablations/hostile.yaml", *fragments)


# Entries that validate but cannot run on the data: refused before the store is opened.
ACCEPTED_THEN_FAILED = {
    "valid_padding_shrinks_digits": ("model: {blocks: [{filters: 8, kernel_size: 9}]}", ["cannot build", "8x8"]),
    "three_valid_blocks": ("model: {blocks: [{filters: 4}, {filters: 4}, {filters: 4}]}", ["cannot build", "block"]),
    "boost_unknown_class": (
        "training: {class_weight: {boost: {tiger: 2.0}}}",
        ["ablations/hostile.yaml", "no class 'tiger'", "digits"],
    ),
    "boost_index_out_of_range": ("training: {class_weight: {boost: {12: 2.0}}}", ["no class 12"]),
}


@pytest.mark.parametrize("case", sorted(ACCEPTED_THEN_FAILED))
def test_entries_that_cannot_run_on_the_data_fail_before_the_store(project, case, harness_cli):
    text, fragments = ACCEPTED_THEN_FAILED[case]
    write_entry(project, "hostile", f"extends: baseline\n{text}\n")
    result = harness_cli(["run-ablation", "hostile", "--epochs", "1"], project)
    assert_clean_refusal(result, project, *fragments)


SEARCH_BLOCKS = {
    "infinite_bound": ("optimizer.learning_rate: {float: [1.0e-4, .inf]}", ["search.optimizer.learning_rate"]),
    "nan_bound": ("optimizer.learning_rate: {float: [.nan, 0.1]}", ["search.optimizer.learning_rate"]),
    "negative_seed_range": ("training.seed: {int: [-5, 3]}", ["search.training.seed", "-5"]),
    "seed_range_too_big": ("training.seed: {int: [0, 4294967296]}", ["search.training.seed"]),
    "bool_bound": ("training.epochs: {int: [true, 5]}", ["search.training.epochs"]),
    "float_range_on_an_int_key": ("training.batch_size: {float: [16, 64]}", ["search.training.batch_size", "int:"]),
    "nan_step": ("optimizer.momentum: {float: [0.0, 0.5], step: .nan}", ["search.optimizer.momentum", "step"]),
    "inf_step": ("optimizer.momentum: {float: [0.0, 0.5], step: .inf}", ["search.optimizer.momentum", "step"]),
    "step_wider_than_range": ("training.batch_size: {int: [16, 256], step: 1000}", ["step 1000", "wider"]),
    "list_choice": ("model.dense: {categorical: [[], [{units: 8}]]}", ["search.model.dense", "single values"]),
}


@pytest.mark.parametrize("case", sorted(SEARCH_BLOCKS))
def test_bad_search_ranges_are_refused_before_any_trial(project, case, harness_cli):
    text, fragments = SEARCH_BLOCKS[case]
    write_entry(project, "hostile", f"extends: baseline\nsearch:\n  {text}\n")
    result = harness_cli(["tune", "hostile", "--trials", "1"], project)
    assert_clean_refusal(result, project, "ablations/hostile.yaml", *fragments)


# An entry is checked as written, whatever the command and its overrides: (YAML under
# `extends: baseline`, fragments). An override can change a value, never hide a file's bad one.
AS_WRITTEN = {
    "epochs_overflow": ("training: {epochs: 1e309}", ["training.epochs", "inf"]),
    "epochs_zero": ("training: {epochs: 0}", ["training.epochs", "0"]),
    "search_not_a_mapping": ("search: [1, 2]", ["search", "expected a mapping"]),
    "search_unknown_key": (
        "search: {optimizer.learning_rte: {float: [0.1, 1.0]}}",
        ["search.optimizer.learning_rte", "did you mean 'optimizer.learning_rate'"],
    ),
    "search_bound_text": ("search: {optimizer.learning_rate: {float: [1, x]}}", ["search.optimizer.learning_rate"]),
    "search_two_kinds": (
        "search: {training.batch_size: {int: [8, 64], categorical: [8]}}",
        ["search.training.batch_size", "exactly one"],
    ),
    "search_value_the_schema_refuses": ("search: {training.epochs: {int: [0, 3]}}", ["search.training.epochs", "0"]),
}
AS_WRITTEN_COMMANDS = {
    "show": ["show", "hostile"],
    "run_epochs_1": ["run-ablation", "hostile", "--epochs", "1"],
    "run_set_epochs": ["run-ablation", "hostile", "--set", "training.epochs=1", "--seeds", "0,1"],
    "study": ["study", "hostile", "--seeds", "2", "--epochs", "1"],
    "run_seeds_auto": ["run-ablation", "hostile", "--seeds", "auto", "--epochs", "1", "--set", "data.subset=240"],
}


@pytest.mark.parametrize("command", sorted(AS_WRITTEN_COMMANDS))
@pytest.mark.parametrize("case", sorted(AS_WRITTEN))
def test_an_entry_is_checked_as_written_whatever_overrides_the_command_gives(project, case, command, harness_cli):
    text, fragments = AS_WRITTEN[case]
    write_entry(project, "hostile", f"extends: baseline\n{text}\n")
    result = harness_cli(AS_WRITTEN_COMMANDS[command], project)
    assert_clean_refusal(result, project, "ablations/hostile.yaml", *fragments)


def test_an_ancestor_is_checked_as_written_though_its_child_sets_the_value_again(project, harness_cli):
    write_entry(project, "hostile", "extends: baseline\ntraining: {epochs: 0}\n")
    write_entry(project, "child", "extends: hostile\ntraining: {epochs: 2}\n")
    result = harness_cli(["run-ablation", "child", "--epochs", "1"], project)
    assert_clean_refusal(result, project, "ablations/hostile.yaml", "training.epochs")


@pytest.mark.parametrize("kind", ["folder", "symlink_loop", "dangling_symlink"])
def test_an_entry_that_is_not_a_file_is_named_as_such(project, kind, harness_cli):
    path = project / "ablations" / "hostile.yaml"
    if kind == "folder":
        path.mkdir()
    else:
        path.symlink_to("hostile.yaml" if kind == "symlink_loop" else "gone.yaml")
    result = harness_cli(["show", "hostile"], project)
    assert_clean_refusal(result, project, "ablations/hostile.yaml")
    assert "did you mean" not in result.stderr


def test_list_warns_once_about_an_entry_bad_as_written_and_lists_the_rest(project, harness_cli):
    write_entry(project, "hostile", "extends: baseline\ntraining: {epochs: 0}\n")
    write_entry(project, "child", "extends: hostile\n")
    result = harness_cli(["list"], project)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and "ablations/hostile.yaml: training.epochs" in warnings[0], warnings
    assert "hostile" not in result.stdout and "child" not in result.stdout and "focal_loss" in result.stdout


@pytest.mark.parametrize("text", ["", "# only a comment\n", "{}\n", "---\n"])
@pytest.mark.parametrize("verb", ["show", "run-ablation"])
def test_an_empty_entry_is_refused_as_empty(project, text, verb, harness_cli):
    (project / "ablations" / "hostile.yaml").write_text(text)
    result = harness_cli([verb, "hostile"], project)
    assert_clean_refusal(result, project, "ablations/hostile.yaml", "empty entry")


COMMAND_LINES = {
    "seeds_negative": (["run-ablation", "baseline", "--seeds", "0,-1"], ["--seeds"]),
    "seeds_too_big": (["run-ablation", "baseline", "--seeds", "0,4294967296"], ["--seeds", "4294967296"]),
    "seeds_zero_count": (["run-ablation", "baseline", "--seeds", "0"], ["--seeds"]),
    "unknown_option": (["run-ablation", "baseline", "--bogus"], ["No such option: --bogus"]),
    "missing_name": (["run-ablation"], ["Missing argument"]),
    "epochs_not_a_number": (["run-ablation", "baseline", "--epochs", "abc"], ["--epochs"]),
    "unknown_verb": (["nosuchcmd"], ["No such command 'nosuchcmd'"]),
    "name_with_newline": (["run-ablation", "baseline\n"], ["bad entry name"]),
    "name_too_long": (["run-ablation", "a" * 300], ["bad entry name", "1-64"]),
    "dataset_taken_literally": (
        ["run-ablation", "baseline", "--dataset", "folder:/x/good #2"],
        ["folder:/x/good #2", "no train/ folder"],
    ),
    "tracking_uri_garbage": (
        ["run-ablation", "baseline", "--epochs", "1", "--tracking-uri", "garbage"],
        ["tracking URI 'garbage'"],
    ),
    "tracking_uri_unknown_scheme": (
        ["run-ablation", "baseline", "--epochs", "1", "--tracking-uri", "foo://bar"],
        ["tracking URI 'foo://bar'"],
    ),
    "tracking_uri_missing_folder": (
        ["run-ablation", "baseline", "--epochs", "1", "--tracking-uri", "sqlite:////no/such/dir/x.db"],
        ["folder /no/such/dir does not exist"],
    ),
    "tracking_server_down": (
        ["run-ablation", "baseline", "--epochs", "1", "--tracking-uri", "http://127.0.0.1:1"],
        ["http://127.0.0.1:1", "no MLflow server answers"],
    ),
    "compare_out_missing_folder": (["compare", "--out", "/no/such/dir/t.md"], ["/no/such/dir"]),
    "seeds_with_underscore": (["run-ablation", "baseline", "--seeds", "1_0"], ["--seeds '1_0'"]),
    "seeds_with_space": (["run-ablation", "baseline", "--seeds", " 3"], ["--seeds ' 3'"]),
    "study_seeds_zero": (["study", "baseline", "--seeds", "0"], ["--seeds '0'", "one seed: 7,"]),
    "any_settings_and_epochs": (["compare", "--any-settings", "--epochs", "1"], ["--any-settings", "--epochs"]),
    "entry_named_twice": (["compare", "baseline", "baseline"], ["'baseline' is named twice"]),
    "read_set_wrong_type": (["compare", "--set", "training.epochs=abc"], ["training.epochs", "'abc'"]),
    "read_epochs_zero": (["compare", "--epochs", "0"], ["training.epochs", "greater than or equal to 1"]),
    "read_epochs_negative": (["select", "--epochs", "-1"], ["training.epochs"]),
    "report_set_wrong_type": (["report", "--set", "training.batch_size=yes"], ["training.batch_size"]),
    "study_name_newline": (["study", "baseline", "--name", "a\nb"], ["--name 'a\\nb'"]),
    "storage_in_memory": (
        ["study", "baseline", "--seeds", "1", "--workers", "2", "--storage", "sqlite:///:memory:"],
        ["in memory", "no other worker"],
    ),
    "storage_in_the_mlflow_store": (
        ["study", "baseline", "--seeds", "1", "--storage", "sqlite:///{project}/mlruns/mlflow.db"],
        ["mlruns/mlflow.db", "harness's own files"],
    ),
    "tune_storage_in_memory": (["tune", "focal_loss", "--trials", "1", "--storage", "sqlite://"], ["in memory"]),
    "ui_host_not_here": (["ui", "--host", "999.1.1.1"], ["--host 999.1.1.1", "not an address"]),
}


ENVIRONMENTS = {
    "cache_is_a_device": ({"HARNESS_CACHE": "/dev/null"}, ["run-ablation", "baseline"], ["HARNESS_CACHE=/dev/null"]),
    "heartbeat_not_a_number": (
        {"HARNESS_HEARTBEAT_SECONDS": "abc"},
        ["study", "baseline", "--seeds", "1"],
        ["HARNESS_HEARTBEAT_SECONDS='abc'"],
    ),
    "grace_zero": ({"HARNESS_GRACE_SECONDS": "0"}, ["tune", "focal_loss", "--trials", "1"], ["HARNESS_GRACE_SECONDS"]),
}


@pytest.mark.parametrize("case", sorted(ENVIRONMENTS))
def test_bad_environment_values_are_one_line(project, case, harness_cli, monkeypatch):
    env, args, fragments = ENVIRONMENTS[case]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert_clean_refusal(harness_cli(args, project), project, *fragments)


def test_a_store_file_that_is_not_a_file_is_named_as_such(project, tmp_path, harness_cli):
    import os

    database = project / "mlruns" / "mlflow.db"
    database.parent.mkdir()
    for make, fragment in (
        (lambda: database.mkdir(), "is a folder"),
        (lambda: os.mkfifo(database), "not a regular file"),
        (lambda: database.symlink_to("/dev/null"), "not a regular file"),
    ):
        make()
        for args in (["compare"], ["run-ablation", "baseline", "--epochs", "1"]):
            result = harness_cli(args, project)
            output = result.stdout + result.stderr
            assert result.returncode == 2 and "Traceback" not in output, output
            assert fragment in result.stderr and "does not exist" not in result.stderr, result.stderr
        if database.is_dir() and not database.is_symlink():
            database.rmdir()
        else:
            database.unlink()


def test_a_folder_too_small_for_a_test_split_says_so(project, tmp_path, monkeypatch, harness_cli):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    root = _folder(tmp_path / "tiny", per_class=2)
    result = harness_cli(["run-ablation", "same_padding", "--epochs", "1", "--dataset", f"folder:{root}"], project)
    assert_clean_refusal(result, project, f"folder:{root}: the 20% test split", "cannot split 4 images of 2 classes")
    assert "=0.2" not in result.stderr


@pytest.mark.parametrize("case", sorted(COMMAND_LINES))
def test_bad_command_lines_are_one_line(project, case, harness_cli):
    args, fragments = COMMAND_LINES[case]
    result = harness_cli([arg.replace("{project}", str(project)) for arg in args], project)
    assert_clean_refusal(result, project, *fragments)  # how fast: bench/hostile.py counts slow refusals


def _alias_bomb(levels=7):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return lines


RESOURCE_LIMITS = {
    "alias_bomb_in_description": (
        "extends: baseline\ndescription:\n" + "\n".join("  " + line for line in _alias_bomb()) + "\n",
        ["aliases expand to more than"],
    ),
    "alias_bomb_in_search": (
        "extends: baseline\nsearch:\n  junk:\n" + "\n".join("    " + line for line in _alias_bomb()) + "\n",
        ["aliases expand to more than"],
    ),
    "self_referring_alias": ("extends: baseline\nreport: &r {note: *r}\n", ["aliases", "refer to themselves"]),
    "hundred_thousand_blocks": (
        "extends: baseline\nmodel:\n  blocks:\n" + "    - {filters: 1}\n" * 100_000,
        ["more than an entry can be"],
    ),
}


@pytest.mark.parametrize("case", sorted(RESOURCE_LIMITS))
@pytest.mark.parametrize("verb", ["show", "run-ablation"])
def test_resource_bombs_are_refused_before_they_expand(project, case, verb, harness_cli):
    text, fragments = RESOURCE_LIMITS[case]
    write_entry(project, "hostile", text)
    result = harness_cli([verb, "hostile"], project)
    assert_clean_refusal(result, project, "ablations/hostile.yaml", *fragments)


def _png_header_claiming(width, height):
    """A PNG whose header claims width x height pixels: what a decompression bomb looks like
    to a decoder before it inflates anything."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def _folder(root, size=8, per_class=10, test_size=None):
    rng = np.random.default_rng(0)
    for part, side in (("train", size), ("test", test_size)):
        if side is None:
            continue
        for name in ("cat", "dog"):
            folder = root / part / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def _dangling(root):
    (root / "train" / "cat" / "gone.png").symlink_to(root / "nowhere.png")


def _looping(root):
    (root / "train" / "cat" / "loop.png").symlink_to(root / "train" / "cat" / "loop.png")


def _bomb(root):
    (root / "train" / "dog" / "bomb.png").write_bytes(_png_header_claiming(60000, 60000))


IMAGE_FOLDERS = {
    "dangling_symlink": (_dangling, None, ["gone.png"]),
    "looping_symlink": (_looping, None, ["loop.png"]),
    "decompression_bomb": (_bomb, None, ["bomb.png", "decompression bomb"]),
    "test_images_of_another_size": (None, 12, ["test/", "12x12", "8x8"]),
}


@pytest.mark.parametrize("case", sorted(IMAGE_FOLDERS))
def test_hostile_image_folders_name_the_file(project, tmp_path, case, monkeypatch, harness_cli):
    damage, test_size, fragments = IMAGE_FOLDERS[case]
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    root = _folder(tmp_path / "images", test_size=test_size)
    if damage:
        damage(root)
    result = harness_cli(["run-ablation", "same_padding", "--epochs", "1", "--dataset", f"folder:{root}"], project)
    assert_clean_refusal(result, project, f"folder:{root}", *fragments)


# One case of each table as a real process: the exit status a shell sees, nothing on stderr
# but the one line (no TensorFlow start-up chatter), no store.
PROCESS_SAMPLES = {
    "strict value": ("training: {batch_size: yes}", ["run-ablation", "hostile"], ["training.batch_size"]),
    "cannot build": ("model: {blocks: [{filters: 8, kernel_size: 9}]}", ["run-ablation", "hostile"], ["cannot build"]),
    "search range": (
        "search:\n  optimizer.learning_rate: {float: [1.0e-4, .inf]}",
        ["tune", "hostile", "--trials", "1"],
        ["search.optimizer.learning_rate"],
    ),
    "command line": ("", ["run-ablation", "hostile", "--seeds", "0,-1"], ["--seeds"]),
    "resource bomb": ("report: &r {note: *r}", ["show", "hostile"], ["refer to themselves"]),
    "as written": ("training: {epochs: 0}", ["run-ablation", "hostile", "--epochs", "1"], ["training.epochs"]),
}


@pytest.mark.parametrize("case", sorted(PROCESS_SAMPLES))
def test_one_case_of_each_table_as_a_real_process(project, case):
    text, args, fragments = PROCESS_SAMPLES[case]
    write_entry(project, "hostile", f"extends: baseline\n{text}\n")
    assert_clean_refusal(run_cli(args, project), project, *fragments)
