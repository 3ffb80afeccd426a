"""Verdicts through the real command line on digits: a history built so that one step helps
(Adam over a deliberately weak SGD), one changes nothing (a key Adam ignores), one cannot
act (early stopping whose patience outlasts the epochs), one is unclear at two seeds (a
lower learning rate), and three ordinary steps give the table enough spreads to lend each
step degrees of freedom (with Student's t on one, the two seeds of the clear step, 4 pp
apart, did not decide it). `harness study --seeds auto` decides the clear steps at two seeds and spends
more only on the unclear one, never past --max-seeds; the table keeps its intervals in
[-1, 1] and its Holm column at or above the raw p; ablate and the study run say the same."""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest
from mlflow import MlflowClient

from harness.tracking.uri import default_tracking_uri
from tests.helpers import run_cli, write_entry

pytestmark = pytest.mark.slow  # trains models or starts processes: the full tier only

HISTORY = {
    # An untrained-at-this-rate CNN predicts about one class: a tenth of the images, whatever its seed.
    "weak": "description: A deliberately weak SGD.\nmodel: {blocks: [{filters: 8, convs: 1}], padding: same}\n"
    "optimizer: {name: sgd, learning_rate: 1.0e-6}\ntraining: {epochs: 2, batch_size: 32, deterministic: true}\n",
    "adam": "extends: weak\ndescription: Adam.\noptimizer: {name: adam, learning_rate: 0.01}\n",
    "adam_noop": "extends: adam\ndescription: A momentum Adam ignores.\noptimizer: {momentum: 0.5}\n",
    # Three ordinary steps: with their spreads beside the others', the table has enough steps to
    # lend each one degrees of freedom (results.verdicts.table_priors needs four others).
    "adam_b16": "extends: adam_noop\ndescription: Smaller batches.\ntraining: {batch_size: 16}\n",
    "adam_f12": "extends: adam_b16\ndescription: More filters.\nmodel: {blocks: [{filters: 12, convs: 1}]}\n",
    "adam_b64": "extends: adam_f12\ndescription: Larger batches.\ntraining: {batch_size: 64}\n",
    "adam_es": "extends: adam_b64\ndescription: Early stopping that cannot fire in 2 epochs.\n"
    "training: {early_stopping: {patience: 5}}\n",
    # Five times slower than Adam's 0.01 at 2 epochs: worse, by how much the seeds disagree.
    "adam_slow": "extends: adam_es\ndescription: A lower learning rate.\noptimizer: {learning_rate: 0.002}\n",
}
MAX_SEEDS = 3


@pytest.fixture(scope="module")
def studied(tmp_path_factory):
    import shutil

    from tests.helpers import REPO

    project = tmp_path_factory.mktemp("verdicts")
    shutil.copytree(REPO / "ablations", project / "ablations")
    for name, text in HISTORY.items():
        write_entry(project, name, text)
    result = run_cli(["study", "adam_slow", "--seeds", "auto", "--max-seeds", str(MAX_SEEDS)], project, timeout=1800)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    return project, result.stdout


def test_each_step_gets_the_verdict_it_was_built_for(studied):
    project, _ = studied
    csv = run_cli(["compare", "--chain", "adam_slow", "--format", "csv"], project)
    assert csv.returncode == 0, csv.stderr
    table = pd.read_csv(io.StringIO(csv.stdout)).set_index("entry")
    assert table.loc["adam", "verdict"] == "helped"
    assert table.loc["adam_noop", "verdict"] == "no practical difference"
    assert table.loc["adam_es", "verdict"].startswith("cannot act at this budget (early stopping's patience 5 >= 2")
    measured = table.dropna(subset=["delta"])
    assert ((measured["delta_ci_low"] >= -1) & (measured["delta_ci_high"] <= 1)).all()
    tested = measured.dropna(subset=["p_holm"])
    assert len(tested) >= 2 and (tested["p_holm"] >= tested["p_value"]).all()
    shown = run_cli(["compare", "--chain", "adam_slow"], project, env={"COLUMNS": "80"}).stdout
    assert "p (Holm)" in shown and "Holm's method" in shown  # the correction named under the table
    assert max(len(line) for line in shown.splitlines()) <= 80


def test_seeds_auto_spends_seeds_only_where_the_answer_is_unclear(studied):
    project, output = studied
    client = MlflowClient(default_tracking_uri(project))
    experiment = client.get_experiment_by_name("digits")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    seeds: dict[str, set[str]] = {}
    for run in runs:
        if run.data.tags.get("harness.kind") == "seed" and run.info.status == "FINISHED":
            seeds.setdefault(run.data.tags["harness.entry"], set()).add(run.data.tags["harness.seed"])
    assert len(seeds["weak"]) == len(seeds["adam"]) == len(seeds["adam_noop"]) == 2  # decided at two seeds
    assert 2 < len(seeds["adam_slow"]) <= MAX_SEEDS  # unclear: more, never past the cap
    assert seeds["adam_es"] == seeds["adam_slow"]  # the unclear step's parent gets its seeds too (paired)
    assert all(len(s) <= MAX_SEEDS for s in seeds.values())
    assert re.search(r"--seeds auto: \d+ undecided, \d+ more cells", output)


def test_the_study_run_answers_first_and_logs_its_own_metrics(studied):
    project, _ = studied
    client = MlflowClient(default_tracking_uri(project))
    experiment = client.get_experiment_by_name("digits")
    (history,) = client.search_runs([experiment.experiment_id], "tags.`harness.kind` = 'history'")
    description = history.data.tags["mlflow.note.content"]
    assert description.startswith("# What each step of adam_slow did") and "helped (adam)" in description
    assert "| entry | verdict | change [95% interval] |" in description
    artifacts = {a.path for a in client.list_artifacts(history.info.run_id)}
    assert {"verdicts.md", "waterfall.png", "history.csv"} <= artifacts
    metrics = history.data.metrics
    assert metrics["steps_helped"] >= 1 and metrics["steps_no_difference"] >= 1 and metrics["steps_cannot_act"] == 1
    assert "best_val_accuracy" not in metrics and "test_accuracy" not in metrics  # not the pick's numbers
    assert "target_best_val_accuracy" in metrics


def test_run_ablation_auto_stops_where_the_validation_images_cannot_settle_the_step(tmp_path):
    """Half the filters, validated on 5% of digits (72 images; their part of the interval
    alone is some +/-3 pp): more seeds cannot settle a change under a point, so
    `run-ablation --seeds auto` stops at two and says why, naming the setting that would."""
    (tmp_path / "ablations").mkdir()
    for name, text in HISTORY.items():
        write_entry(tmp_path, name, text)
    half = "extends: adam\ndescription: Half the filters.\nmodel: {blocks: [{filters: 4, convs: 1}]}\n"
    write_entry(tmp_path, "adam_f4", half)
    small_val = ["--set", "data.val_fraction=0.05"]
    result = run_cli(["run-ablation", "adam_f4", "--seeds", "auto", "--max-seeds", "4", *small_val], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "adam_f4 against adam after 2 seeds: undecided (n=2)" in result.stdout
    said = r"adam_f4: more seeds cannot settle it: a change of [-+]\d+\.\d pp \(seeds' sd \d+\.\d pp; the validation"
    assert re.search(said, result.stdout), result.stdout[-2000:]
    assert "data.val_fraction" in result.stdout and "one more seed" not in result.stdout
