"""MLflow runs -> pandas: one row per entry with seed statistics, deltas and Welch's t-test.

The evidence for an entry on a dataset is its latest FINISHED run of kind `run` or `group`
(a group contributes its seed children). Leave-one-out variants carry kind `ablation`.
"""

from __future__ import annotations

import math
import sys
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd

from .ablation import Registry, diff_against_parent
from .errors import HarnessError
from .tracking import TAG, Store, experiment_name

ALIASES = {"val_accuracy": "best_val_accuracy", "val_loss": "best_val_loss"}
CLAIM_FOR = {"best_val_accuracy": "val_accuracy", "final_val_accuracy": "val_accuracy", "best_val_loss": "val_loss",
             "final_val_loss": "val_loss", "train_accuracy": "train_accuracy"}


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
        return statistics.fmean(values) if values else None

    def std(self, metric: str) -> Optional[float]:
        values = self.values.get(metric)
        if not values:
            return None
        return statistics.stdev(values) if len(values) > 1 else 0.0


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


def welch_p(a: Sequence[float], b: Sequence[float]) -> Optional[float]:
    """Welch's t-test p-value (scipy), where both sides have two or more values."""
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy.stats import ttest_ind

    result = ttest_ind(list(a), list(b), equal_var=False)
    p = float(result.pvalue)
    return None if math.isnan(p) else p


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
    root: Path,
    names: Optional[Sequence[str]] = None,
    chain: Optional[str] = None,
    source: str = "digits",
    subset: Optional[int] = None,
    metric: str = "best_val_accuracy",
    tracking_uri: Optional[str] = None,
) -> tuple[pd.DataFrame, dict[str, Evidence]]:
    """The history table: one row per entry with runs, in history order."""
    from .tracking import require_store

    key = metric_key(metric)
    registry = Registry(root)
    order = history_order(registry, names, chain)
    store = require_store(root, tracking_uri)
    experiment_id = experiment_for(store, source, subset)
    evidence = {name: latest_evidence(store, experiment_id, name) for name in order}
    if names or chain:
        missing = [n for n in order if evidence[n] is None]
        if len(missing) == len(order):
            raise HarnessError(f"no finished runs of {', '.join(order)} on {experiment_name(source, subset)}")
    rows = []
    for name in order:
        found = evidence.get(name)
        if found is None:
            continue
        if key not in found.values:
            raise HarnessError(f"--metric {metric!r}: not a final metric of the runs (try best_val_accuracy, val_macro_f1)")
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
    key = metric_key(metric)
    if fmt == "csv":
        return table.to_csv(index=False)
    shown = pretty(table, key)
    if fmt == "markdown":
        return shown.to_markdown(index=False) if _has_tabulate() else _markdown(shown)
    if fmt == "html":
        return shown.to_html(index=False, escape=True)
    return shown.to_string(index=False)


def pretty(table: pd.DataFrame, key: str) -> pd.DataFrame:
    """Rounded, human columns: 'mean +/- std (n)', signed deltas, p-values, short run ids."""
    if table.empty:
        return table
    out = pd.DataFrame()
    out["entry"] = table["entry"]
    out["change vs parent"] = table["change"].map(lambda s: s if len(s) <= 70 else s[:67] + "...")
    out[key] = [f"{m:.4f} +/- {s:.4f} ({n})" for m, s, n in zip(table[key], table["std"], table["n"])]
    out["delta"] = table["delta"].map(lambda v: "" if _missing(v) else f"{v:+.4f}")
    out["p (Welch)"] = table["p_value"].map(lambda v: "" if _missing(v) else f"{v:.3g}")
    out["val loss"] = table["val_loss"].map(lambda v: "" if _missing(v) else f"{v:.4f}")
    out["train-val gap"] = table["train_val_gap"].map(lambda v: "" if _missing(v) else f"{v:+.4f}")
    out["epochs"] = table["epochs"].map(lambda v: "" if _missing(v) else f"{v:.1f}")
    out["time s"] = table["train_seconds"].map(lambda v: "" if _missing(v) else f"{v:.1f}")
    out["params"] = table["params"].map(lambda v: "" if _missing(v) else f"{int(v):,}")
    out["report"] = table["report"].map(lambda v: "" if _missing(v) else f"{v:g}")
    return out


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _has_tabulate() -> bool:
    import importlib.util

    return importlib.util.find_spec("tabulate") is not None


def _markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def chart(table: pd.DataFrame, metric: str, path: Path) -> Path:
    """The history as a bar chart (mean +/- std), with the report's claims as markers."""
    from .plots import history_chart

    key = metric_key(metric)
    path.parent.mkdir(parents=True, exist_ok=True)
    claims = [None if _missing(v) else float(v) for v in table["report"]]
    return history_chart(list(table["entry"]), list(table[key]), list(table["std"]), claims, key, path)
