"""When a finished run stands for a command, and when it does not: identical commands train
once, a tune trial is not the entry's run, a broken neighbour entry does not break the
listings, an unsafe model is refused in one line, a repository's hooks never run."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.helpers import TUNABLE, run_cli, store_runs, write_entry

pytestmark = pytest.mark.slow  # trains models or starts processes: the full tier only

TINY = ["--epochs", "1", "--set", "data.subset=200"]


def runs(project, experiment="digits (subset 200)"):
    return store_runs(project, experiment)


def test_two_identical_run_ablations_started_together_train_once(project):
    command = [
        sys.executable,
        "-m",
        "harness",
        "run-ablation",
        "same_padding",
        "--epochs",
        "3",
        "--set",
        "data.subset=200",
    ]
    workers = [
        subprocess.Popen(command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    _, found = runs(project)
    assert len(found) == 1 and found[0].info.status == "FINISHED"
    assert sum("already done" in out for out, _ in outputs) == 1


def test_a_tune_trial_is_not_the_entrys_finished_run(project):
    write_entry(project, "tunable", TUNABLE)
    tuned = run_cli(["tune", "tunable", "--trials", "1", "--pruner", "none", *TINY], project)
    assert tuned.returncode == 0, tuned.stderr
    ran = run_cli(["run-ablation", "tunable", *TINY], project)  # trial 0 trained exactly this spec
    assert ran.returncode == 0, ran.stderr
    assert "already done" not in ran.stdout and "training tunable" in ran.stdout
    _, found = runs(project)
    assert sorted(r.data.tags["harness.kind"] for r in found) == ["run", "study", "trial"]
    compared = run_cli(["compare", "tunable", "--subset", "200"], project)
    assert compared.returncode == 0 and "tunable" in compared.stdout


def test_one_broken_entry_does_not_break_list_and_compare(project):
    ran = run_cli(["run-ablation", "same_padding", *TINY], project)
    assert ran.returncode == 0, ran.stderr
    write_entry(project, "broken", "extends: baseline\nmodel: [unclosed\n")
    listed = run_cli(["list"], project, env={"COLUMNS": "200"})
    assert listed.returncode == 0, listed.stderr
    assert "same_padding" in listed.stdout and "broken" not in listed.stdout
    assert "warning: skipped ablations/broken.yaml: malformed YAML" in listed.stderr
    compared = run_cli(["compare", "--subset", "200"], project)
    assert compared.returncode == 0, compared.stderr
    assert "same_padding" in compared.stdout and "ablations/broken.yaml" in compared.stderr


def test_select_refuses_an_unsafe_model_in_one_line(project, tmp_path):
    ran = run_cli(["run-ablation", "same_padding", *TINY], project)
    assert ran.returncode == 0, ran.stderr
    client, (run,) = runs(project)
    inputs = keras.Input((8, 8, 1))
    unsafe = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(keras.layers.Flatten()(inputs)))
    unsafe.save(tmp_path / "model.keras")
    client.log_artifact(run.info.run_id, str(tmp_path / "model.keras"))  # replaces the run's model
    result = run_cli(["select", "--subset", "200", "--epochs", "1"], project)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.strip()]
    assert line.startswith("error: ") and "cannot be loaded safely" in line and run.info.run_id in line
    _, after = runs(project)
    assert [r.data.tags["harness.kind"] for r in after] == ["run"]  # no final run was recorded


def test_the_commit_tag_runs_no_repository_hook(project):
    marker = project / "fsmonitor-ran"
    hook = project / "hook.sh"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    for command in (
        ["git", "init", "-q"],
        ["git", "add", "ablations"],
        ["git", "commit", "-qm", "entries"],
        ["git", "config", "core.fsmonitor", str(hook)],
    ):
        subprocess.run(command, cwd=project, check=True, env=env)
    marker.unlink(missing_ok=True)
    ran = run_cli(["run-ablation", "same_padding", *TINY], project)
    assert ran.returncode == 0, ran.stderr
    assert not marker.exists()
    _, (run,) = runs(project)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
    assert run.data.tags["harness.git_commit"].startswith(commit)
    assert np.isfinite(run.data.metrics["best_val_accuracy"])
