"""Seeds, comparison tables, leave-one-out, selection and the report, on a short chain of
tiny entries over digits with two seeds each, all read back from the real MLflow store."""

from __future__ import annotations

import io
import shutil
from collections import Counter

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from scipy.stats import t

from harness.entries.registry import Registry
from harness.results.compare import Scope, compare_table, render
from harness.results.report import build_report
from harness.runs import runner
from harness.runs.final import select
from harness.study.leave_one_out import leave_one_out
from harness.tracking.store import Store
from harness.tracking.uri import default_tracking_uri
from tests.helpers import REPO, TINY_CHAIN, quiet, run_cli, write_entry

pytestmark = pytest.mark.slow  # trains models or starts processes: the full tier only

SEEDS = [0, 1]
SUBSET = Scope("digits", 300)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    project = tmp_path_factory.mktemp("study")
    shutil.copytree(REPO / "ablations", project / "ablations")
    for name, text in TINY_CHAIN.items():
        write_entry(project, name, text)
    groups = {name: runner.run_ablation(quiet(project), name, seeds=SEEDS) for name in TINY_CHAIN}
    return project, groups


def seed_values(project, group_id, metric="best_val_accuracy"):
    client = MlflowClient(default_tracking_uri(project))
    group = client.get_run(group_id)
    children = client.search_runs([group.info.experiment_id], f"tags.`mlflow.parentRunId` = '{group_id}'")
    return [c.data.metrics[metric] for c in children], group, children


def test_seed_group_logs_its_mean_under_the_metrics_own_name_with_std_n_and_interval(study):
    project, groups = study
    values, group, children = seed_values(project, groups["tiny_adam"].run_id)
    assert len(children) == 2 and {c.data.tags["harness.kind"] for c in children} == {"seed"}
    assert {c.data.tags["harness.seed"] for c in children} == {"0", "1"}
    assert sorted(c.info.run_name for c in children) == ["tiny_adam seed 0", "tiny_adam seed 1"]
    assert group.info.run_name == "tiny_adam x2 seeds" and "harness.seed" not in group.data.tags
    assert group.data.tags["harness.kind"] == "group" and group.data.tags["harness.step"] == "02 tiny_adam"
    metrics = group.data.metrics
    assert metrics["best_val_accuracy"] == pytest.approx(np.mean(values))
    assert metrics["best_val_accuracy_std"] == pytest.approx(np.std(values, ddof=1))
    assert metrics["best_val_accuracy_n"] == 2
    half = t.ppf(0.975, 1) * np.std(values, ddof=1) / np.sqrt(2)
    assert metrics["best_val_accuracy_ci_low"] == pytest.approx(np.mean(values) - half)
    assert metrics["best_val_accuracy_ci_high"] == pytest.approx(np.mean(values) + half)
    assert len(metrics) <= 40 and "val_f1_3_std" not in metrics and "best_epoch_ci_low" not in metrics
    artifacts = {a.path for a in MlflowClient(default_tracking_uri(project)).list_artifacts(group.info.run_id)}
    assert "learning_curves.png" in artifacts  # the mean over seeds, with a band


def test_compare_measures_each_step_paired_by_seed_and_decides_it(study):
    project, groups = study
    table = compare_table(quiet(project), SUBSET, chain="tiny_wide").frame
    assert list(table["entry"]) == ["tiny", "tiny_adam", "tiny_wide"]
    adam, _, adam_runs = seed_values(project, groups["tiny_adam"].run_id)
    sgd, _, sgd_runs = seed_values(project, groups["tiny"].run_id)
    row = table.set_index("entry").loc["tiny_adam"]
    assert row["best_val_accuracy"] == pytest.approx(np.mean(adam))
    by_seed = lambda runs: {r.data.tags["harness.seed"]: r.data.metrics["best_val_accuracy"] for r in runs}  # noqa: E731
    a, b = by_seed(adam_runs), by_seed(sgd_runs)
    assert row["delta"] == pytest.approx(np.mean([a[s] - b[s] for s in a]))  # paired by seed
    assert row["n"] == 2 and row["covers"] == "seeds and validation images"
    assert -1 <= row["delta_ci_low"] <= row["delta"] <= row["delta_ci_high"] <= 1
    assert row["p_holm"] >= row["p_value"] > 0
    assert row["verdict"] in ("helped", "hurt", "no practical difference", "undecided (n=2)")
    assert "optimizer.name sgd -> adam" in row["change"]
    assert table.set_index("entry").loc["tiny"]["report"] == 0.5
    assert pd.isna(table.set_index("entry").loc["tiny"]["delta"])
    assert table.set_index("entry").loc["tiny"]["delta_note"] == "no parent"
    interval = table.set_index("entry").loc["tiny_adam"][["delta_ci_low", "delta_ci_high"]]
    assert interval.iloc[0] <= row["delta"] <= interval.iloc[1]


@pytest.mark.parametrize("fmt", ["table", "markdown", "csv", "html"])
def test_compare_renders_every_format(study, fmt):
    project, _ = study
    comparison = compare_table(quiet(project), SUBSET, chain="tiny_wide")
    text = render(comparison, SUBSET, fmt, width=200).text
    lines = text.strip().splitlines()
    if fmt == "csv":
        back = pd.read_csv(io.StringIO(text))
        assert list(back["entry"]) == ["tiny", "tiny_adam", "tiny_wide"]
        assert {"best_val_accuracy", "std", "n", "delta", "p_value", "p_holm", "verdict", "runs"} <= set(back.columns)
        assert set(back["compared_settings"]) == {"as written"} and set(back["dataset"]) == {"digits (subset 300)"}
    elif fmt == "markdown":
        assert lines[0].startswith("| entry (digits (subset 300); settings: as written; metric: best_val_accuracy) |")
        assert "| verdict | change [95% interval] | best_val_accuracy | p (Holm) |" in lines[0]
        assert "| report's claim |" in lines[0]
        assert set(lines[1]) <= set("|-") and lines[2 + 3] == "" and "Holm" in lines[-1]
    elif fmt == "html":
        assert text.startswith("<!doctype html>") and text.rstrip().endswith("</html>")
        assert text.count("<tr") == 1 + 3 and text.count("<th>") == 13 and "Holm" in text
        assert "<caption>digits (subset 300); settings: as written; metric: best_val_accuracy</caption>" in text
    else:
        assert lines[0] == "digits (subset 300); settings: as written; metric: best_val_accuracy"
        assert lines[2].split()[:3] == ["entry", "verdict", "change"]
        starts = [line.split()[0] for line in lines[4:] if line.split()]
        assert [w for w in starts if w.startswith("tiny")] == ["tiny", "tiny_adam", "tiny_wide"]
        assert "Holm" in text.split("tiny_wide")[-1]  # the correction named under the table
    assert [e in text for e in ("tiny", "tiny_adam", "tiny_wide")] == [True] * 3


def test_compare_cli_writes_the_table_and_the_chart(study, tmp_path):
    project, _ = study
    out = tmp_path / "history.md"
    chart = tmp_path / "history.png"
    result = run_cli(
        [
            "compare",
            "--chain",
            "tiny_wide",
            "--subset",
            "300",
            "--format",
            "markdown",
            "--out",
            str(out),
            "--chart",
            str(chart),
        ],
        project,
    )
    assert result.returncode == 0, result.stderr
    assert "| tiny_adam |" in out.read_text() and result.stdout == ""  # the table went to the file
    assert chart.read_bytes()[:4] == b"\x89PNG"
    assert "runs used" in result.stderr and f"wrote {out}" in result.stderr
    bad = run_cli(["compare", "--subset", "300", "--metric", "nonsense"], project)
    assert bad.returncode == 2 and "--metric" in bad.stderr


def test_compare_as_csv_on_stdout_is_a_csv_file(study, tmp_path):
    project, _ = study
    result = run_cli(["compare", "--chain", "tiny_wide", "--subset", "300", "--format", "csv"], project)
    assert result.returncode == 0, result.stderr
    back = pd.read_csv(io.StringIO(result.stdout))
    assert list(back["entry"]) == ["tiny", "tiny_adam", "tiny_wide"] and "runs used" in result.stderr


def test_the_terminal_table_fits_80_columns_and_says_why_cells_are_empty(project):
    write_entry(project, "one", "extends: baseline\ndescription: One seed.\n" + TINY_CHAIN["tiny"].split("\n", 1)[1])
    write_entry(project, "two", "extends: one\ndescription: Its child.\noptimizer: {name: adam, learning_rate: 0.01}\n")
    write_entry(
        project, "three", "extends: two\ndescription: Its grandchild.\nmodel: {blocks: [{filters: 8, convs: 1}]}\n"
    )
    for name in ("one", "three"):
        assert run_cli(["run-ablation", name], project).returncode == 0
    result = run_cli(["compare", "--chain", "three", "--subset", "300"], project, env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    rows = {
        line.split()[0]: line
        for line in lines
        if line.split() and line.split()[0] in ("baseline", "one", "two", "three")
    }
    assert "not run" in rows["baseline"] and "not run" in rows["two"]
    assert "(n=1)" in rows["one"] and "+/-" not in rows["one"]
    assert "parent not run" in rows["three"]
    csv = run_cli(["compare", "--chain", "three", "--subset", "300", "--format", "csv"], project)
    frame = pd.read_csv(io.StringIO(csv.stdout))
    assert list(frame["status"].fillna("")) == ["not run", "", "not run", ""]
    shown = run_cli(["compare", "--chain", "three", "--subset", "300", "--format", "markdown"], project).stdout
    table = [line for line in shown.splitlines() if line.startswith("|")]  # the footnote follows it
    header = [cell.strip() for cell in table[0].split("|")]
    epochs = [cells.split("|")[header.index("epochs")].strip() for cells in table[2:]]
    assert epochs == ["", "3", "", "3"]  # integers print as integers


def test_leave_one_out_reverts_each_step_and_reports_overwritten_ones(project):
    registry = Registry(project)
    variants = {v.step: v for v in leave_one_out(registry, "final", [])}
    assert variants["adam"].overrides == ["optimizer.learning_rate=0.01", 'optimizer.name="sgd"']
    assert variants["dropout"].runnable is False
    assert set(variants["dropout"].overwritten_by.values()) == {"final"}
    assert variants["augmentation"].overrides == ["model.augment=null"]
    without_adam = registry.resolve("final", variants["adam"].overrides).spec
    assert without_adam.optimizer.name == "sgd" and without_adam.loss.name == "focal"
    without_blocks = registry.resolve("final", variants["extra_blocks"].overrides).spec
    assert [b.filters for b in without_blocks.model.blocks] == [32]


def test_ablate_cli_runs_variants_and_shows_contributions(study):
    project, _ = study
    result = run_cli(["ablate", "tiny_wide", "--leave-one-out", "--seeds", "2"], project)
    assert result.returncode == 0, result.stderr
    assert "tiny_wide without tiny_adam" in result.stdout and "tiny_wide without its own step" in result.stdout
    client = MlflowClient(default_tracking_uri(project))
    experiment = client.get_experiment_by_name("digits (subset 300)")
    variants = client.search_runs([experiment.experiment_id], "tags.`harness.kind` = 'variant'")
    assert {r.data.tags["harness.variant"] for r in variants} == {"without tiny_adam", "without tiny_wide"}
    table = compare_table(quiet(project), SUBSET, chain="tiny_wide").frame
    assert list(table["status"]) == ["", "", ""]  # variants never stand in for the entry itself


def test_select_tests_once_registers_a_candidate_and_report_shows_it(study, tmp_path):
    """Two seeds on a subset: registered, described and tagged, but @candidate, not @champion."""
    project, groups = study
    selection = select(quiet(project), SUBSET, ["tiny", "tiny_adam", "tiny_wide"])
    table = compare_table(quiet(project), SUBSET, ["tiny", "tiny_adam", "tiny_wide"]).frame
    best = table.sort_values("best_val_accuracy", ascending=False).iloc[0]
    assert selection.entry == best["entry"]
    client = MlflowClient(default_tracking_uri(project))
    version = client.get_model_version_by_alias(selection.model_name, "candidate")
    assert version.run_id == selection.final_run_id
    assert version.tags["entry"] == selection.entry and version.tags["settings"] == "as written"
    assert version.tags["test_accuracy"] == f"{selection.test_accuracy:.4f}" and "(n=2)" in version.description
    assert not [a for a in client.get_registered_model(selection.model_name).aliases if a == "champion"]
    final = client.get_run(selection.final_run_id)
    assert final.data.tags["harness.kind"] == "final"
    assert final.data.tags["harness.source_run"] == selection.source_run_id
    assert final.data.metrics["test_accuracy"] == pytest.approx(selection.test_accuracy)
    assert list(selection.table.index[-3:]) == ["Accuracy", "Macro Avg", "Weighted Avg"]
    assert selection.table.loc["Macro Avg", "Support"] == 360
    with Store(project).fluent():
        champion = mlflow.keras.load_model(f"models:/{selection.model_name}@candidate")
    source_model = __import__("keras").saving.load_model(
        client.download_artifacts(selection.source_run_id, "model.keras", str(tmp_path)), safe_mode=True
    )
    for a, b in zip(champion.get_weights(), source_model.get_weights()):
        np.testing.assert_array_equal(a, b)

    out = tmp_path / "report.md"
    build_report(quiet(project), SUBSET, out, "md")
    text = out.read_text()
    assert "## History" in text and "| tiny_adam |" in text and "## Final model" in text
    assert selection.final_run_id in text and "Weighted Avg" in text
    images = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    kinds = Counter(image.split("_", 3)[-1] for image in images)
    assert kinds["history.png"] == 1 and kinds["learning_curves.png"] == 3 and kinds["confusion_matrix.png"] == 1
    for image in images:
        assert (out.parent / image).read_bytes()[:4] == b"\x89PNG"
    html = tmp_path / "report.html"
    build_report(quiet(project), SUBSET, html, "html")
    page = html.read_text()
    assert "<table" in page and page.count('src="data:image/png;base64,') == len(images) and 'src="report' not in page
    assert (
        f"#/experiments/{final.info.experiment_id}/runs/{selection.final_run_id}?workflowType=machine_learning" in page
    )
