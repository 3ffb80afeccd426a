"""Final-model selection: the best entry by a validation metric (mean over seeds), its model
tested once on the test split, recorded as a `final` run and registered as `champion`."""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from . import settings as run_settings
from .compare import Scope, experiment_for, higher_is_better, history_order
from .context import Context
from .entries import Registry
from .errors import HarnessError
from .evidence import Evidence, RunIndex
from .links import run_link
from .names import TAG
from .paths import slug
from .run_inputs import log_test_input
from .tables import mean_over_seeds

ALIAS = "champion"


@dataclass
class Selection:
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


def registered_name(source: str) -> str:
    """The registered model of a dataset: harness-digits, harness-folder--data-cifar ..."""
    return "harness-" + slug(source, 200, keep="-_", fill="-").strip("-")


def per_class_table(report: dict) -> pd.DataFrame:
    """scikit-learn's classification report dict -> the report's table (section 4)."""
    rows = []
    for name, values in report.items():
        if name == "accuracy":
            continue
        label = name.title() if name in ("macro avg", "weighted avg") else name
        rows.append((label, values["precision"], values["recall"], values["f1-score"], int(values["support"])))
    table = pd.DataFrame(rows, columns=["", "Precision", "Recall", "F1-Score", "Support"]).set_index("")
    total = int(report["macro avg"]["support"])
    accuracy = pd.DataFrame([(None, None, report["accuracy"], total)], columns=table.columns, index=["Accuracy"])
    averages = table.loc[["Macro Avg", "Weighted Avg"]]
    return pd.concat([table.drop(index=["Macro Avg", "Weighted Avg"]), accuracy, averages])


def format_table(table: pd.DataFrame) -> str:
    def cell(value, integer=False):
        if value is None or (isinstance(value, float) and pd.isna(value)):
            return ""
        return str(int(value)) if integer else f"{value:.2f}"

    lines = [f"{'':<14}{'Precision':>10}{'Recall':>10}{'F1-Score':>10}{'Support':>10}"]
    for label, row in table.iterrows():
        lines.append(
            f"{label:<14}{cell(row['Precision']):>10}{cell(row['Recall']):>10}{cell(row['F1-Score']):>10}"
            f"{cell(row['Support'], True):>10}"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class Pick:
    """The entry selected on validation, its evidence, and the seed run whose model is taken."""

    name: str
    evidence: Evidence
    source_run_id: str


def select(ctx: Context, scope: Scope, names: Optional[Sequence[str]] = None) -> Selection:
    """Pick, test once, record, register. The candidates are the runs made with the entries
    as written, unless the scope names other settings: a smoke run (--epochs 2) is never
    picked over a full one unless asked for. Raises HarnessError when there is nothing to pick."""
    key = scope.key
    registry = Registry(ctx.root)
    order = history_order(registry, names, None)
    store = ctx.reading_store()
    index = RunIndex(store, experiment_for(store, scope.source, scope.subset))
    wanted = scope.settings if scope.settings is not None else ()
    fingerprint, label = run_settings.fingerprint(wanted), run_settings.label(wanted)
    pinned = dict(scope.pinned)
    evidence = {n: e for n in order if (e := index.pinned_or_latest(n, fingerprint, pinned)) is not None}
    if not evidence:
        others = sorted({s for n in order for s in index.other_settings(n, fingerprint)})
        hint = f"; runs exist with: {'; '.join(others)} (select among them with --set or --epochs)" if others else ""
        raise HarnessError(f"no finished runs to select from on {scope.experiment} with settings {label}{hint}")
    missing = [n for n, e in evidence.items() if key not in e.values]
    if missing:
        raise HarnessError(f"--metric {scope.metric!r}: not recorded for {', '.join(missing)}")
    better = max if higher_is_better(key) else min
    best_name = better(evidence, key=lambda n: evidence[n].mean(key))
    best = evidence[best_name]
    pick = Pick(best_name, best, _best_member(store, best, key))
    candidates = pd.DataFrame(
        [{"entry": n, key: e.mean(key), "std": e.std(key), "n": e.n(key)} for n, e in evidence.items()]
    )
    ctx.echo(
        f"selected {best_name} among {len(evidence)} entries (settings: {label}): {key} "
        f"{mean_over_seeds(best.mean(key), best.std(key), best.n(key))}; model of run {pick.source_run_id}"
    )
    return _test_and_register(ctx, scope, pick, candidates)


def _best_member(store, evidence: Evidence, key: str) -> str:
    """Of a group's seed runs, the one whose model is taken: the best on the metric."""
    runs = [store.client.get_run(run_id) for run_id in evidence.run_ids]
    better = max if higher_is_better(key) else min
    return better(runs, key=lambda r: r.data.metrics.get(key, float("nan"))).info.run_id


def _load_model(store, pick: Pick, folder: Path):
    """The picked run's model.keras, loaded in Keras's safe mode."""
    import keras

    from . import model as _model  # noqa: F401 - registers the harness's custom layers

    try:
        local = store.client.download_artifacts(pick.source_run_id, "model.keras", str(folder))
    except Exception as exc:  # noqa: BLE001 - missing artifact or unreachable store
        raise HarnessError(f"run {pick.source_run_id} of {pick.name} has no model.keras artifact ({exc})") from None
    try:
        return keras.saving.load_model(local, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras refuses unsafe or damaged files with several types
        raise HarnessError(
            f"run {pick.source_run_id} of {pick.name}: its model.keras cannot be loaded safely "
            f"({str(exc).splitlines()[0][:200]})"
        ) from None


def _test_and_register(ctx: Context, scope: Scope, pick: Pick, candidates: pd.DataFrame) -> Selection:
    from .quiet import load_keras

    load_keras()
    import keras
    import mlflow

    from . import data as data_module
    from .evaluate import evaluate
    from .plots import confusion_matrix

    store, key, name, evidence, source_run_id = (
        ctx.writable_store,
        scope.key,
        pick.name,
        pick.evidence,
        pick.source_run_id,
    )
    experiment_id = experiment_for(store, scope.source, scope.subset)
    source_run = store.client.get_run(source_run_id)
    with tempfile.TemporaryDirectory(prefix="harness-select-") as tmp:
        folder = Path(tmp)
        model = _load_model(store, pick, folder)
        test, class_names = data_module.load_test(scope.source)
        result = evaluate(model, test, class_names)
        table = per_class_table(result.report)
        tags = {
            f"{TAG}entry": name,
            f"{TAG}kind": "final",
            f"{TAG}source_run": source_run_id,
            f"{TAG}selected_by": f"{key} {mean_over_seeds(evidence.mean(key), evidence.std(key), evidence.n(key))}",
            f"{TAG}step": source_run.data.tags.get(f"{TAG}step", ""),
            f"{TAG}settings": source_run.data.tags.get(f"{TAG}settings", ""),
            f"{TAG}settings_fingerprint": source_run.data.tags.get(f"{TAG}settings_fingerprint", ""),
            f"{TAG}spec_fingerprint": source_run.data.tags.get(f"{TAG}spec_fingerprint", ""),
            f"{TAG}dataset_fingerprint": source_run.data.tags.get(f"{TAG}dataset_fingerprint", ""),
            f"{TAG}dataset": scope.source,
            **{k: v for k, v in source_run.data.tags.items() if k.startswith("mlflow.source.")},
        }
        model_name = registered_name(scope.source)
        with store.run(experiment_id, f"{name} selected, tested", tags) as run:
            run_id = run.info.run_id
            metrics = result.metrics("test")  # accuracy, loss, macro F1 and per-class F1 on the test split
            metrics[key] = evidence.mean(key)  # the validation figure it was selected by: ranks with the runs
            log_test_input(store.client, run_id, scope.source, test, class_names)
            store.log(
                run_id, params={"entry": name, "source_run": source_run_id, "selection_metric": key}, metrics=metrics
            )
            (folder / "classification_report.txt").write_text(format_table(table) + "\n")
            table.to_csv(folder / "per_class.csv")
            confusion_matrix(result.confusion, class_names, f"{name}: test", folder / "confusion_matrix.png")
            for artifact in ("classification_report.txt", "per_class.csv", "confusion_matrix.png"):
                store.log_artifact(run_id, folder / artifact)
            sample = test.x[:4]
            signature = mlflow.models.infer_signature(sample, model.predict(sample, verbose=0))
            quiet = contextlib.redirect_stderr(io.StringIO())  # MLflow prints "Successfully registered ..."
            with store.fluent(), mlflow.start_run(run_id=run_id, nested=False), quiet:
                info = mlflow.keras.log_model(
                    model,
                    name="model",
                    registered_model_name=model_name,
                    signature=signature,
                    pip_requirements=[f"keras=={keras.__version__}"],  # skips slow requirement inference
                )
            version = str(info.registered_model_version)
            store.client.set_registered_model_alias(model_name, ALIAS, version)
            store.client.set_tag(run_id, f"{TAG}registered", f"{model_name} v{version} @{ALIAS}")
    ctx.echo(
        f"test accuracy {result.accuracy:.4f}, loss {result.loss:.4f}; registered {model_name} version {version} "
        f"as @{ALIAS} (run {run_id})"
    )
    ctx.echo(format_table(table))
    ctx.echo(f"MLflow: {run_link(store.uri, experiment_id, run_id)}")
    return Selection(
        name,
        key,
        evidence.mean(key),
        evidence.std(key),
        evidence.n(key),
        source_run_id,
        run_id,
        model_name,
        version,
        result.accuracy,
        result.loss,
        table,
        candidates,
    )
