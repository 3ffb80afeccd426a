"""Optuna studies: declarative search spaces checked up front, persistent resumable studies
whose first trial is the entry itself, pruning, MLflow child runs, best trial -> entry, and
parallel workers on the journal file and on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys

import optuna
import pytest
from mlflow import MlflowClient

from harness.entries.registry import Registry
from harness.tracking.uri import default_tracking_uri
from harness.tuning import best_entry
from harness.tuning import tune as tuning
from harness.tuning.tune import TuneSettings
from tests.helpers import TUNABLE, quiet, run_cli, write_entry

pytestmark = pytest.mark.slow  # trains models or starts processes: the full tier only

# A small model that learns digits within a few epochs, with one searched value.
SUBSET = ["data.subset=300"]


@pytest.fixture
def tunable(project):
    write_entry(project, "tunable", TUNABLE)
    return project


def mlflow_runs(project, kind):
    client = MlflowClient(default_tracking_uri(project))
    experiment = client.get_experiment_by_name("digits (subset 300)")
    return client, client.search_runs([experiment.experiment_id], f"tags.`harness.kind` = '{kind}'")


def load(project, storage=None):
    study, _ = best_entry.load_study(project, "tunable", SUBSET, storage)
    return study


BAD_SEARCH = {
    "unknown": (
        "optimizer.learnin_rate: {float: [0.001, 0.1]}",
        ["search.optimizer.learnin_rate", "did you mean 'optimizer.learning_rate'"],
    ),
    "inverted": ("optimizer.learning_rate: {float: [0.1, 0.001]}", ["empty or inverted range"]),
    "empty": ("training.batch_size: {categorical: []}", ["non-empty list"]),
    "wrong_type": ("training.batch_size: {categorical: [64, big]}", ["search.training.batch_size", "'big'"]),
    "float_for_int": ("training.epochs: {float: [1.5, 3.0]}", ["search.training.epochs"]),
    "bad_kind": ("training.epochs: {range: [1, 3]}", ["exactly one of float, int, categorical"]),
    "log_zero": ("optimizer.momentum: {float: [0.0, 0.9], log: true}", ["log range needs low > 0"]),
    "missing_item": ("model.dense.0.units: {int: [8, 64]}", ["model.dense.0.units", "list item that does not exist"]),
}


@pytest.mark.parametrize("case", sorted(BAD_SEARCH))
def test_bad_search_blocks_are_one_line_errors_before_any_trial(project, case):
    line, fragments = BAD_SEARCH[case]
    write_entry(project, "bad", f"extends: baseline\nsearch:\n  {line}\n")
    result = run_cli(["tune", "bad", "--trials", "1"], project)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (message,) = [x for x in result.stderr.splitlines() if x.strip()]
    assert message.startswith("error: ablations/bad.yaml: search.")
    for fragment in fragments:
        assert fragment in message
    assert not (project / "mlruns").exists()


def test_the_report_steps_with_something_to_tune_have_valid_search_blocks(project):
    from harness.tuning.search_space import parse_search

    registry = Registry(project)
    tuned = [name for name in registry.names() if registry.entry(name).search]
    assert {"adam", "dropout", "l2", "focal_loss", "batch_128", "lr_scheduler", "final"} <= set(tuned)
    for name in tuned:
        assert parse_search(registry.resolve(name), registry)


def test_study_starts_with_the_entry_resumes_and_logs_child_runs(tunable):
    first = tuning.tune(quiet(tunable), "tunable", TuneSettings(2, pruner="none"), SUBSET)
    again = tuning.tune(quiet(tunable), "tunable", TuneSettings(1, pruner="none"), SUBSET)
    assert again.study_name == first.study_name and again.study_run_id == first.study_run_id
    study = load(tunable)
    assert len(study.trials) == 3
    assert study.trials[0].params == {"optimizer.learning_rate": 0.01}
    assert study.best_value >= study.trials[0].value
    client, trials = mlflow_runs(tunable, "trial")
    _, studies = mlflow_runs(tunable, "study")
    assert len(studies) == 1 and studies[0].info.run_id == first.study_run_id
    assert studies[0].info.status == "FINISHED"
    assert len(trials) == 3
    assert studies[0].info.end_time >= max(r.info.end_time for r in trials)  # the study run spans its trials
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {first.study_run_id}
    assert sorted(int(r.data.tags["harness.trial"]) for r in trials) == [0, 1, 2]
    for run in trials:
        number = int(run.data.tags["harness.trial"])
        sampled = study.trials[number].params["optimizer.learning_rate"]
        assert float(run.data.params["optimizer.learning_rate"]) == pytest.approx(sampled)
        assert run.data.metrics["best_val_accuracy"] == pytest.approx(study.trials[number].value)
        assert len(client.get_metric_history(run.info.run_id, "val_accuracy")) == 4
    study_run = client.get_run(first.study_run_id)
    assert study_run.data.metrics["best_val_accuracy"] == pytest.approx(study.best_value)
    assert "best_value" not in study_run.data.metrics  # once, under the metric's name
    assert float(study_run.data.tags["harness.best.optimizer.learning_rate"]) == pytest.approx(
        study.best_params["optimizer.learning_rate"]
    )
    artifacts = {a.path for a in client.list_artifacts(first.study_run_id)}
    assert {"optimization_history.png", "param_importances.png"} <= artifacts


def test_pruned_trials_end_pruned_in_optuna_and_killed_in_mlflow(tunable):
    tuning.tune(quiet(tunable), "tunable", TuneSettings(1, pruner="none"), SUBSET)
    study = load(tunable)
    for _ in range(2):  # three trials that learn, so the median is high
        study.enqueue_trial({"optimizer.learning_rate": 0.01})
    tuning.tune(quiet(tunable), "tunable", TuneSettings(2, pruner="none"), SUBSET)
    study.enqueue_trial({"optimizer.learning_rate": 1.0e-7})  # cannot learn in 4 epochs
    outcome = tuning.tune(quiet(tunable), "tunable", TuneSettings(1, pruner="median"), SUBSET)
    study = load(tunable)
    last = study.trials[-1]
    assert last.state == optuna.trial.TrialState.PRUNED
    assert outcome.pruned == 1 and outcome.epochs_spent < 4 * 4
    client, trials = mlflow_runs(tunable, "trial")
    (pruned,) = [r for r in trials if r.data.tags["harness.trial"] == str(last.number)]
    assert pruned.info.status == "KILLED"
    assert pruned.data.tags["harness.trial_state"] == "PRUNED"
    assert pruned.data.tags["harness.reason"].startswith("pruned at epoch")


def test_best_trial_becomes_an_entry_that_runs(tunable):
    write_entry(tunable, "tunable", TUNABLE.replace("learning_rate: 0.01", "learning_rate: 1.0e-7"))  # cannot learn
    tuning.tune(quiet(tunable), "tunable", TuneSettings(1, pruner="none"), SUBSET)  # trial 0: the entry's own 1e-7
    load(tunable).enqueue_trial({"optimizer.learning_rate": 0.01})
    tuning.tune(quiet(tunable), "tunable", TuneSettings(1, pruner="none"), SUBSET)  # trial 1: learns
    result = run_cli(["save-best", "tunable", "tunable_best", "--set", "data.subset=300"], tunable)
    assert result.returncode == 0, result.stderr
    study = load(tunable)
    registry = Registry(tunable)
    entry = registry.entry("tunable_best")
    assert entry.parent == "tunable"
    assert study.study_name in entry.description and f"{study.best_value:.4f}" in entry.description
    spec = registry.resolve("tunable_best").spec
    assert spec.optimizer.learning_rate == pytest.approx(study.best_params["optimizer.learning_rate"])
    again = run_cli(["save-best", "tunable", "tunable_best", "--set", "data.subset=300"], tunable)
    assert again.returncode == 2 and "exists" in again.stderr
    assert study.best_trial.number == 1
    shown = run_cli(["show", "tunable_best", "--diff"], tunable, env={"COLUMNS": "200"})
    assert shown.returncode == 0
    (row,) = [line.split() for line in shown.stdout.splitlines() if line.strip().startswith("optimizer.")]
    assert row[:2] == ["optimizer.learning_rate", "1e-07"] and float(row[2]) == pytest.approx(0.01)
    ran = run_cli(["run-ablation", "tunable_best", "--epochs", "1", "--set", "data.subset=300"], tunable)
    assert ran.returncode == 0, ran.stderr


def test_best_values_inside_lists_write_the_whole_list(project):
    tree = {"model": {"dense": [{"units": 128, "l2": 0.005}, {"units": 64, "l2": None}]}}
    nested = best_entry.nest_values({"model.dense.1.units": 32, "optimizer.learning_rate": 0.002}, tree)
    assert nested == {
        "optimizer": {"learning_rate": 0.002},
        "model": {"dense": [{"units": 128, "l2": 0.005}, {"units": 32, "l2": None}]},
    }


def _two_workers(project, extra, trials=2):
    command = [
        sys.executable,
        "-m",
        "harness",
        "tune",
        "tunable",
        "--trials",
        str(trials),
        "--pruner",
        "none",
        "--set",
        "data.subset=300",
        *extra,
    ]
    workers = [
        subprocess.Popen(command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=600) for w in workers]
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err
        assert "database is locked" not in out + err
    return outputs


def test_two_workers_share_the_local_journal_study(tunable):
    _two_workers(tunable, [])
    _assert_one_study_of_four_trials(tunable, None)


def test_two_workers_share_a_postgresql_study(tunable, postgres_url):
    _two_workers(tunable, ["--storage", postgres_url])
    _assert_one_study_of_four_trials(tunable, postgres_url)


def _assert_one_study_of_four_trials(project, storage):
    study = load(project, storage)
    assert len(study.trials) == 4
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    _, trials = mlflow_runs(project, "trial")
    assert sorted(int(r.data.tags["harness.trial"]) for r in trials) == [0, 1, 2, 3]
    _, studies = mlflow_runs(project, "study")
    assert len(studies) == 1
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {studies[0].info.run_id}
