"""MLflow runs -> pandas: one row per entry with seed statistics, deltas and Welch's t-test.

The evidence for an entry on a dataset is its latest FINISHED run of kind `run` or `group`
(a group contributes its seed children). Leave-one-out variants carry kind `variant`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from . import tables
from .context import Context
from .diffs import diff_against_parent
from .entries import Registry
from .errors import HarnessError
from .stats import summarize, welch_p
from .tracking import TAG, Store, experiment_name

ALIASES = {"val_accuracy": "best_val_accuracy", "val_loss": "best_val_loss"}
CLAIM_FOR = {
    "best_val_accuracy": "val_accuracy",
    "final_val_accuracy": "val_accuracy",
    "best_val_loss": "val_loss",
    "final_val_loss": "val_loss",
    "train_accuracy": "train_accuracy",
}


@dataclass(frozen=True)
class Scope:
    """Which runs a table reads: those on one dataset (and subset), compared on one metric."""

    source: str = "digits"
    subset: Optional[int] = None
    metric: str = "best_val_accuracy"

    @property
    def key(self) -> str:
        return metric_key(self.metric)

    @property
    def experiment(self) -> str:
        return experiment_name(self.source, self.subset)


def metric_key(metric: str) -> str:
    return ALIASES.get(metric, metric)


def higher_is_better(metric: str) -> bool:
    return "loss" not in metric and "gap" not in metric and "seconds" not in metric


@dataclass
class Evidence:
    """The runs behind one row: their ids and each final metric's values (one per seed)."""

    name: str
    run_ids: list[str]
    kind: str
    values: dict[str, list[float]] = field(default_factory=dict)

    def n(self, metric: str) -> int:
        return len(self.values.get(metric, []))

    def mean(self, metric: str) -> Optional[float]:
        values = self.values.get(metric)
        return summarize(values).mean if values else None

    def std(self, metric: str) -> Optional[float]:
        values = self.values.get(metric)
        return summarize(values).std if values else None


def experiment_for(store: Store, source: str, subset: Optional[int]) -> str:
    label = experiment_name(source, subset)
    experiment_id = store.experiment_id(label, create=False)
    if experiment_id is None:
        known = ", ".join(e.name for e in store.experiments() if e.name != "Default") or "none"
        raise HarnessError(f"no runs on dataset {label!r} (datasets with runs: {known})")
    return experiment_id


def latest_evidence(store: Store, experiment_id: str, name: str, kinds=("run", "group")) -> Optional[Evidence]:
    """The latest finished run or group of an entry, with per-seed metric values."""
    runs = store.runs(
        [experiment_id],
        f"attributes.status = 'FINISHED' and tags.`{TAG}entry` = '{name}'",
        max_results=200,
    )
    runs = [r for r in runs if r.data.tags.get(f"{TAG}kind") in kinds and not r.data.tags.get(f"{TAG}variant")]
    if not runs:
        return None
    return evidence_of(store, experiment_id, runs[0], name)


def evidence_of(store: Store, experiment_id: str, run, label: str) -> Evidence:
    kind = run.data.tags.get(f"{TAG}kind", "run")
    if run.data.tags.get(f"{TAG}seeds"):  # a group: the evidence is its seed children
        children = store.runs(
            [experiment_id],
            f"attributes.status = 'FINISHED' and tags.`mlflow.parentRunId` = '{run.info.run_id}'",
            max_results=1000,
        )
        members = children or [run]
    else:
        members = [run]
    values: dict[str, list[float]] = {}
    for member in members:
        for key, value in member.data.metrics.items():
            values.setdefault(key, []).append(float(value))
    ids = [m.info.run_id for m in members]
    return Evidence(label, ids, kind, values)


def history_order(registry: Registry, names: Optional[Sequence[str]], chain: Optional[str], warn=None) -> list[str]:
    """The entries to show, in history order: a chain, the given names, or every readable
    entry depth-first from the roots (unreadable ones skipped with a warning)."""
    if chain:
        return registry.history(chain)
    if names:
        for name in names:
            registry.entry(name)
        return list(names)
    tree = registry.children(warn=warn or _warn_stderr)
    ordered: list[str] = []

    def walk(name):
        ordered.append(name)
        for child in tree.get(name, []):
            walk(child)

    for root_name in tree.get(None, []):
        walk(root_name)
    return ordered


def _warn_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def compare_table(
    ctx: Context,
    scope: Scope,
    names: Optional[Sequence[str]] = None,
    chain: Optional[str] = None,
) -> tuple[pd.DataFrame, dict[str, Evidence]]:
    """The history table: one row per entry with runs, in history order."""
    key, metric = scope.key, scope.metric
    registry = Registry(ctx.root)
    order = history_order(registry, names, chain)
    store = ctx.reading_store()
    experiment_id = experiment_for(store, scope.source, scope.subset)
    evidence = {name: latest_evidence(store, experiment_id, name) for name in order}
    if names or chain:
        missing = [n for n in order if evidence[n] is None]
        if len(missing) == len(order):
            raise HarnessError(f"no finished runs of {', '.join(order)} on {scope.experiment}")
    rows = []
    for name in order:
        found = evidence.get(name)
        if found is None:
            continue
        if key not in found.values:
            raise HarnessError(
                f"--metric {metric!r}: not a final metric of the runs (try best_val_accuracy, val_macro_f1)"
            )
        entry = registry.entry(name)
        parent = evidence.get(entry.parent) if entry.parent else None
        if entry.parent and entry.parent not in evidence:
            parent = latest_evidence(store, experiment_id, entry.parent)
        rows.append(_row(registry, name, found, parent, key))
    return pd.DataFrame(rows), evidence


def _row(registry: Registry, name: str, found: Evidence, parent: Optional[Evidence], key: str) -> dict[str, Any]:
    entry = registry.entry(name)
    diff = diff_against_parent(registry, registry.resolve(name))
    mean, std, n = found.mean(key), found.std(key), found.n(key)
    delta = p = None
    if parent is not None and key in parent.values:
        delta = mean - parent.mean(key)
        p = welch_p(found.values[key], parent.values[key])
    claim = getattr(entry.report, CLAIM_FOR.get(key, ""), None) if CLAIM_FOR.get(key) else None
    return {
        "entry": name,
        "change": diff.in_words(),
        key: mean,
        "std": std,
        "n": n,
        "delta": delta,
        "p_value": p,
        "val_loss": found.mean("final_val_loss"),
        "train_val_gap": found.mean("train_val_gap"),
        "epochs": found.mean("epochs_run"),
        "train_seconds": found.mean("train_seconds"),
        "params": found.mean("param_count"),
        "report": claim,
        "runs": ",".join(found.run_ids),
    }


# --------------------------------------------------------------------------- rendering


def render(table: pd.DataFrame, metric: str, fmt: str) -> str:
    """The table as text (terminal), markdown, csv or html."""
    return tables.render_frame(table, tables.comparison(table, metric_key(metric)), fmt)


@dataclass
class Compared:
    """What `harness compare` produced: the table, its rendering, and the chart's file."""

    table: pd.DataFrame
    text: str
    chart: Path


@dataclass(frozen=True)
class Output:
    """Where `harness compare` puts things: the table's format and file, the chart's file
    (default: mlruns/reports/compare-DATASET.png)."""

    fmt: str = "table"
    table_file: Optional[Path] = None
    chart_file: Optional[Path] = None


def compare_command(ctx: Context, scope: Scope, names=None, chain=None, output: Output = Output()) -> Compared:
    """The comparison as the command gives it: checked options, the table rendered (and
    written to output.table_file), the chart written."""
    from .paths import reports, slug

    tables.check_format(output.fmt)
    if names and chain:
        raise HarnessError("give entry names or --chain NAME, not both")
    if output.table_file is not None and not output.table_file.parent.is_dir():
        raise HarnessError(f"--out {output.table_file}: folder {output.table_file.parent} does not exist")
    table, _ = compare_table(ctx, scope, names, chain)
    if table.empty:
        raise HarnessError(f"no finished runs of these entries on {scope.source!r}")
    text = render(table, scope.metric, output.fmt)
    if output.table_file is not None:
        output.table_file.write_text(text)
    label = scope.source + (f"-subset{scope.subset}" if scope.subset else "")
    chart_path = output.chart_file or reports(ctx.root) / f"compare-{slug(label, 120, keep='-_')}.png"
    chart(table, scope.metric, chart_path)
    return Compared(table, text, chart_path)


def chart(table: pd.DataFrame, metric: str, path: Path) -> Path:
    """The history as a bar chart (mean +/- std), with the report's claims as markers."""
    from .plots import history_chart

    key = metric_key(metric)
    path.parent.mkdir(parents=True, exist_ok=True)
    claims = [None if tables.missing(v) else float(v) for v in table["report"]]
    return history_chart(list(table["entry"]), list(table[key]), list(table["std"]), claims, key, path)
