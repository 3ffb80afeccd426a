"""MLflow-native records and the two charts: the data a run used as MLflow dataset inputs
(training, validation; test for the final run), the entry file and commit in MLflow's source
tags, MLflow's system metrics on demand, and the waterfall and forest plots, whose numbers
are checked against the comparison tables and an independent Welch interval."""

from __future__ import annotations

import io
import json
import subprocess

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tests.helpers import TINY_CHAIN, run_cli, store_runs, write_entry

pytestmark = pytest.mark.slow  # trains models or starts processes: the full tier only


@pytest.fixture
def chain(project):
    write_entry(project, "tiny", TINY_CHAIN["tiny"])
    write_entry(project, "tiny_adam", TINY_CHAIN["tiny_adam"] + "report: {val_accuracy: 0.6}\n")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for command in (["git", "init", "-q"], ["git", "add", "ablations"], ["git", "commit", "-qm", "entries"]):
        subprocess.run(command, cwd=project, check=True, env={**__import__("os").environ, **env})
    return project


def runs(project):
    return store_runs(project, "digits (subset 300)")


def paired_seed_interval(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, float]:
    """(mean, low, high) of the paired seed differences a - b, the 95% Student t interval
    computed here without the harness, clipped to [-1, 1] as an accuracy change is."""
    diffs = np.array([a[seed] - b[seed] for seed in sorted(a) if seed in b])
    half = stats.t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / np.sqrt(len(diffs))
    return diffs.mean(), max(diffs.mean() - half, -1.0), min(diffs.mean() + half, 1.0)


def assert_interval_covers_seeds_and_more(change: float, low: float, high: float, expected) -> None:
    """The harness's interval: centred on the paired mean, at least as wide as the seeds'
    own interval (it adds the validation images' variation; 0.9 allows its Monte Carlo)."""
    mean, seeds_low, seeds_high = expected
    assert change == pytest.approx(mean)
    assert low <= change <= high
    assert high - low >= 0.9 * (seeds_high - seeds_low)


def test_runs_record_their_data_and_source_the_mlflow_way(chain):
    result = run_cli(["run-ablation", "tiny_adam", "--seeds", "2"], chain)
    assert result.returncode == 0, result.stderr
    client, found = runs(chain)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=chain, capture_output=True, text=True).stdout.strip()
    for run in found:
        tags = run.data.tags
        assert tags["mlflow.source.name"] == "ablations/tiny_adam.yaml" and tags["mlflow.source.type"] == "LOCAL"
        assert tags["mlflow.source.git.commit"] == head
        inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
        assert set(inputs) == {"training", "validation"}
        for split, dataset in inputs.items():
            profile = json.loads(dataset.profile)
            assert dataset.name == "digits" and dataset.digest.startswith(tags["harness.dataset_fingerprint"][:16])
            assert json.loads(dataset.source) == {"uri": "sklearn.datasets.load_digits"}
            assert profile["image_shape"] == [8, 8, 1] and profile["classes"] == 10
            assert profile["num_rows"] == {"training": 270, "validation": 30}[split]
    selected = run_cli(["select", "--subset", "300"], chain)
    assert selected.returncode == 0, selected.stderr
    client, found = runs(chain)
    (final,) = [r for r in found if r.data.tags["harness.kind"] == "final"]
    (test,) = final.inputs.dataset_inputs
    assert test.tags[0].value == "test" and json.loads(test.dataset.profile)["num_rows"] == 360


# Longer than the run: its samples are the ones taken at the start and the end, which a run
# asked for system metrics keeps however short it is.
LONG_INTERVAL = {"HARNESS_SYSTEM_METRICS_SECONDS": "60"}


def test_system_metrics_are_logged_when_asked(chain):
    entry = TINY_CHAIN["tiny"].replace("epochs: 3", "epochs: 8").replace("batch_size: 64", "batch_size: 8")
    write_entry(chain, "tiny", entry)
    plain = run_cli(["run-ablation", "tiny"], chain)
    sampled = run_cli(["run-ablation", "tiny", "--system-metrics"], chain, env=LONG_INTERVAL)
    assert plain.returncode == 0 and sampled.returncode == 0, sampled.stderr
    assert "already done" in sampled.stdout  # it records the run, it does not change what is trained
    forced = run_cli(["run-ablation", "tiny", "--system-metrics", "--force"], chain, env=LONG_INTERVAL)
    assert forced.returncode == 0, forced.stderr
    client, found = runs(chain)
    with_system = [r for r in found if any(k.startswith("system/") for k in r.data.metrics)]
    assert len(with_system) == 1 and "system/cpu_utilization_percentage" in with_system[0].data.metrics
    assert with_system[0].data.params["training.system_metrics"] == "True"


def test_the_waterfall_and_forest_numbers_are_the_tables_and_paired_by_seed(chain, tmp_path):
    for name in ("tiny", "tiny_adam"):
        assert run_cli(["run-ablation", name, "--seeds", "3"], chain).returncode == 0
    result = run_cli(
        ["compare", "--chain", "tiny_adam", "--subset", "300", "--format", "csv", "--chart", str(tmp_path / "w.png")],
        chain,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "w.png").read_bytes()[:4] == b"\x89PNG"
    table = pd.read_csv(io.StringIO(result.stdout)).set_index("entry")
    client, found = runs(chain)
    values = {
        entry: {
            int(r.data.tags["harness.seed"]): r.data.metrics["best_val_accuracy"]
            for r in found
            if r.data.tags["harness.kind"] == "seed" and r.data.tags["harness.entry"] == entry
        }
        for entry in ("tiny", "tiny_adam")
    }
    row = table.loc["tiny_adam"]
    expected = paired_seed_interval(values["tiny_adam"], values["tiny"])
    assert_interval_covers_seeds_and_more(row["delta"], row["delta_ci_low"], row["delta_ci_high"], expected)
    assert row["report_delta"] == pytest.approx(0.1)  # the report's claims: 0.6 against 0.5
    ablated = run_cli(
        ["ablate", "tiny_adam", "--leave-one-out", "--seeds", "3", "--chart", str(tmp_path / "f.png")], chain
    )
    assert ablated.returncode == 0, ablated.stderr
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    client, found = runs(chain)
    (record,) = [r for r in found if r.data.tags["harness.kind"] == "leave_one_out"]
    rows = pd.read_csv(client.download_artifacts(record.info.run_id, "leave_one_out.csv", str(tmp_path))).set_index(
        "step"
    )
    without = {
        int(r.data.tags["harness.seed"]): r.data.metrics["best_val_accuracy"]
        for r in found
        if r.data.tags.get("harness.variant") == "without tiny_adam" and r.data.tags["harness.kind"] == "seed"
    }
    contribution = rows.loc["tiny_adam"]
    expected = paired_seed_interval(values["tiny_adam"], without)
    assert_interval_covers_seeds_and_more(
        contribution["contribution"], contribution["ci_low"], contribution["ci_high"], expected
    )
