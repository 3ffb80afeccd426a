"""One contract, two stores: every test here runs against the MLflow store (tracking.store.Store)
and against the sqlite3 reader (tracking.reader.StoreReader) over the same SQLite file written
through MLflow, as Optuna runs one suite over every storage. Then the reader's pinning: the
schema revisions it reads are exactly those with a test store under tests/fixtures/stores/,
and any other revision is left to MLflow or refused in one line, the file untouched."""

from __future__ import annotations

import gzip
import json
import math
import shutil
import sqlite3
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from harness.tracking.reader import SUPPORTED_REVISIONS, open_reader, schema_revision
from harness.tracking.store import Store
from harness.tracking.uri import default_tracking_uri
from tests.helpers import REPO

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "stores"
BASE = 1_000_000  # run start times (ms): fixed, so the newest-first order is known


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A project whose store MLflow wrote: two experiments and a deleted one; finished,
    failed, killed, running and deleted runs; a metric over steps with a NaN; a NaN latest
    metric; a file and a folder artifact. Returns (project, run ids by name, experiment ids)."""
    project = tmp_path_factory.mktemp("contract")
    (project / "ablations").mkdir()
    store = Store(project)
    client: MlflowClient = store.client
    first, second = store.ensure_experiment("digits"), store.ensure_experiment("digits (subset 240)")
    client.delete_experiment(store.ensure_experiment("deleted experiment"))
    store.ensure_view(first, "0123456789ab", "training.epochs=2")
    made = {}
    cases = [
        ("adam 0", first, "FINISHED", {"harness.entry": "adam", "harness.kind": "run"}),
        ("adam 1", first, "FAILED", {"harness.entry": "adam", "harness.kind": "run"}),
        ("l2 2", first, "FINISHED", {"harness.entry": "l2", "harness.kind": "group"}),
        ("adam 3", first, "KILLED", {"harness.entry": "adam", "harness.kind": "run"}),
        ("adam 4", second, "FINISHED", {"harness.entry": "adam", "harness.kind": "run"}),
    ]
    for i, (name, experiment, status, tags) in enumerate(cases):
        run = client.create_run(experiment, start_time=BASE + 1000 * i, run_name=name, tags=tags)
        store.log(run.info.run_id, params={"training.seed": i}, metrics={"best_val_accuracy": 0.5 + i / 10})
        client.set_terminated(run.info.run_id, status, end_time=BASE + 1000 * i + 500)
        made[name] = run.info.run_id
    for step, value in enumerate([2.0, 1.5, float("nan"), 1.0]):
        client.log_batch(made["adam 0"], metrics=[Metric("val_loss", value, 100 + step, step)])
    running = client.create_run(first, start_time=BASE + 9000, run_name="running", tags={"harness.entry": "adam"})
    client.log_batch(running.info.run_id, metrics=[Metric("val_loss", float("nan"), 5, 0)])
    made["running"] = running.info.run_id
    deleted = client.create_run(first, start_time=BASE + 9500, run_name="deleted", tags={"harness.entry": "adam"})
    client.set_terminated(deleted.info.run_id, "FINISHED")
    client.delete_run(deleted.info.run_id)
    made["deleted"] = deleted.info.run_id
    (project / "curves").mkdir()
    (project / "curves" / "a.txt").write_text("a")
    (project / "note.txt").write_text("note")
    client.log_artifact(made["adam 0"], str(project / "note.txt"))
    client.log_artifacts(made["adam 0"], str(project / "curves"), "curves")
    return project, made, {"digits": first, "subset": second}


@pytest.fixture(params=["mlflow", "sqlite3"])
def run_store(request, written):
    """The same store through each implementation of protocol.RunStore."""
    project, made, experiments = written
    if request.param == "mlflow":
        yield Store(project), made, experiments
    else:
        reader = open_reader(project, None, strict=True)
        assert reader is not None
        yield reader, made, experiments
        reader.close()


def _names(runs) -> list[str]:
    return [run.info.run_name for run in runs]


def test_experiments_are_the_active_ones_newest_first(run_store):
    store, _, experiments = run_store
    assert [e.name for e in store.experiments()] == ["digits (subset 240)", "digits", "Default"]
    assert store.experiment_id("digits") == experiments["digits"]
    assert store.experiment_id("deleted experiment") is not None  # deleted, still known by name
    assert store.experiment_id("cifar10") is None


def test_experiment_tags_hold_the_saved_views(run_store):
    store, _, experiments = run_store
    tags = store.experiment_tags(experiments["digits"])
    view = json.loads(tags["mlflow.sharedViewState.harness-0123456789ab"])
    assert view["name"] == "harness: training.epochs=2"
    state = json.loads(view["state"])
    assert "'0123456789ab'" in state["searchFilter"] and state["orderByKey"] == "metrics.`best_val_accuracy`"
    assert not any(k.startswith("mlflow.sharedViewState.") for k in store.experiment_tags(experiments["subset"]))


def test_a_saved_view_is_saved_once(written):
    project, _, experiments = written
    store = Store(project)
    before = store.experiment_tags(experiments["digits"])
    assert store.ensure_view(experiments["digits"], "0123456789ab", "other label") == "harness-0123456789ab"
    assert store.experiment_tags(experiments["digits"]) == before


QUERIES = [
    ({}, ["running", "adam 3", "l2 2", "adam 1", "adam 0"]),
    ({"status": "FINISHED"}, ["l2 2", "adam 0"]),
    ({"status": ("FAILED", "KILLED")}, ["adam 3", "adam 1"]),
    ({"status": "RUNNING"}, ["running"]),
    ({"tags": {"harness.entry": "adam"}}, ["running", "adam 3", "adam 1", "adam 0"]),
    ({"status": "FINISHED", "tags": {"harness.entry": "adam", "harness.kind": "run"}}, ["adam 0"]),
    ({"tags": {"harness.entry": "nobody"}}, []),
    ({"status": "FINISHED", "limit": 1}, ["l2 2"]),
]


@pytest.mark.parametrize(("query", "expected"), QUERIES, ids=[str(q) for q, _ in QUERIES])
def test_runs_by_status_and_tags_newest_first_deleted_ones_invisible(run_store, query, expected):
    store, _, experiments = run_store
    assert _names(store.runs(experiments["digits"], **query)) == expected


def test_a_run_carries_its_tags_params_and_latest_metrics_nan_included(run_store):
    store, made, experiments = run_store
    run = store.get_run(made["adam 0"])
    assert (run.info.run_name, run.info.status, run.info.experiment_id) == ("adam 0", "FINISHED", experiments["digits"])
    assert (run.info.start_time, run.info.end_time) == (BASE, BASE + 500)
    assert run.data.tags["harness.entry"] == "adam" and run.data.params["training.seed"] == "0"
    assert run.data.metrics["best_val_accuracy"] == 0.5 and run.data.metrics["val_loss"] == 1.0  # the last step's
    (running,) = store.runs(experiments["digits"], status="RUNNING")
    assert math.isnan(running.data.metrics["val_loss"])
    assert store.get_run(made["deleted"]).info.run_name == "deleted"  # by id, deleted runs too
    with pytest.raises(KeyError):
        store.get_run("0" * 32)


def test_a_metric_history_comes_by_step(run_store):
    store, made, _ = run_store
    points = store.metric_history(made["adam 0"], "val_loss")
    assert [p.step for p in points] == [0, 1, 2, 3]
    assert [p.value for p in points][:2] == [2.0, 1.5] and math.isnan(points[2].value) and points[3].value == 1.0
    assert store.metric_history(made["adam 0"], "absent") == []


def test_artifacts_download_as_files_and_folders(run_store, tmp_path):
    store, made, _ = run_store
    note = store.download_artifact(made["adam 0"], "note.txt", tmp_path)
    assert note.read_text() == "note"
    folder = store.download_artifact(made["adam 0"], "curves", tmp_path / "again")
    assert (folder / "a.txt").read_text() == "a"
    with pytest.raises(FileNotFoundError):
        store.download_artifact(made["adam 0"], "absent.png", tmp_path)


def test_both_stores_answer_every_query_alike(written):
    project, made, experiments = written
    mlflow_store, reader = Store(project), open_reader(project, None)

    def seen(run) -> tuple:
        metrics = {k: ("nan" if math.isnan(v) else v) for k, v in run.data.metrics.items()}
        i = run.info
        return (i.run_id, i.run_name, i.status, i.start_time, i.end_time, i.experiment_id, i.artifact_uri,
                dict(run.data.tags), dict(run.data.params), metrics)  # fmt: skip

    for experiment in experiments.values():
        for query, _ in QUERIES:
            assert [seen(r) for r in reader.runs(experiment, **query)] == [
                seen(r) for r in mlflow_store.runs(experiment, **query)
            ]
    assert seen(reader.get_run(made["adam 1"])) == seen(mlflow_store.get_run(made["adam 1"]))


def test_reading_writes_nothing(written):
    project, _, experiments = written
    database = project / "mlruns" / "mlflow.db"
    with sqlite3.connect(database) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = database.read_bytes()
    reader = open_reader(project, None, strict=True)
    reader.runs(experiments["digits"])
    reader.experiments()
    reader.close()
    assert database.read_bytes() == before


# --------------------------------------------------------------------------- the reader pinned


def _fixture_stores() -> list[Path]:
    return sorted(FIXTURES.glob("mlflow-*.db.gz"))


def _unpacked(fixture: Path, project: Path) -> Path:
    """A project whose store is the fixture's."""
    (project / "ablations").mkdir(parents=True, exist_ok=True)
    (project / "mlruns").mkdir(exist_ok=True)
    database = project / "mlruns" / "mlflow.db"
    database.write_bytes(gzip.decompress(fixture.read_bytes()))
    return database


def test_the_supported_revisions_are_exactly_those_with_a_test_store():
    assert _fixture_stores(), "no test store under tests/fixtures/stores"
    assert {p.name.removeprefix("mlflow-").removesuffix(".db.gz") for p in _fixture_stores()} == set(
        SUPPORTED_REVISIONS
    )


def test_the_installed_mlflow_writes_a_supported_revision(written):
    project, _, _ = written
    with sqlite3.connect(project / "mlruns" / "mlflow.db") as connection:
        assert schema_revision(connection) in SUPPORTED_REVISIONS


@pytest.mark.parametrize("fixture", _fixture_stores(), ids=lambda p: p.name)
def test_each_supported_revision_reads_as_mlflow_read_it(fixture, tmp_path):
    _unpacked(fixture, tmp_path)
    expected = json.loads(fixture.with_name(fixture.name.replace(".db.gz", ".json")).read_text())
    reader = open_reader(tmp_path, None, strict=True)
    assert [[e.experiment_id, e.name] for e in reader.experiments()] == expected["experiments"]
    runs = [r for e in reader.experiments() for r in reader.runs(e.experiment_id)]
    seen = [
        {
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "status": r.info.status,
            "start_time": r.info.start_time,
            "end_time": r.info.end_time,
            "experiment_id": r.info.experiment_id,
            "tags": {k: v for k, v in r.data.tags.items() if not k.startswith("mlflow.")},
            "params": r.data.params,
            "metrics": {k: ("nan" if math.isnan(v) else v) for k, v in r.data.metrics.items()},
        }
        for r in runs
    ]
    assert seen == expected["runs"]
    history = reader.metric_history(expected["history"]["run_id"], "val_loss")
    assert [[p.step, "nan" if math.isnan(p.value) else p.value, p.timestamp] for p in history] == expected["history"][
        "val_loss"
    ]


def test_another_revision_is_left_to_mlflow_or_refused_in_one_line_untouched(tmp_path, harness_cli):
    database = _unpacked(_fixture_stores()[0], tmp_path)
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    before = database.read_bytes()
    assert open_reader(tmp_path, None) is None  # not this reader's: MLflow's to read or refuse
    shutil.copytree(REPO / "ablations", tmp_path / "ablations", dirs_exist_ok=True)
    for args in (["compare"], ["report"], ["run-ablation", "baseline", "--epochs", "1"]):
        result = harness_cli(args, tmp_path)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "ffffffffffff" in result.stderr and str(database) in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert database.read_bytes() == before and not database.with_name("mlflow.db-wal").exists()


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
    for args in (["compare"], ["run-ablation", "baseline", "--epochs", "1"]):
        result = harness_cli(args, project)
        assert result.returncode == 2 and "not an MLflow store" in result.stderr and str(database) in result.stderr
        assert database.read_bytes() == before
    assert open_reader(project, "http://127.0.0.1:1") is None  # a server: MLflow reads it
    assert open_reader(project / "elsewhere", None) is None  # no file: nothing to read


def test_a_damaged_store_is_one_line_naming_the_file(written, tmp_path, harness_cli):
    project = tmp_path / "damaged"
    shutil.copytree(written[0], project)
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
    assert default_tracking_uri(project).startswith("sqlite:///")
