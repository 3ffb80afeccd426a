"""The comparison table: one row per entry on one dataset, in history order, from runs made
with the same settings: the metric over seeds, its change against the parent with Welch's
p-value, and the report's own figure. Imports no TensorFlow."""

from __future__ import annotations

import html
import math
import shutil
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import pandas as pd

from harness import paths
from harness.context import Context
from harness.data.sources import CIFAR10_FOLDER_NAMES, CIFAR10_NAMES
from harness.entries import settings as run_settings
from harness.entries.diffs import diff_against_parent
from harness.entries.registry import Registry
from harness.errors import HarnessError
from harness.results import tables
from harness.results.evidence import Evidence, RunIndex
from harness.results.steps import judge
from harness.results.verdicts import MIN_SEEDS, ROPE, Change, Verdict
from harness.tracking.names import experiment_name, table_link

if TYPE_CHECKING:
    from harness.tracking.protocol import RunStore

ALIASES = {"val_accuracy": "best_val_accuracy", "val_loss": "best_val_loss"}
CLAIM_FOR = {
    "best_val_accuracy": "val_accuracy",
    "best_val_loss": "val_loss",
}
NOT_RUN = "not run"
NOT_RUN_HERE = "not run with these settings"


@dataclass(frozen=True)
class Scope:
    """Which runs a table reads: one dataset (and subset), compared on one metric, made with
    one set of settings: those given (--set, --epochs), else those of the latest run among
    the entries asked for; any_settings takes the latest run of each entry, whatever its
    settings."""

    source: str = "digits"
    subset: Optional[int] = None
    metric: str = "best_val_accuracy"
    settings: Optional[tuple[str, ...]] = None
    any_settings: bool = False
    pinned: tuple[tuple[str, str], ...] = ()  # (entry, run id): a study's own seed groups stand for its entries
    rope: float = ROPE  # the region of practical equivalence, in the metric's units

    @property
    def key(self) -> str:
        return metric_key(self.metric)

    @property
    def experiment(self) -> str:
        return experiment_name(self.source, self.subset)


@dataclass
class Comparison:
    """The table (raw numbers, one row per entry), the evidence behind each row, the settings
    compared, and notes for the reader (stderr)."""

    frame: pd.DataFrame
    evidence: dict[str, Optional[Evidence]]
    settings: str
    notes: list[str] = field(default_factory=list)
    runs_table: str = ""  # a link to MLflow's runs table of these settings
    verdicts: dict[str, Verdict] = field(default_factory=dict)  # each step with runs on both sides, as judged

    def caption(self, scope: Scope) -> str:
        return f"{scope.experiment}; settings: {self.settings}; metric: {scope.key}"


def metric_key(metric: str) -> str:
    return ALIASES.get(metric, metric)


def experiment_for(store: RunStore, source: str, subset: Optional[int]) -> str:
    label = experiment_name(source, subset)
    experiment_id = store.experiment_id(label)
    if experiment_id is None:
        known = ", ".join(e.name for e in store.experiments() if e.name != "Default") or "none"
        raise HarnessError(f"no runs on dataset {label!r} (datasets with runs: {known})")
    return experiment_id


def history_order(registry: Registry, names: Optional[Sequence[str]], chain: Optional[str], warn=None) -> list[str]:
    """The entries to show, in history order: a chain, the given names, or every readable
    entry depth-first from the roots (unreadable ones skipped with a warning)."""
    if chain:
        return registry.history(chain)
    if names:
        for name in names:
            registry.entry(name)
        twice = sorted({name for name in names if list(names).count(name) > 1})
        if twice:
            raise HarnessError(f"entry {twice[0]!r} is named twice; name each entry once")
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


def check_settings(registry: Registry, order: Sequence[str], settings: Optional[Sequence[str]]) -> None:
    """Settings named on a reading command (--set, --epochs) are checked as run-ablation
    would check them: each entry resolves with them, or the first problem is one line
    (`--set training.epochs=abc` is a type error, not "no finished runs with ...")."""
    if not settings:
        return
    for name in order:
        registry.resolve(name, list(settings))


def chosen_settings(index: RunIndex, scope: Scope, order: list[str]) -> tuple[Optional[str], str]:
    """(fingerprint, label) of the settings to compare: given, else the latest run's; (None,
    'any') with any_settings."""
    if scope.any_settings:
        return None, "any (the latest run of each entry)"
    if scope.settings is not None:
        return run_settings.fingerprint(scope.settings), run_settings.label(scope.settings)
    latest = index.latest_settings(order)
    return latest if latest else (run_settings.fingerprint(()), run_settings.AS_WRITTEN)


def compare_table(
    ctx: Context, scope: Scope, names: Optional[Sequence[str]] = None, chain: Optional[str] = None
) -> Comparison:
    """The history table: one row per entry in history order. With names or a chain every
    entry asked for has a row (`not run`, or `not run with these settings`); otherwise only
    the entries with runs."""
    registry = Registry(ctx.root)
    order = history_order(registry, names, chain)
    check_settings(registry, order, scope.settings)
    store = ctx.strict_reader
    index = RunIndex(store, experiment_for(store, scope.source, scope.subset))
    fingerprint, label = chosen_settings(index, scope, order)
    pinned = dict(scope.pinned)
    evidence = {name: index.pinned_or_latest(name, fingerprint, pinned) for name in order}
    experiment_id = index.experiment_id
    comparison = Comparison(
        pd.DataFrame(),
        evidence,
        label,
        runs_table=table_link(store.uri, experiment_id, fingerprint, store.experiment_tags(experiment_id)),
    )
    if all(found is None for found in evidence.values()):
        others = sorted({s for name in order for s in index.other_settings(name, fingerprint)})
        hint = f"; runs exist with: {'; '.join(others)}" if others else ""
        raise HarnessError(f"no finished runs of these entries on {scope.experiment} with settings {label}{hint}")
    rows = []
    for name in order:
        found = evidence[name]
        if found is not None and scope.key not in found.values:
            raise HarnessError(
                f"--metric {scope.metric!r}: not a final metric of the runs (try best_val_accuracy, val_macro_f1)"
            )
        if found is None and not (names or chain):
            continue
        if found is None:
            others = index.other_settings(name, fingerprint)
            if others:
                comparison.notes.append(f"{name}: no run with settings {label}; it has runs with: {'; '.join(others)}")
        parent = registry.entry(name).parent
        if parent in evidence:
            parent_found = evidence[parent]
        else:
            parent_found = index.pinned_or_latest(parent, fingerprint, pinned) if parent else None
        has_other = bool(index.other_settings(name, fingerprint))
        row = _row(registry, name, scope, found=found, parent_found=parent_found, has_other=has_other)
        row["_pair"] = (found, parent_found)
        rows.append(row)
    judged = _judge(store, rows, scope, cifar10=is_cifar10(ctx.root, scope.source))
    comparison.verdicts = {row["entry"]: verdict for row, verdict in zip(rows, judged) if row["verdict"]}
    comparison.frame = pd.DataFrame(rows)
    return comparison


def _judge(store: RunStore, rows: list[dict[str, Any]], scope: Scope, *, cifar10: bool) -> list[Verdict]:
    """Each row's change against its parent measured and decided across the table
    (results.steps.judge), and the report's claim judged beside it."""
    pairs = [row.pop("_pair") for row in rows]
    judged = judge(store, pairs, scope.key, rope=scope.rope)
    for row, verdict, (found, parent_found) in zip(rows, judged, pairs):
        change = verdict.change
        row["verdict"] = verdict.word if found is not None and parent_found is not None else ""
        row["delta"] = change.mean if change else None
        row["delta_ci_low"], row["delta_ci_high"] = (change.low, change.high) if change else (None, None)
        row["p_value"], row["p_holm"] = (change.p if change else None), verdict.p_holm
        row["covers"] = change.covers if change else ""
        row["claim_verdict"] = judge_claim(row, change, scope, cifar10=cifar10)
    return judged


def is_cifar10(root: Path, source: str) -> bool:
    """Whether a dataset is CIFAR-10, the data the report's claims were made on: Keras's
    copy, or an image folder of its ten classes (by the report's names or the usual ones)."""
    if source == "cifar10":
        return True
    if not source.startswith("folder:"):
        return False
    train = Path(source[len("folder:") :]).expanduser() / "train"
    try:
        classes = {p.name.lower() for p in train.iterdir() if p.is_dir()}
    except OSError:
        return False
    return classes in (set(CIFAR10_NAMES), set(CIFAR10_FOLDER_NAMES))


def judge_claim(row: dict[str, Any], change: Optional[Change], scope: Scope, *, cifar10: bool) -> str:
    """The report's claim for this step beside the measurement: its claimed change (or, with
    no claim for the parent, its claimed value) inside the 95% interval of what was measured
    is `supported`, outside it `contradicted`; measured on other data or at another budget it
    is `not comparable`, with why."""
    claimed = row.get("report")
    if claimed is None or (isinstance(claimed, float) and math.isnan(claimed)):
        return ""
    if not cifar10:
        return f"not comparable ({scope.source}, not CIFAR-10)"
    budget = [f"subset {scope.subset}"] if scope.subset else []
    settings = row.get("settings_label") or ""
    if settings and settings != run_settings.AS_WRITTEN:
        budget.append(settings)
    if budget:
        return f"not comparable ({', '.join(budget)})"
    claimed_delta = row.get("report_delta")
    if claimed_delta is not None and not (isinstance(claimed_delta, float) and math.isnan(claimed_delta)):
        if change is None or change.n < MIN_SEEDS:
            return "undecided"
        return "supported" if change.low <= claimed_delta <= change.high else "contradicted"
    low, high = row.get("ci_low"), row.get("ci_high")
    if low is None or row.get("n", 0) < MIN_SEEDS:
        return "undecided"
    return "supported" if low <= claimed <= high else "contradicted"


def _why_no_change(found: Optional[Evidence], parent_found: Optional[Evidence], parent: Optional[str], key: str) -> str:
    """Why a row has no change against its parent: no parent, or a parent not run."""
    if found is None:
        return ""
    if parent is None:
        return "no parent"
    if parent_found is None or key not in parent_found.values:
        return "parent not run"
    return ""


def _row(
    registry: Registry,
    name: str,
    scope: Scope,
    *,
    found: Optional[Evidence],
    parent_found: Optional[Evidence],
    has_other: bool,
) -> dict[str, Any]:
    """One row: this entry's evidence, its parent's, and whether this entry has runs with
    other settings (its status then says so)."""
    key, entry = scope.key, registry.entry(name)
    claim_field = CLAIM_FOR.get(key)
    claim = getattr(entry.report, claim_field, None) if claim_field else None
    parent_report = registry.entry(entry.parent).report if entry.parent else None
    parent_claim = getattr(parent_report, claim_field, None) if claim_field and parent_report else None
    row: dict[str, Any] = {
        "entry": name,
        "status": "" if found is not None else (NOT_RUN_HERE if has_other else NOT_RUN),
        "change": diff_against_parent(registry, registry.resolve(name)).in_words(),
        "report": claim,
        "report_delta": claim - parent_claim if claim is not None and parent_claim is not None else None,
    }
    if scope.any_settings:
        row["settings"] = found.settings if found is not None else ""
    summary = found.summary(key) if found is not None else None
    row.update({key: None, "std": None, "n": 0, "ci_low": None, "ci_high": None})
    if summary is not None:
        row.update(
            {
                key: summary.mean,
                "std": summary.std,
                "n": summary.n,
                "ci_low": summary.ci_low,
                "ci_high": summary.ci_high,
            }
        )
    row["delta_note"] = _why_no_change(found, parent_found, entry.parent, key)
    row["settings_label"] = found.settings if found is not None else ""
    for column, metric in (
        ("val_loss", "best_val_loss"),
        ("train_val_gap", "train_val_gap"),
        ("epochs", "epochs_run"),
        ("train_seconds", "train_seconds"),
        ("params", "param_count"),
    ):
        row[column] = found.mean(metric) if found is not None else None
    row["runs"] = ",".join(found.run_ids) if found is not None else ""
    row["run"] = found.run_id if found is not None else ""  # the single run or the seed group's run
    return row


# --------------------------------------------------------------------------- the command


def render(comparison: Comparison, scope: Scope, fmt: str, width: Optional[int] = None) -> tables.Rendered:
    """The table as terminal text (fitted to `width`), markdown, csv or html; every format but
    CSV says under the table what the interval covers and which correction p (Holm) is."""
    frame = comparison.frame.assign(dataset=scope.experiment, compared_settings=comparison.settings)
    shown = tables.comparison(comparison.frame, scope.key)
    rendered = tables.render_frame(frame, shown, fmt, caption=comparison.caption(scope), width=width)
    if fmt == "csv" or comparison.frame.empty:
        return rendered
    footnote = tables.HOLM_NOTE.format(rope=f"{100 * scope.rope:g}")
    if fmt == "html":
        text = rendered.text.replace("</body>", f"<p class='note'>{html.escape(footnote)}</p></body>")
    else:
        wrapped = textwrap.wrap(footnote, width or shutil.get_terminal_size((80, 24)).columns)
        text = rendered.text + "\n\n" + ("\n".join(wrapped) if fmt == "table" else footnote)
    return tables.Rendered(text, rendered.left_out)


@dataclass
class Compared:
    """What `harness compare` produced: the comparison, its rendering, and the chart's file."""

    comparison: Comparison
    rendered: tables.Rendered
    chart: Optional[Path]

    @property
    def text(self) -> str:
        return self.rendered.text


@dataclass(frozen=True)
class Output:
    """Where `harness compare` puts things: the table's format and file, and the waterfall
    chart's file (drawn only when asked for)."""

    fmt: str = "table"
    table_file: Optional[Path] = None
    chart_file: Optional[Path] = None


def compare_command(ctx: Context, scope: Scope, names=None, chain=None, output: Output = Output()) -> Compared:
    """The comparison as the command gives it: checked options, the table rendered (and
    written to output.table_file), the chart written if asked for."""
    tables.check_format(output.fmt)
    if names and chain:
        raise HarnessError("give entry names or --chain NAME, not both")
    if output.table_file is not None:
        ctx.check_output(output.table_file, "--out")
    if output.chart_file is not None:
        ctx.check_output(output.chart_file, "--chart", paths.CHART_SUFFIXES)
    comparison = compare_table(ctx, scope, names, chain)
    rendered = render(comparison, scope, output.fmt)
    if output.table_file is not None:
        paths.write_file(output.table_file, rendered.text + "\n")
    if output.chart_file is not None:
        chart(comparison.frame, scope.metric, output.chart_file)
    return Compared(comparison, rendered, output.chart_file)


def chart(table: pd.DataFrame, metric: str, path: Path) -> Path:
    """The history as a waterfall: each step's change against its parent with its 95%
    interval, significant steps marked, the report's claimed change beside it."""
    from harness.results.plots import waterfall

    return waterfall(table, metric_key(metric), path)
