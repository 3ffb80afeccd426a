"""A signal at any moment of a trial, even before it has trained, never loses the study's
first trial (the entry's own values): the next `tune` runs the same values."""

from __future__ import annotations

import signal

import optuna
import pytest

from harness.tuning.storage import open_storage
from tests.helpers import TUNABLE, run_cli, start_cli, write_entry

pytestmark = pytest.mark.slow  # trains models or starts processes: the full tier only

TUNE = ["tune", "tunable", "--trials", "1", "--epochs", "1", "--pruner", "none", "--set", "data.subset=300"]


@pytest.mark.parametrize("marker", ["trials finished so far", "trial 1 of 1"])
def test_the_first_trial_survives_a_signal_before_it_trains(project, marker):
    write_entry(project, "tunable", TUNABLE)
    process = start_cli(TUNE, project)
    for line in process.stdout:  # the study is open and about to ask, or has just asked
        if marker in line:
            process.send_signal(signal.SIGINT)
            break
    assert process.wait(timeout=300) == 130
    again = run_cli(TUNE, project)
    assert again.returncode == 0, again.stdout + again.stderr
    storage, _ = open_storage(project, None)
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert [t.params["optimizer.learning_rate"] for t in complete] == [0.01]  # the entry's own value
