"""Faults a long study meets: kill -9 and resume, SIGTERM, Ctrl-C in a study, killed tune
workers, two writers on one store."""

from __future__ import annotations

import signal

import numpy as np
import optuna
import pytest

from harness.tuning import best_entry
from tests.helpers import SLOW, run_cli, start_cli, store_runs, wait_for, write_entry

pytestmark = pytest.mark.slow  # trains models or starts processes: the full tier only


def start(project, *args):
    return start_cli(args, project)


def runs_of(project, experiment="digits"):
    return store_runs(project, experiment)


def test_kill_9_then_rerun_resumes_with_every_epoch_logged_once(project):
    write_entry(project, "slow", SLOW)
    process = start(project, "run-ablation", "slow")
    wait_for(process, "epoch 3/8")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    client, (run,) = runs_of(project)
    assert run.info.status == "RUNNING"  # nothing could end it...

    result = run_cli(["run-ablation", "slow"], project)  # ...until the next command opens the store
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"marked run {run.info.run_id} FAILED" in result.stdout
    assert "resuming slow" in result.stdout
    client, runs = runs_of(project)
    assert len(runs) == 1, "the re-run continued the killed run instead of starting another"
    resumed = runs[0]
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    assert "harness.reason" not in resumed.data.tags  # the "process died" of the first attempt is gone
    for key in ("loss", "val_accuracy", "epoch_seconds"):
        steps = sorted(p.step for p in client.get_metric_history(run.info.run_id, key))
        assert steps == list(range(1, 9)), (key, steps)
    assert resumed.data.metrics["epochs_run"] == 8


def test_sigterm_ends_the_run_killed(project):
    write_entry(project, "slow", SLOW)
    process = start(project, "run-ablation", "slow")
    wait_for(process, "epoch 1/8")
    process.send_signal(signal.SIGTERM)
    rest = process.communicate(timeout=60)[0]
    assert process.returncode == 143, rest
    _, (run,) = runs_of(project)
    assert run.info.status == "KILLED"
    assert "SIGTERM" in run.data.tags["harness.reason"]


def test_ctrl_c_in_a_study_keeps_it_intact(project):
    write_entry(project, "slow", SLOW)
    process = start(project, "tune", "slow", "--trials", "3", "--pruner", "none")
    wait_for(process, "epoch 2/8")
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)
    assert process.returncode == 130
    study, _ = best_entry.load_study(project, "slow", [], None)
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.RUNNING not in states
    _, runs = runs_of(project)
    assert "RUNNING" not in {r.info.status for r in runs}
    result = run_cli(["tune", "slow", "--trials", "1", "--pruner", "none", "--epochs", "2"], project)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_killed_tune_worker_is_failed_retried_and_the_study_completes(project):
    write_entry(project, "slow", SLOW)
    process = start(project, "tune", "slow", "--trials", "2", "--pruner", "none")
    wait_for(process, "epoch 2/8")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    study, _ = best_entry.load_study(project, "slow", [], None)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.RUNNING]

    result = run_cli(["tune", "slow", "--trials", "2", "--pruner", "none"], project)
    assert result.returncode == 0, result.stdout + result.stderr
    study, _ = best_entry.load_study(project, "slow", [], None)
    states = [t.state for t in study.trials]
    assert states[0] == optuna.trial.TrialState.FAIL
    assert states.count(optuna.trial.TrialState.COMPLETE) == 2
    retry = study.trials[1]
    assert retry.user_attrs.get("retry_of") == 0 and retry.params == study.trials[0].params
    client, runs = runs_of(project)
    trials = [r for r in runs if r.data.tags.get("harness.kind") == "trial"]
    assert sorted(r.info.status for r in trials) == ["FAILED", "FINISHED", "FINISHED"]


def test_two_run_ablations_write_one_store_at_once(project):
    write_entry(project, "slow", SLOW)
    args = ["run-ablation", "slow", "--epochs", "3"]
    first, second = start(project, *args, "--set", "training.seed=1"), start(project, *args, "--set", "training.seed=2")
    outputs = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    assert all("database is locked" not in out for out in outputs)
    client, runs = runs_of(project)
    assert sorted(r.data.tags["harness.seed"] for r in runs) == ["1", "2"]
    assert {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        assert sorted(p.step for p in client.get_metric_history(run.info.run_id, "loss")) == [1, 2, 3]


# Deterministic kernels, a scheduler and early stopping whose counters matter: min_delta 10
# means only the first epoch is an improvement, so the schedule and the stop are fixed by
# the counters alone: the LR halves every second epoch from epoch 3, training stops at epoch 5.
COUNTED = """\
extends: baseline
description: Counters that a resume must carry over.
model:
  blocks: [{filters: 8, convs: 1, dropout: 0.2}]
  padding: same
  batch_norm: true
  augment: {translate: 0.1, flip: horizontal}
optimizer: {name: adam, learning_rate: 0.01}
training:
  epochs: 12
  batch_size: 8
  deterministic: DETERMINISTIC
  lr_schedule: {monitor: val_loss, factor: 0.5, patience: 2, min_delta: 10.0}
  early_stopping: {monitor: val_loss, mode: min, patience: 4, min_delta: 10.0, restore_best_weights: true}
"""
EXPECTED_LR = [0.01, 0.01, 0.005, 0.005, 0.0025]


def _series(client, run_id, key):
    return [p.value for p in sorted(client.get_metric_history(run_id, key), key=lambda p: p.step)]


def _kill_after(project, epoch, *args):
    process = start(project, "run-ablation", "counted", *args)
    wait_for(process, f"epoch {epoch}/")  # printed once epoch `epoch` is logged and backed up
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def test_a_deterministic_run_killed_and_resumed_logs_what_it_would_have(project):
    write_entry(project, "counted", COUNTED.replace("DETERMINISTIC", "true"))
    _kill_after(project, 3)
    resumed = run_cli(["run-ablation", "counted"], project)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "(from epoch 4)" in resumed.stdout
    uninterrupted = run_cli(["run-ablation", "counted", "--force"], project)
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    client, runs = runs_of(project)
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    killed, clean = sorted(runs, key=lambda r: r.info.start_time)
    for key in ("val_loss", "loss", "val_accuracy"):
        a, b = _series(client, killed.info.run_id, key), _series(client, clean.info.run_id, key)
        assert len(a) == len(b) == 5
        assert np.allclose(a, b, rtol=0, atol=1e-6), (key, a, b)
    assert _series(client, killed.info.run_id, "learning_rate") == pytest.approx(EXPECTED_LR)
    assert killed.data.metrics["best_val_loss"] == pytest.approx(clean.data.metrics["best_val_loss"], abs=1e-6)


def test_without_determinism_a_resume_keeps_the_schedule_and_the_early_stopping_counters(project):
    write_entry(project, "counted", COUNTED.replace("DETERMINISTIC", "false"))
    _kill_after(project, 2)  # the scheduler has waited one epoch, early stopping one
    resumed = run_cli(["run-ablation", "counted"], project)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    client, (run,) = runs_of(project)
    assert _series(client, run.info.run_id, "learning_rate") == pytest.approx(EXPECTED_LR)
    assert run.data.metrics["epochs_run"] == 5  # a resume that lost the counters would stop at 7


# Steps of a few hundred milliseconds: two signals sent together both land during one step.
HEAVY = """\
extends: baseline
description: Long training steps.
model: {blocks: [{filters: 32, convs: 2}], padding: same, input_size: 64}
training: {epochs: 30, batch_size: 256}
"""


def test_a_second_signal_exits_at_once_and_the_run_is_still_killed(project):
    write_entry(project, "heavy", HEAVY)
    process = start(project, "run-ablation", "heavy")
    wait_for(process, "epoch 1/30")
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGTERM)
    rest = process.communicate(timeout=60)[0]
    assert process.returncode == 130, rest
    assert "exited at once" in rest and "Traceback" not in rest
    _, (run,) = runs_of(project)
    assert run.info.status == "KILLED"
    assert run.data.tags["harness.reason"] == "interrupted (Ctrl-C), then a second signal: exited at once"


def test_an_interrupted_trial_is_failed_and_queued_again(project):
    write_entry(project, "slow", SLOW)
    process = start(project, "tune", "slow", "--trials", "3", "--pruner", "none")
    wait_for(process, "epoch 1/8")
    process.send_signal(signal.SIGTERM)
    rest = process.communicate(timeout=60)[0]
    assert process.returncode == 143, rest
    study, _ = best_entry.load_study(project, "slow", [], None)
    states = [t.state for t in study.trials]
    assert states[0] == optuna.trial.TrialState.FAIL and optuna.trial.TrialState.RUNNING not in states
    assert states[1] == optuna.trial.TrialState.WAITING
    assert (
        study.trials[1].params == study.trials[0].params
        or study.trials[1].system_attrs.get("fixed_params") == study.trials[0].params
    )
    client, runs = runs_of(project)
    assert {r.data.tags["harness.kind"]: r.info.status for r in runs} == {"study": "FINISHED", "trial": "KILLED"}


@pytest.mark.parametrize("after", [0.8, 2.0, 3.5])
def test_ctrl_c_while_starting_ends_the_command_and_leaves_nothing_open(project, after):
    """Early on (imports, data, TensorFlow's seconds of import with nothing open) a Ctrl-C
    ends the command at once or at the next safe point: exit 130, one line, no run RUNNING.
    How long it takes is bench/signals.py's figure (moment 'loading')."""
    import time

    process = start_cli(["run-ablation", "adam", "--epochs", "1", "--set", "data.subset=240"], project)
    time.sleep(after)
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 130, output
    assert "Traceback" not in output
    assert output.strip().splitlines()[-1] in (
        "interrupted",
        "interrupted (Ctrl-C) while starting: nothing was open, exiting at once",
    ), output
    _, runs = store_runs(project, "digits (subset 240)")
    assert "RUNNING" not in {r.info.status for r in runs}
