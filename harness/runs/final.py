"""The final run: the entry picked on validation (results.selection) has its model tested
once on the test split, recorded as a run of kind `final` (test metrics, the per-class
table, the confusion matrix, the test data as an MLflow input) and registered in MLflow's
model registry as `harness-<dataset>` @champion."""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from harness.context import Context
from harness.entries.settings import AS_WRITTEN
from harness.errors import HarnessError
from harness.results.compare import Scope, experiment_for
from harness.results.selection import (
    ALIAS,
    CANDIDATE,
    CHAMPION_SEEDS,
    Pick,
    format_table,
    in_words,
    per_class_table,
    pick,
    registered_name,
)
from harness.results.tables import mean_over_seeds
from harness.tracking.names import Tag, run_link
from harness.tracking.run_inputs import log_test_input
from harness.tracking.store import Store


@dataclass
class Selection:
    """What `harness select` did: the pick, its validation figure, its final run, the model
    version it registered, and the test figures."""

    entry: str
    metric: str
    mean: float
    std: float
    n: int
    source_run_id: str
    final_run_id: str
    model_name: str
    model_version: str
    test_accuracy: float
    test_loss: float
    table: pd.DataFrame  # per-class precision / recall / F1 / support, as the report lays it out
    candidates: pd.DataFrame


@dataclass(frozen=True)
class Tested:
    """The picked model and what one pass over the test split gave."""

    model: Any
    evaluation: Any  # training.evaluate.Evaluation
    table: pd.DataFrame
    test: Any  # data.splits.Split
    class_names: list[str]


def select(
    ctx: Context, scope: Scope, names: Optional[Sequence[str]] = None, *, allow_small: bool = False
) -> Selection:
    """Pick on validation (results.selection.pick), then test once, record and register. The
    store is opened for writing before the pick is announced: one that cannot be written
    says so first. Only a pick at the entries' own settings, on the whole data, with at
    least CHAMPION_SEEDS seeds for every entry compared (or allow_small: fewer seeds) becomes
    @champion; any other registers as @candidate, its settings in the version's tags."""
    picked = pick(ctx, scope, names)  # reads only: a missing store is an error, not a new one
    store = ctx.writable_store
    ctx.echo(in_words(picked, scope.key))
    alias, why = _alias_for(scope, picked, allow_small)
    ctx.echo(f"registering as @{alias}: {why}")
    return test_and_register(ctx, store, scope, picked, alias=alias)


def _alias_for(scope: Scope, picked: Pick, allow_small: bool) -> tuple[str, str]:
    """@champion or @candidate, and why, in words."""
    fewest = int(picked.candidates["n"].min()) if not picked.candidates.empty else 0
    if picked.settings != AS_WRITTEN:
        return CANDIDATE, f"picked among runs made with {picked.settings}, not the entries as written"
    if scope.subset is not None:
        return CANDIDATE, f"picked on a subset of {scope.subset} images, not the whole data"
    if fewest < CHAMPION_SEEDS and not allow_small:
        return CANDIDATE, f"an entry compared has {fewest} seed(s), fewer than {CHAMPION_SEEDS} (--allow-small)"
    if fewest < CHAMPION_SEEDS:
        return ALIAS, f"--allow-small: an entry compared has only {fewest} seed(s)"
    return ALIAS, f"the entries as written, every one over {fewest}+ seeds"


def test_and_register(ctx: Context, store: Store, scope: Scope, picked: Pick, *, alias: str = ALIAS) -> Selection:
    """The picked run's model tested once, recorded as a `final` run in `store`, registered
    and pointed at by `alias` (the move said in one line)."""
    from harness.training.quiet import load_keras

    load_keras()
    experiment_id = experiment_for(store, scope.source, scope.subset)
    with tempfile.TemporaryDirectory(prefix="harness-select-") as tmp:
        folder = Path(tmp)
        tested = _test(store, picked, scope.source, folder)
        tags = _final_tags(store, scope, picked)
        with store.run(experiment_id, f"{picked.name} selected, tested", tags) as run:
            run_id = run.info.run_id
            _record(store, run_id, scope, picked, tested, folder)
            model_name, version = _register(store, run_id, scope, picked, tested)
            moved = _move_alias(store, model_name, alias, version, picked)
            store.log(run_id, tags={Tag.REGISTERED_AS: alias})
    ctx.echo(
        f"test accuracy {tested.evaluation.accuracy:.4f}, loss {tested.evaluation.loss:.4f}; registered "
        f"{model_name} version {version} (run {run_id})"
    )
    ctx.echo(moved)
    ctx.echo(format_table(tested.table))
    ctx.echo(f"final run: {run_link(store.uri, experiment_id, run_id)}")
    key, evidence = scope.key, picked.evidence
    return Selection(
        entry=picked.name,
        metric=key,
        mean=evidence.mean(key),
        std=evidence.std(key),
        n=evidence.n(key),
        source_run_id=picked.source_run_id,
        final_run_id=run_id,
        model_name=model_name,
        model_version=version,
        test_accuracy=tested.evaluation.accuracy,
        test_loss=tested.evaluation.loss,
        table=tested.table,
        candidates=picked.candidates,
    )


def _load_model(store: Store, picked: Pick, folder: Path):
    """The picked run's model.keras, loaded in Keras's safe mode."""
    import keras

    from harness.training import model as _model  # noqa: F401 - registers the harness's custom layers

    builder = store.get_run(picked.source_run_id).data.params.get("model.builder", "None")
    if builder != "None":  # its module registers the custom layers a builder's model may hold
        from harness.training import builders

        builders.load(store.root, builder, f"run {picked.source_run_id} of {picked.name}")
    try:
        local = store.download_artifact(picked.source_run_id, "model.keras", folder)
    except Exception as exc:  # noqa: BLE001 - missing artifact or unreachable store
        raise HarnessError(f"run {picked.source_run_id} of {picked.name} has no model.keras artifact ({exc})") from None
    try:
        return keras.saving.load_model(local, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras refuses unsafe or damaged files with several types
        raise HarnessError(
            f"run {picked.source_run_id} of {picked.name}: its model.keras cannot be loaded safely "
            f"({str(exc).splitlines()[0][:200]})"
        ) from None


def _test(store: Store, picked: Pick, source: str, folder: Path) -> Tested:
    """Load the model and evaluate it once on the test split."""
    from harness.data.sources import load_test
    from harness.training.evaluate import evaluate

    model = _load_model(store, picked, folder)
    test, class_names = load_test(source)
    evaluation = evaluate(model, test, class_names)
    return Tested(model, evaluation, per_class_table(evaluation.report), test, class_names)


def _final_tags(store: Store, scope: Scope, picked: Pick) -> dict[str, str]:
    """The final run's tags: what it is, what it was picked by, and its source run's identity."""
    source_tags = store.get_run(picked.source_run_id).data.tags
    key, evidence = scope.key, picked.evidence
    copied = (Tag.STEP, Tag.SETTINGS, Tag.SETTINGS_FINGERPRINT, Tag.SPEC_FINGERPRINT, Tag.DATASET_FINGERPRINT)
    return {
        Tag.ENTRY: picked.name,
        Tag.KIND: "final",
        Tag.SOURCE_RUN: picked.source_run_id,
        Tag.SELECTED_BY: f"{key} {mean_over_seeds(evidence.mean(key), evidence.std(key), evidence.n(key))}",
        **{tag: source_tags.get(tag, "") for tag in copied},
        Tag.DATASET: scope.source,
        **{k: v for k, v in source_tags.items() if k.startswith("mlflow.source.")},
    }


def _record(store: Store, run_id: str, scope: Scope, picked: Pick, tested: Tested, folder: Path) -> None:
    """Test metrics (and the validation figure it was picked by), the test input, the
    per-class table and the confusion matrix."""
    from harness.results.plots import confusion_matrix

    metrics = tested.evaluation.metrics("test")  # accuracy, loss, macro F1 and per-class F1 on the test split
    metrics[scope.key] = picked.evidence.mean(scope.key)  # ranks with the runs in MLflow's table
    log_test_input(store.client, run_id, scope.source, tested.test, tested.class_names)
    params = {"entry": picked.name, "source_run": picked.source_run_id, "selection_metric": scope.key}
    store.log(run_id, params=params, metrics=metrics)
    (folder / "classification_report.txt").write_text(format_table(tested.table) + "\n")
    tested.table.to_csv(folder / "per_class.csv")
    title = f"{picked.name}: test"
    confusion_matrix(tested.evaluation.confusion, tested.class_names, title, folder / "confusion_matrix.png")
    for artifact in ("classification_report.txt", "per_class.csv", "confusion_matrix.png"):
        store.log_artifact(run_id, folder / artifact)


def _register(store: Store, run_id: str, scope: Scope, picked: Pick, tested: Tested) -> tuple[str, str]:
    """Log the model to the final run and register it, the version described and tagged so
    that versions can be told apart: (name, version)."""
    import keras
    import mlflow

    model_name = registered_name(scope.source)
    sample = tested.test.x[:4]
    signature = mlflow.models.infer_signature(sample, tested.model.predict(sample, verbose=0))
    quiet = contextlib.redirect_stderr(io.StringIO())  # MLflow prints "Successfully registered ..."
    with store.fluent(), mlflow.start_run(run_id=run_id, nested=False), quiet:
        info = mlflow.keras.log_model(
            tested.model,
            name="model",
            registered_model_name=model_name,
            signature=signature,
            pip_requirements=[f"keras=={keras.__version__}"],  # skips slow requirement inference
        )
    version = str(info.registered_model_version)
    key, e = scope.key, picked.evidence
    change = mean_over_seeds(e.mean(key), e.std(key), e.n(key))
    tags = {
        "entry": picked.name,
        "settings": picked.settings,
        "dataset": scope.experiment,
        "dataset_fingerprint": e.members[0].dataset_fingerprint if e.members else "",
        f"validation {key}": change,
        "test_accuracy": f"{tested.evaluation.accuracy:.4f}",
        "source_run": picked.source_run_id,
        "final_run": run_id,
    }
    for name, value in tags.items():
        store.client.set_model_version_tag(model_name, version, name, value)
    description = (
        f"{picked.name} ({picked.settings}) on {scope.experiment}: validation {key} {change}, "
        f"test accuracy {tested.evaluation.accuracy:.4f}; trained in run {picked.source_run_id}, "
        f"tested in run {run_id}."
    )
    store.client.update_model_version(model_name, version, description=description)
    store.client.set_tag(run_id, Tag.REGISTERED, f"{model_name} version {version}")
    return model_name, version


def _move_alias(store: Store, model_name: str, alias: str, version: str, picked: Pick) -> str:
    """Point `alias` at the new version; the move in one line, with who held it before."""
    import mlflow

    try:
        before = store.client.get_model_version_by_alias(model_name, alias)
    except mlflow.exceptions.MlflowException:
        before = None
    store.client.set_registered_model_alias(model_name, alias, version)
    now = f"v{version} ({picked.name}, {picked.settings})"
    if before is None:
        return f"@{alias}: {now}"
    was = f"v{before.version} ({before.tags.get('entry', '?')}, {before.tags.get('settings', '?')})"
    return f"@{alias}: {was} -> {now}"
