"""A study survives every interruption: Ctrl-C during its final steps, a worker killed right
after a cell, a one-seed study over several workers, storages it cannot share, a dry run
that must not create its storage."""

from __future__ import annotations

import os
import re
import signal
import sqlite3

import pytest
from mlflow import MlflowClient

from harness.tracking.uri import default_tracking_uri
from tests.helpers import GEO_CHAIN, run_cli, start_cli, wait_for, write_entry

pytestmark = pytest.mark.slow  # trains models or starts processes: the full tier only

STUDY = ["study", "geo_deep", "--seeds", "1"]


@pytest.fixture
def chain(project):
    for name, text in GEO_CHAIN.items():
        write_entry(project, name, text)
    return project


def runs(project):
    client = MlflowClient(default_tracking_uri(project))
    experiment = client.get_experiment_by_name("digits (subset 300)")
    return client, client.search_runs([experiment.experiment_id], max_results=1000)


def assert_complete(project) -> None:
    """The study run FINISHED, every group FINISHED, nothing RUNNING or SCHEDULED, a report,
    a champion whose final run FINISHED, and a history table with every step run."""
    client, found = runs(project)
    kinds = {}
    for run in found:
        kinds.setdefault(run.data.tags.get("harness.kind"), []).append(run)
    (history,) = kinds["history"]
    assert history.info.status == "FINISHED"
    assert {g.info.status for g in kinds["group"]} == {"FINISHED"}, [
        (g.info.run_name, g.info.status) for g in kinds["group"]
    ]
    assert not [r.info.run_name for r in found if r.info.status in ("RUNNING", "SCHEDULED")]
    assert (project / "mlruns" / "reports" / "study-geo_deep.html").is_file()
    champion = client.get_model_version_by_alias("harness-digits", "candidate")  # a subset: never @champion
    assert client.get_run(champion.run_id).info.status == "FINISHED"
    table = run_cli(["compare", "--chain", "geo_deep", "--subset", "300", "--format", "csv"], project)
    assert table.returncode == 0 and "not run" not in table.stdout, table.stdout


def test_ctrl_c_during_the_final_steps_is_finished_by_the_next_run(chain):
    process = start_cli(STUDY, chain)
    wait_for(process, "; metric: best_val_accuracy")  # the final steps' first table: they have begun
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=300) == 130
    history = [r for r in runs(chain)[1] if r.data.tags.get("harness.kind") == "history"]
    assert [r.info.status for r in history] == ["SCHEDULED"]  # interrupted: not finished, not lost
    again = run_cli(STUDY, chain)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    assert "study run: " in again.stdout and "report: " in again.stdout and "candidate: " in again.stdout
    assert not re.search(r"^cell ", again.stdout, re.M)  # every cell was done: only the final steps ran
    assert_complete(chain)
    third = run_cli(STUDY, chain)
    assert third.returncode == 0 and "did the final steps" in third.stdout


def test_a_one_seed_study_over_two_workers_trains(chain):
    result = run_cli([*STUDY, "--workers", "2"], chain, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "error" not in result.stdout.lower(), result.stdout[-3000:]
    assert result.stdout.count("best_val_accuracy") >= 3
    assert_complete(chain)


def test_a_worker_killed_right_after_a_cell_leaves_nothing_the_next_run_cannot_repair(chain):
    process = start_cli(STUDY, chain)
    wait_for(process, "cell geo seed 0: best_val_accuracy")  # told, its group not yet finished
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    again = run_cli(STUDY, chain, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    assert_complete(chain)


def test_storages_a_study_cannot_share_are_refused_and_a_dry_run_creates_nothing(chain, tmp_path):
    memory = run_cli([*STUDY, "--workers", "2", "--storage", "sqlite:///:memory:"], chain)
    assert memory.returncode == 2 and "in memory" in memory.stderr, memory.stderr
    assert not (chain / "mlruns" / "mlflow.db").exists()  # refused before the store was opened
    database = tmp_path / "optuna.db"
    dry = run_cli([*STUDY, "--dry-run", "--storage", f"sqlite:///{database}"], chain)
    assert dry.returncode == 0 and "(not started)" in dry.stdout, dry.stdout + dry.stderr
    assert not database.exists()
    journal = chain / "mlruns" / "optuna" / "journal.log"
    dry = run_cli([*STUDY, "--dry-run"], chain)
    assert dry.returncode == 0 and not journal.exists()
    store = chain / "mlruns" / "mlflow.db"
    assert run_cli(["run-ablation", "geo", "--epochs", "1"], chain).returncode == 0
    with sqlite3.connect(store) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    refused = run_cli([*STUDY, "--storage", f"sqlite:///{store}"], chain)
    assert refused.returncode == 2 and "harness's own files" in refused.stderr, refused.stderr
    copied = tmp_path / "copy.db"
    copied.write_bytes(store.read_bytes())
    refused = run_cli([*STUDY, "--storage", f"sqlite:///{copied}"], chain)
    assert refused.returncode == 2 and "is an MLflow store" in refused.stderr, refused.stderr
    with sqlite3.connect(store) as connection:
        assert {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} == tables


def test_a_step_whose_cells_all_fail_is_judged_on_the_study_alone(chain):
    """Its run from before the study is not borrowed for the verdicts, --seeds auto gives it
    no seed, and the leave-one-out row of a variant whose cells failed says why."""
    before = run_cli(["run-ablation", "geo_same"], chain)  # same settings as the study's
    assert before.returncode == 0, before.stderr
    write_entry(chain, "geo_same", GEO_CHAIN["geo_same"] + "training: {class_weight: {boost: {nope: 2.0}}}\n")
    write_entry(chain, "geo_deep", GEO_CHAIN["geo_deep"] + "training: {class_weight: null}\n")
    result = run_cli(["study", "geo_deep", "--seeds", "auto", "--max-seeds", "3", "--leave-one-out"], chain)
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "KeyError" not in output, output[-3000:]
    assert re.search(r"cell geo_same seed 0: failed: .*no class 'nope'", result.stdout), result.stdout[-3000:]
    history_row = next(line for line in result.stdout.splitlines() if line.split()[:1] == ["geo_same"])
    assert "not run" in history_row, history_row  # not the earlier run outside the study
    assert not re.search(r"^cell geo_same seed [2-9]", result.stdout, re.M)  # auto gave it no third seed
    said = " ".join(result.stdout.split())  # the table's notes wrap at 80 columns
    assert "geo_deep without its own step: --set: training.class_weight.boost: no class 'nope'" in said
    client, found = runs(chain)
    assert not [r.info.run_name for r in found if r.info.status in ("RUNNING", "SCHEDULED")]
