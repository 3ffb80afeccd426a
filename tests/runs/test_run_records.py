"""run-ablation records one MLflow run; everything is asserted by reading the store back."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient

from harness.entries.registry import Registry
from harness.errors import RunFailed
from harness.runs import runner
from harness.tracking.uri import default_tracking_uri
from tests.helpers import REPO, quiet

pytestmark = pytest.mark.slow  # trains models or starts processes: the full tier only

SHORT = ["data.subset=240", "training.epochs=3"]


def client_for(project: Path) -> MlflowClient:
    return MlflowClient(default_tracking_uri(project))


@pytest.fixture(scope="module")
def focal_run(tmp_path_factory):
    project = tmp_path_factory.mktemp("tracked")
    shutil.copytree(REPO / "ablations", project / "ablations")
    outcome = runner.run_ablation(quiet(project), "focal_loss", SHORT)
    return project, outcome


def test_run_is_finished_with_tags_params_and_metrics(focal_run):
    project, outcome = focal_run
    client = client_for(project)
    run = client.get_run(outcome.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "focal_loss"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "digits (subset 240)"
    tags = run.data.tags
    resolved = Registry(project).resolve("focal_loss", SHORT)
    assert tags["harness.entry"] == "focal_loss"
    assert tags["harness.parent"] == "class_weights"
    assert tags["harness.chain"].startswith("baseline > same_padding") and tags["harness.chain"].endswith("focal_loss")
    assert tags["harness.kind"] == "run"
    assert tags["harness.spec_fingerprint"] == resolved.fingerprint()
    assert len(tags["harness.dataset_fingerprint"]) == 16
    assert tags["harness.git_commit"]
    from harness.training.device import cpu_flags

    assert tags["harness.resolved.precision"] == ("mixed_bfloat16" if "amx_bf16" in cpu_flags() else "float32")
    written = {k: str(v) if v is not None else "None" for k, v in resolved.flat().items()}
    assert run.data.params == {**written, "resolved.pipeline": "tf_data"}
    assert tags["harness.resolved.pipeline"] == "tf_data"
    assert run.data.params["loss.name"] == "focal"
    metrics = run.data.metrics
    for key in (
        "best_val_accuracy",
        "val_macro_f1",
        "train_val_gap",
        "param_count",
        "images_per_second",
        "train_seconds",
        "epochs_run",
        "best_val_loss",
        "val_accuracy",  # the last epoch's: the final evaluation is not logged a second time
    ):
        assert key in metrics and math.isfinite(metrics[key]), key
    assert not {"final_val_accuracy", "final_val_loss", "train_accuracy", "train_loss"} & set(metrics)
    assert sum(key.startswith("val_f1_") for key in metrics) == 10
    assert metrics["param_count"] > 1_000_000
    assert metrics["epochs_run"] == 3


def test_per_epoch_metrics_are_logged_once_per_epoch(focal_run):
    project, outcome = focal_run
    client = client_for(project)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_seconds"):
        steps = [point.step for point in client.get_metric_history(outcome.run_id, key)]
        assert sorted(steps) == [1, 2, 3], key


def test_artifacts_hold_spec_diff_model_plots_and_report(focal_run):
    project, outcome = focal_run
    client = client_for(project)
    names = {a.path for a in client.list_artifacts(outcome.run_id)}
    assert {
        "spec.yaml",
        "diff.txt",
        "model.keras",
        "learning_curves.png",
        "confusion_matrix.png",
        "classification_report.txt",
        "model_summary.txt",
        "val_correct.npy",
    } <= names
    folder = Path(client.download_artifacts(outcome.run_id, ""))
    assert "loss.name: 'crossentropy' -> 'focal'" in (folder / "diff.txt").read_text()
    assert "Macro Avg" in (folder / "classification_report.txt").read_text().title()
    assert (folder / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    import keras

    model = keras.saving.load_model(folder / "model.keras", safe_mode=True)
    assert model.output_shape == (None, 10)


def test_identical_spec_and_data_is_not_trained_twice(project):
    outcome = runner.run_ablation(quiet(project), "baseline", SHORT)
    again = runner.run_ablation(quiet(project), "baseline", SHORT)
    assert again.skipped and again.run_id == outcome.run_id
    forced = runner.run_ablation(quiet(project), "baseline", SHORT, force=True)
    assert not forced.skipped and forced.run_id != outcome.run_id
    runs = client_for(project).search_runs([outcome.experiment_id])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}


def test_a_nan_loss_ends_the_run_failed_with_the_epoch(project):
    # exp activations at learning rate 10: the logits overflow in the first epoch
    overrides = ["data.subset=240", "training.epochs=3", "optimizer.learning_rate=10", "model.activation=exponential"]
    with pytest.raises(RunFailed, match=r"loss became NaN at epoch \d"):
        runner.run_ablation(quiet(project), "baseline", overrides)
    client = client_for(project)
    (run,) = client.search_runs([client.get_experiment_by_name("digits (subset 240)").experiment_id])
    assert run.info.status == "FAILED"
    assert re.fullmatch(r"loss became NaN at epoch \d", run.data.tags["harness.reason"])
