"""Final-model selection, the reading half: the best entry by a validation metric (mean over
seeds) among runs of one set of settings, and the seed run whose model is taken; the tables
the final run shows. Testing and registering the pick is runs.final's (it loads Keras)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import pandas as pd

from harness.context import Context
from harness.entries import settings as run_settings
from harness.entries.registry import Registry
from harness.errors import HarnessError
from harness.paths import slug
from harness.results.compare import Scope, check_settings, experiment_for, history_order
from harness.results.evidence import Evidence, RunIndex
from harness.results.steps import higher_is_better
from harness.results.tables import mean_over_seeds
from harness.tracking.protocol import RunStore

ALIAS = "champion"  # a pick at the entries' own settings, whole data, CHAMPION_SEEDS+ seeds each
CANDIDATE = "candidate"  # any other pick: a smoke study, a subset, fewer seeds
CHAMPION_SEEDS = 3  # fewer seeds than this decide too little to crown a model


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
    """The entry selected on validation, its evidence, the seed run whose model is taken, and
    every candidate's figure (entry, mean, std, n)."""

    name: str
    evidence: Evidence
    source_run_id: str
    candidates: pd.DataFrame
    settings: str  # the settings label of the runs it was picked among


def pick(ctx: Context, scope: Scope, names: Optional[Sequence[str]] = None) -> Pick:
    """The best entry on validation. The candidates are the runs made with the entries as
    written, unless the scope names other settings: a smoke run (--epochs 2) is never picked
    over a full one unless asked for. Raises HarnessError when there is nothing to pick."""
    key = scope.key
    registry = Registry(ctx.root)
    order = history_order(registry, names, None)
    check_settings(registry, order, scope.settings)
    store = ctx.strict_reader
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
    candidates = pd.DataFrame(
        [{"entry": n, key: e.mean(key), "std": e.std(key), "n": e.n(key)} for n, e in evidence.items()]
    )
    return Pick(best_name, best, _best_member(store, best, key), candidates, label)


def in_words(picked: Pick, key: str) -> str:
    """The pick as one line: 'selected adam among 3 entries (settings: as written): ...'."""
    e, count = picked.evidence, len(picked.candidates)
    among = f"among {count} entries" if count != 1 else "the only entry with runs"
    return (
        f"selected {picked.name} {among} (settings: {picked.settings}): {key} "
        f"{mean_over_seeds(e.mean(key), e.std(key), e.n(key))}; model of run {picked.source_run_id}"
    )


def _best_member(store: RunStore, evidence: Evidence, key: str) -> str:
    """Of a group's seed runs, the one whose model is taken: the best on the metric."""
    runs = [store.get_run(run_id) for run_id in evidence.run_ids]
    better = max if higher_is_better(key) else min
    return better(runs, key=lambda r: r.data.metrics.get(key, float("nan"))).info.run_id
