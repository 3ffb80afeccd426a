"""The command line as a user meets it: listings, shows, one-line errors with exit status 2
and nothing written to the store, and Ctrl-C ending a run KILLED with status 130."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from mlflow import MlflowClient

from harness.tracking.uri import default_tracking_uri
from tests.helpers import run_cli, start_cli, write_entry


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_list_prints_the_history_in_order_with_descriptions(project):
    result = run_cli(["list"], project, env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    names = [line.split()[1] for line in lines[1:]]
    assert names.index("baseline") < names.index("adam") < names.index("final") < names.index("resnet50")
    assert "The lab model the report started from" in result.stdout


def test_show_gives_each_value_and_its_file(project):
    result = run_cli(["show", "focal_loss"], project, env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.split()[:1] == ["loss.name"])
    assert line.split() == ["loss.name", "focal", "ablations/focal_loss.yaml"]
    line = next(line for line in result.stdout.splitlines() if line.split()[:1] == ["optimizer.name"])
    assert line.split() == ["optimizer.name", "adam", "ablations/adam.yaml"]


def test_show_diff_gives_only_the_changes(project):
    result = run_cli(["show", "adam", "--diff"], project, env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.strip().startswith("optimizer.")]
    assert rows == [
        ["optimizer.learning_rate", "0.01", "0.001", "ablations/adam.yaml"],
        ["optimizer.name", "sgd", "adam", "ablations/adam.yaml"],
    ]
    assert "model." not in result.stdout


BAD_ENTRIES = {
    "unknown_key": (
        "extends: baseline\nmodel:\n  blok: []\n",
        ["ablations/unknown_key.yaml", "model.blok", "did you mean 'blocks'"],
    ),
    "unknown_section": (
        "extends: baseline\nmodle: {}\n",
        ["ablations/unknown_section.yaml", "'modle'", "did you mean 'model'"],
    ),
    "wrong_type": (
        "extends: baseline\ntraining:\n  epochs: many\n",
        ["ablations/wrong_type.yaml", "training.epochs", "'many'"],
    ),
    "malformed": ("extends: baseline\nmodel: [unclosed\n", ["ablations/malformed.yaml", "malformed YAML", "line"]),
    "missing_parent": ("extends: nowhere\n", ["ablations/missing_parent.yaml", "no entry 'nowhere'"]),
    "cycle_a": ("extends: cycle_b\n", ["cycle", "cycle_a", "cycle_b"]),
    "bad_value": (
        "extends: baseline\noptimizer:\n  name: adamm\n",
        ["ablations/bad_value.yaml", "optimizer.name", "'adamm'"],
    ),
    "duplicate": ("extends: baseline\nmodel: {}\nmodel: {}\n", ["ablations/duplicate.yaml", "duplicate key 'model'"]),
}


@pytest.mark.parametrize("name", sorted(BAD_ENTRIES))
def test_bad_entries_are_one_line_errors_and_write_nothing(project, name, harness_cli):
    text, fragments = BAD_ENTRIES[name]
    write_entry(project, name, text)
    if name == "cycle_a":
        write_entry(project, "cycle_b", "extends: cycle_a\n")
    for verb in (["show", name], ["run-ablation", name]):
        assert_one_line_error(harness_cli(verb, project), *fragments)
    assert not (project / "mlruns").exists()


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["run-ablation", "focal_los"], ["unknown entry 'focal_los'", "did you mean 'focal_loss'"]),
        (["run-ablation", "../etc/passwd"], ["bad entry name"]),
        (["run-ablation", "baseline", "--set", "training.epochs"], ["bad --set", "key=value"]),
        (
            ["run-ablation", "baseline", "--set", "trainng.epochs=3"],
            ["unknown section 'trainng'", "did you mean 'training'"],
        ),
        (
            ["run-ablation", "baseline", "--set", "training.epoch=3"],
            ["--set", "training.epoch", "did you mean 'epochs'"],
        ),
        (["run-ablation", "baseline", "--set", "training.epochs=-1"], ["--set", "training.epochs"]),
        (["run-ablation", "baseline", "--dataset", "mnist"], ["data.source", "unknown dataset 'mnist'"]),
        (["run-ablation", "baseline", "--dataset", "folder:/nonexistent"], ["folder:/nonexistent", "no train/ folder"]),
        (["run-ablation", "baseline", "--seeds", "x"], ["--seeds"]),
    ],
)
def test_bad_command_lines_are_one_line_errors_and_write_nothing(project, args, fragments, harness_cli):
    assert_one_line_error(harness_cli(args, project), *fragments)
    assert not (project / "mlruns").exists()


@pytest.mark.slow
def test_offline_imagenet_weights_are_a_clear_error_before_any_run(project, tmp_path):
    result = run_cli(
        ["run-ablation", "vgg16", "--epochs", "1", "--set", "data.subset=100"],
        project,
        env={"KERAS_HOME": str(tmp_path / "keras")},
    )
    assert_one_line_error(
        result, "model.pretrained", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "model.pretrained=null"
    )
    assert not (project / "mlruns" / "mlflow.db").exists() or not MlflowClient(
        default_tracking_uri(project)
    ).search_runs(["1"])


@pytest.mark.slow
def test_ctrl_c_ends_the_run_killed_with_status_130(project):
    process = start_cli(["run-ablation", "extra_blocks", "--epochs", "50"], project, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    for line in process.stdout:
        if line.startswith("epoch 1/") or time.time() > deadline:
            break
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    client = MlflowClient(default_tracking_uri(project))
    (run,) = client.search_runs([client.get_experiment_by_name("digits").experiment_id])
    assert run.info.status == "KILLED"
    assert "interrupted" in run.data.tags["harness.reason"]
