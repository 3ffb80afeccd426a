"""Like with like: runs carry their settings (the overrides apart from the entry), and
compare, select and report use runs of one set of settings, saying so; a 1-epoch smoke run
never stands beside a 2-epoch run unnoticed, nor is selected over it unless asked."""

from __future__ import annotations

import io
import shutil

import pandas as pd
import pytest
from mlflow import MlflowClient

from harness.entries import settings
from harness.results.compare import Scope, compare_table
from harness.runs.final import select
from harness.tracking.uri import default_tracking_uri
from tests.helpers import REPO, TINY_CHAIN, quiet, run_cli, write_entry

pytestmark = pytest.mark.slow  # trains models or starts processes: the full tier only

# The entries as written train 2 epochs: the "full" budget here; --epochs 1 is the smoke run.
PARENT = TINY_CHAIN["tiny"].replace("epochs: 3", "epochs: 2")
CHILD = TINY_CHAIN["tiny_adam"]
SUBSET = Scope("digits", 300)


@pytest.fixture(scope="module")
def budgets(tmp_path_factory):
    """tiny (parent) at 2 epochs; tiny_adam (child) at 2 epochs, then a 1-epoch smoke run."""
    project = tmp_path_factory.mktemp("budgets")
    shutil.copytree(REPO / "ablations", project / "ablations")
    write_entry(project, "tiny", PARENT)
    write_entry(project, "tiny_adam", CHILD)
    for args in (["tiny"], ["tiny_adam"], ["tiny_adam", "--epochs", "1"]):
        result = run_cli(["run-ablation", *args], project)
        assert result.returncode == 0, result.stderr
    return project


def test_runs_carry_their_settings_and_a_fingerprint_of_them(budgets):
    client = MlflowClient(default_tracking_uri(budgets))
    experiment = client.get_experiment_by_name("digits (subset 300)")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    assert [r.data.tags["harness.settings"] for r in runs] == ["as written", "as written", "training.epochs=1"]
    fingerprints = [r.data.tags["harness.settings_fingerprint"] for r in runs]
    assert fingerprints[0] == fingerprints[1] == settings.fingerprint([]) != fingerprints[2]
    assert fingerprints[2] == settings.fingerprint(
        ["training.epochs=1", "training.seed=4"]
    )  # the seed is not a setting


def test_compare_defaults_to_the_latest_runs_settings_and_says_what_is_missing(budgets):
    comparison = compare_table(quiet(budgets), SUBSET, chain="tiny_adam")  # latest: the smoke run
    frame = comparison.frame.set_index("entry")
    assert comparison.settings == "training.epochs=1"
    assert frame.loc["tiny", "status"] == "not run with these settings"
    assert frame.loc["tiny_adam", "epochs"] == 1
    assert frame.loc["tiny_adam", "delta_note"] == "parent not run"
    assert comparison.notes == ["tiny: no run with settings training.epochs=1; it has runs with: as written"]


def test_compare_with_the_settings_named_picks_the_matching_pair(budgets):
    full = compare_table(quiet(budgets), Scope("digits", 300, settings=()), chain="tiny_adam")
    frame = full.frame.set_index("entry")
    assert full.settings == "as written" and list(frame["epochs"]) == [2, 2] and list(frame["status"]) == ["", ""]
    assert frame.loc["tiny_adam", "delta"] == pytest.approx(
        frame.loc["tiny_adam", "best_val_accuracy"] - frame.loc["tiny", "best_val_accuracy"]
    )
    cli = run_cli(["compare", "--chain", "tiny_adam", "--subset", "300", "--epochs", "1", "--format", "csv"], budgets)
    back = pd.read_csv(io.StringIO(cli.stdout)).set_index("entry")
    assert back.loc["tiny", "status"] == "not run with these settings" and back.loc["tiny_adam", "epochs"] == 1
    assert "tiny: no run with settings training.epochs=1; it has runs with: as written" in cli.stderr


def test_any_settings_shows_the_latest_of_each_with_its_settings(budgets):
    result = run_cli(
        ["compare", "--chain", "tiny_adam", "--subset", "300", "--any-settings", "--format", "csv"], budgets
    )
    back = pd.read_csv(io.StringIO(result.stdout)).set_index("entry")
    assert back.loc["tiny", "settings"] == "as written" and back.loc["tiny_adam", "settings"] == "training.epochs=1"
    shown = run_cli(
        ["compare", "--chain", "tiny_adam", "--subset", "300", "--any-settings"], budgets, env={"COLUMNS": "200"}
    )
    assert "settings: any (the latest run of each entry)" in shown.stdout.splitlines()[0]


def test_select_never_picks_a_smoke_run_over_a_full_one_unless_asked(budgets):
    chosen = select(quiet(budgets), SUBSET, ["tiny", "tiny_adam"])
    client = MlflowClient(default_tracking_uri(budgets))
    source = client.get_run(chosen.source_run_id)
    assert source.data.tags["harness.settings"] == "as written" and source.data.metrics["epochs_run"] == 2
    smoke = select(quiet(budgets), Scope("digits", 300, settings=("training.epochs=1",)), ["tiny", "tiny_adam"])
    assert smoke.entry == "tiny_adam" and client.get_run(smoke.source_run_id).data.metrics["epochs_run"] == 1


def test_the_report_states_the_settings_it_compares(budgets, tmp_path):
    out = tmp_path / "report.md"
    result = run_cli(["report", "--subset", "300", "--epochs", "1", "--out", str(out)], budgets)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "digits (subset 300); settings: training.epochs=1; metric: best_val_accuracy" in text
