"""The read-only store reader answers what MLflow's own client answers, on a real SQLite store
written through MLflow, and never writes to it."""

from __future__ import annotations

import math
import sqlite3

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from harness.tracking.reader import open_reader
from harness.tracking.store import Store


def _same(run) -> tuple:
    """A run as comparable values (NaN made comparable)."""
    metrics = {k: ("nan" if math.isnan(v) else v) for k, v in run.data.metrics.items()}
    info = run.info
    return (
        info.run_id,
        info.run_name,
        info.status,
        info.start_time,
        info.end_time,
        info.experiment_id,
        info.artifact_uri,
        dict(run.data.tags),
        dict(run.data.params),
        metrics,
    )


@pytest.fixture
def written(project, tmp_path):
    """A store with two experiments, finished, failed, running and deleted runs, a NaN metric,
    a metric logged over steps, a file and a folder artifact."""
    store = Store(project)
    client: MlflowClient = store.client
    first, second = store.experiment_id("digits"), store.experiment_id("digits (subset 240)")
    made = {}
    cases = [
        (first, "FINISHED", "adam"),
        (first, "FAILED", "adam"),
        (first, "FINISHED", "l2"),
        (second, "FINISHED", "adam"),
    ]
    for i, (experiment, status, entry) in enumerate(cases):
        tags = {"harness.entry": entry, "harness.kind": "run"}
        run = client.create_run(experiment, run_name=f"{entry} {i}", tags=tags)
        store.log(run.info.run_id, params={"training.seed": i}, metrics={"best_val_accuracy": 0.5 + i / 10})
        client.set_terminated(run.info.run_id, status)
        made[i] = run.info.run_id
    running = client.create_run(first, run_name="running", tags={"harness.entry": "adam"})
    client.log_batch(running.info.run_id, metrics=[Metric("val_loss", float("nan"), 0, 0)])
    for step, value in enumerate([2.0, 1.5, float("nan"), 1.0]):
        client.log_metric(made[0], "val_loss", value, step=step)
    deleted = client.create_run(first, run_name="deleted", tags={"harness.entry": "adam"})
    client.set_terminated(deleted.info.run_id, "FINISHED")
    client.delete_run(deleted.info.run_id)
    (tmp_path / "curves").mkdir()
    (tmp_path / "curves" / "a.txt").write_text("a")
    (tmp_path / "note.txt").write_text("note")
    client.log_artifact(made[0], str(tmp_path / "note.txt"))
    client.log_artifacts(made[0], str(tmp_path / "curves"), "curves")
    return store, made, (first, second)


FILTERS = [
    "",
    "attributes.status = 'FINISHED'",
    "attributes.status != 'FINISHED'",
    "tags.`harness.entry` = 'adam'",
    "attributes.status = 'FINISHED' and tags.`harness.entry` = 'adam' and tags.`harness.kind` = 'run'",
    "tags.`harness.entry` = 'nobody'",
]


@pytest.mark.parametrize("filter_string", FILTERS)
def test_runs_match_mlflow_search_runs(written, project, filter_string):
    store, _, (first, second) = written
    reader = open_reader(project, None)
    for experiments in ([first], [second], [first, second]):
        expected = [_same(r) for r in store.runs(experiments, filter_string)]
        assert [_same(r) for r in reader.runs(experiments, filter_string)] == expected
    assert [_same(r) for r in reader.runs([first], filter_string, max_results=1)] == [
        _same(r) for r in store.runs([first], filter_string, max_results=1)
    ]


def test_experiments_runs_history_and_artifacts_match_mlflow(written, project, tmp_path):
    store, made, (first, _) = written
    reader = open_reader(project, None)
    assert [(e.experiment_id, e.name) for e in reader.experiments()] == [
        (e.experiment_id, e.name) for e in store.experiments()
    ]
    assert reader.experiment_id("digits") == first and reader.experiment_id("cifar10") is None
    assert _same(reader.get_run(made[1])) == _same(store.client.get_run(made[1]))
    history = [(p.step, p.value, p.timestamp) for p in reader.get_metric_history(made[0], "val_loss")]
    expected = [(p.step, p.value, p.timestamp) for p in store.client.get_metric_history(made[0], "val_loss")]
    assert [(s, "nan" if math.isnan(v) else v, t) for s, v, t in history] == [
        (s, "nan" if math.isnan(v) else v, t) for s, v, t in expected
    ]
    assert reader.get_run(made[0]).data.metrics["val_loss"] == 1.0  # the latest step's value
    running = reader.runs([first], "attributes.status = 'RUNNING'")
    assert len(running) == 1 and math.isnan(running[0].data.metrics["val_loss"])
    note = reader.download_artifacts(made[0], "note.txt", str(tmp_path / "out"))
    assert open(note).read() == "note"
    folder = reader.download_artifacts(made[0], "curves", str(tmp_path / "out"))
    assert open(f"{folder}/a.txt").read() == "a"
    with pytest.raises(FileNotFoundError):
        reader.download_artifacts(made[0], "absent.png", str(tmp_path / "out"))
    with pytest.raises(ValueError, match="cannot read the filter"):
        reader.runs([first], "metrics.best_val_accuracy > 0.5")


def test_reading_writes_nothing_and_unknown_stores_are_left_to_mlflow(written, project, tmp_path):
    database = project / "mlruns" / "mlflow.db"
    with sqlite3.connect(database) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = database.read_bytes()
    reader = open_reader(project, None)
    experiment = reader.experiment_id("digits")
    reader.runs([experiment])
    reader.close()
    assert database.read_bytes() == before
    assert open_reader(project, "http://127.0.0.1:1") is None
    assert open_reader(tmp_path / "elsewhere", None) is None
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE runs (run_uuid TEXT)")
    assert open_reader(project, f"sqlite:///{other}") is None
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    assert open_reader(project, f"sqlite:///{tmp_path / 'junk.db'}") is None


def test_commands_that_only_read_never_turn_a_foreign_or_empty_file_into_a_store(project, harness_cli):
    database = project / "mlruns" / "mlflow.db"
    database.parent.mkdir()
    database.write_bytes(b"")
    for args in (["compare"], ["report"], ["select"]):
        result = harness_cli(args, project)
        assert result.returncode == 2 and "empty, no runs yet" in result.stderr, result.stderr
        assert database.read_bytes() == b"" and not database.with_name("mlflow.db-wal").exists()
    database.unlink()
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE foo (x INTEGER)")
    before = database.read_bytes()
    result = harness_cli(["compare"], project)
    assert result.returncode == 2 and "not an MLflow store" in result.stderr and str(database) in result.stderr
    assert database.read_bytes() == before


def test_a_damaged_store_is_one_line_naming_the_file(written, project, harness_cli):
    database = project / "mlruns" / "mlflow.db"
    with sqlite3.connect(database) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        (tags_page,) = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = 'tags'").fetchone()
    with open(database, "r+b") as out:
        out.seek((tags_page - 1) * page_size)
        out.write(b"\xff" * page_size)
    result = harness_cli(["compare", "--dataset", "digits"], project)
    assert result.returncode in (1, 2) and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert str(database) in result.stderr and "Traceback" not in result.stderr
