"""What a user sees of one study: a line per cell with a running total and no Keras bars,
labelled links at the end, a runs table saved as a view of its settings set, parent runs
whose start and end span their children, and a group run that summarizes a few metrics
instead of repeating every one."""

from __future__ import annotations

import json
import re

import optuna
import pytest
from mlflow import MlflowClient
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from harness.tracking.uri import default_tracking_uri
from tests.helpers import GEO_CHAIN, run_cli, write_entry

pytestmark = pytest.mark.slow  # trains models: the full tier only

REPEATS = {"final_val_accuracy", "final_val_loss", "train_accuracy", "train_loss", "best_value"}


@pytest.fixture(scope="module")
def studied(tmp_path_factory):
    """A project after `harness study geo_deep --seeds 0,1` on a subset: (project, stdout,
    client, experiment id, runs)."""
    project = tmp_path_factory.mktemp("views")
    (project / "ablations").mkdir()
    for name, text in GEO_CHAIN.items():
        write_entry(project, name, text)
    result = run_cli(["study", "geo_deep", "--seeds", "0,1"], project, env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    client = MlflowClient(default_tracking_uri(project))
    experiment = client.get_experiment_by_name("digits (subset 300)")
    found = client.search_runs([experiment.experiment_id], max_results=1000)
    return project, result.stdout, client, experiment.experiment_id, found


def _kind(run) -> str:
    return run.data.tags.get("harness.kind", "")


def test_progress_is_one_line_per_cell_without_keras_bars(studied):
    _, output, *_ = studied
    cells = [line for line in output.splitlines() if line.startswith("cell ")]
    assert len(cells) == 6
    assert all(re.search(r"cells: \d/6 done", line) for line in cells)
    assert "left for one worker" in cells[1]  # a time left once a cell has been timed
    assert "ms/step" not in output and "━" not in output and "training geo" not in output


def test_the_study_ends_with_labelled_links(studied):
    _, output, _, experiment_id, _ = studied
    last = output.strip().splitlines()[-4:]
    assert [line.split(": ", 1)[0] for line in last] == ["study run", "runs table", "report", "candidate"]
    assert "viewStateShareKey=harness-" in last[1] and f"/#/experiments/{experiment_id}/runs?" in last[1]
    assert "/#/models/harness-digits/versions/1" in last[3]
    assert not any(line.startswith("MLflow: ") for line in output.splitlines())


def test_the_runs_table_link_opens_a_saved_view_of_groups_and_singles_best_first(studied):
    _, output, client, experiment_id, found = studied
    key = re.search(r"viewStateShareKey=(\S+)", output).group(1)
    view = json.loads(client.get_experiment(experiment_id).tags[f"mlflow.sharedViewState.{key}"])
    state = json.loads(view["state"])
    assert state["orderByKey"] == "metrics.`best_val_accuracy`" and state["orderByAsc"] is False
    assert "metrics.`best_val_accuracy`" in state["selectedColumns"]
    shown = client.search_runs([experiment_id], state["searchFilter"])
    assert sorted(r.info.run_name for r in shown) == ["geo x2 seeds", "geo_deep x2 seeds", "geo_same x2 seeds"]


def test_parent_runs_span_their_children(studied):
    *_, found = studied
    by_id = {r.info.run_id: r for r in found}
    (history,) = [r for r in found if _kind(r) == "history"]
    groups = sorted((r for r in found if _kind(r) == "group"), key=lambda r: r.info.start_time)
    for group in groups:
        children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == group.info.run_id]
        assert len(children) == 2
        assert group.info.start_time <= min(c.info.start_time for c in children)
        assert group.info.end_time >= max(c.info.end_time for c in children)
        assert history.info.start_time <= group.info.start_time and group.info.end_time <= history.info.end_time
    for earlier, later in zip(groups, groups[1:]):  # one worker: a group starts once the one before has ended
        last_child = max(c.info.end_time for c in found if c.data.tags.get("mlflow.parentRunId") == earlier.info.run_id)
        assert later.info.start_time >= last_child
    assert all(by_id[r.data.tags["mlflow.parentRunId"]] for r in found if _kind(r) == "seed")


def test_a_group_logs_a_few_chosen_metrics_and_no_run_repeats_one(studied):
    *_, found = studied
    for run in found:
        assert not REPEATS & set(run.data.metrics), run.info.run_name
    for group in (r for r in found if _kind(r) == "group"):
        metrics = group.data.metrics
        assert len(metrics) <= 40
        assert {"best_val_accuracy", "best_val_accuracy_ci_low", "best_val_accuracy_ci_high"} <= set(metrics)
        assert not any(key.startswith(("val_f1_", "best_epoch_")) for key in metrics)


def test_the_queue_reads_right_in_optuna_dashboard(studied):
    """Maximized, its objective named, what it is said among its attributes; the final
    steps' value is the selected entry's mean, not a placeholder that tops the plot."""
    project = studied[0]
    journal = JournalStorage(JournalFileBackend(str(project / "mlruns" / "optuna" / "journal.log")))
    (summary,) = optuna.get_all_study_summaries(journal)
    study = optuna.load_study(study_name=summary.study_name, storage=journal)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert study.metric_names == ["best_val_accuracy"] and "work queue" in study.user_attrs["about"]
    final = [t for t in study.trials if t.user_attrs.get("final_steps")]
    cells = [t.value for t in study.trials if "cell" in t.user_attrs]
    assert len(final) == 1 and min(cells) <= final[0].value <= max(cells)
