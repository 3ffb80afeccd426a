"""`harness ablate NAME --leave-one-out`: run NAME and every variant (NAME with one step's
changes put back to its parent's values) over the same seeds, and say what each step
contributes (full minus without) with its 95% interval and Welch's p-value.

A variant that cannot be built, or fails to train (NaN at once, out of memory), is a row
with its reason, not the end of the command; the others still run. Ctrl-C ends the current
variant KILLED and prints the table of what finished; the same command again reuses the
finished runs and resumes the interrupted one. A complete table is recorded as a run of kind
leave_one_out (the table as CSV and the forest plot), which the report shows."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from harness.context import Context
from harness.entries.registry import Registry
from harness.errors import HarnessError, RunFailed
from harness.interrupts import GUARD
from harness.results import tables
from harness.results.compare import metric_key
from harness.results.evidence import Evidence, RunIndex
from harness.results.stats import difference_interval, welch_p
from harness.runs import runner
from harness.study.leave_one_out import Variant, leave_one_out
from harness.tracking.names import Tag, run_link
from harness.training.geometry import CannotBuild


@dataclass
class Ablation:
    """The leave-one-out table (raw), whether Ctrl-C cut it short, its record run."""

    table: pd.DataFrame
    interrupted: bool = False
    record_run_id: Optional[str] = None
    overwritten: list[str] = field(default_factory=list)


def check_mode(leave_one_out_flag: bool) -> None:
    """`ablate` has one mode so far; it must be asked for by name."""
    if not leave_one_out_flag:
        raise HarnessError("ablate needs --leave-one-out (the only mode so far)")


def run_leave_one_out(
    ctx: Context,
    name: str,
    overrides: list[str],
    *,
    seeds: Optional[list[int]] = None,
    force: bool = False,
    metric: str = "best_val_accuracy",
    chart: Optional[Path] = None,
) -> Ablation:
    """Run NAME, then each runnable variant (over `seeds`, a single run each when None);
    returns the table of contributions to `metric`, and writes the forest plot to `chart`."""
    key = metric_key(metric)
    registry = Registry(ctx.root)
    variants = leave_one_out(registry, name, overrides)
    ctx.echo(f"=== {name}, all steps")
    full = runner.run_ablation(ctx, name, overrides, seeds=seeds, force=force)
    store = ctx.writable_store
    index = RunIndex(store, full.experiment_id)
    full_evidence = index.evidence(store.get_run(full.run_id), name)
    rows = [ablation_row(name, "(all steps)", full_evidence, None, key, "")]
    runnable = [v for v in variants if v.runnable]
    ablation = Ablation(pd.DataFrame(), overwritten=[v.step for v in variants if not v.runnable])
    try:
        for variant in variants:
            if not variant.runnable:
                rows.append(ablation_row(name, variant.step, None, None, key, variant.describe()))
                continue
            ctx.echo(f"variant {runnable.index(variant) + 1}/{len(runnable)}: {name} without {variant.step}")
            evidence, note = _run_variant(ctx, name, overrides, variant, seeds=seeds, force=force)
            if evidence is None:
                ctx.echo(f"{name} without {variant.step}: {note}")
            rows.append(ablation_row(name, variant.step, evidence, full_evidence if evidence else None, key, note))
    except KeyboardInterrupt:
        ablation.interrupted = True
    ablation.table = pd.DataFrame(rows)
    if not ablation.interrupted:
        ablation.record_run_id = record(ctx, ablation, full.run_id, full.experiment_id, name=name, key=key, chart=chart)
    return ablation


def _run_variant(
    ctx: Context, name: str, overrides: list[str], variant: Variant, *, seeds: Optional[list[int]], force: bool
):
    """(evidence, note) of one variant; a variant that cannot run gives (None, its reason)."""
    label = f"without {variant.step}"
    try:
        outcome = runner.run_ablation(
            ctx, name, overrides, seeds=seeds, force=force, variant=runner.Variant(label, tuple(variant.overrides))
        )
    except CannotBuild as exc:
        return None, str(exc)
    except RunFailed as exc:
        return None, f"failed: {exc.reason}"
    except HarnessError as exc:
        return None, f"cannot run: {exc}"
    except Exception as exc:  # noqa: BLE001 - out of memory arrives as the backend's own error type
        if type(exc).__name__ != "ResourceExhaustedError" and not isinstance(exc, MemoryError):
            raise
        return None, f"out of memory: {str(exc).splitlines()[0][:160]}"
    GUARD.check()
    store = ctx.writable_store
    return RunIndex(store, outcome.experiment_id).evidence(store.get_run(outcome.run_id), label), variant.describe()


def ablation_row(
    name: str, step: str, evidence: Optional[Evidence], full: Optional[Evidence], key: str, note: str
) -> dict[str, Any]:
    """One row: the variant's metric over seeds and, against the full entry, its contribution
    (full minus without) with its 95% interval and Welch's p."""
    row: dict[str, Any] = {"variant": name if step == "(all steps)" else f"{name} without {step}", "step": step}
    row.update({key: None, "std": None, "n": 0, "contribution": None, "ci_low": None, "ci_high": None, "p_value": None})
    row.update({"note": note, "runs": ""})
    if evidence is None:
        return row
    row.update(
        {key: evidence.mean(key), "std": evidence.std(key), "n": evidence.n(key), "runs": ",".join(evidence.run_ids)}
    )
    if full is not None:
        interval = difference_interval(full.values[key], evidence.values[key])
        row.update(
            {
                "contribution": full.mean(key) - evidence.mean(key),
                "ci_low": interval[0] if interval else None,
                "ci_high": interval[1] if interval else None,
                "p_value": welch_p(full.values[key], evidence.values[key]),
            }
        )
    return row


def forest_rows(table: pd.DataFrame) -> list[tuple]:
    """(step, contribution, ci_low, ci_high, p) of every variant that has a contribution."""
    out = []
    for row in table.itertuples(index=False):
        if not tables.missing(row.contribution):
            value = lambda v: None if tables.missing(v) else float(v)  # noqa: E731
            out.append((row.step, float(row.contribution), value(row.ci_low), value(row.ci_high), value(row.p_value)))
    return out


def not_run(table: pd.DataFrame) -> list[str]:
    """Steps with no contribution, each with why in a word or two, for the chart's note:
    'dropout (overwritten)', 'same_padding (cannot build)'."""
    out = []
    for row in table.itertuples(index=False):
        if row.step == "(all steps)" or not tables.missing(row.contribution):
            continue
        note = str(row.note or "")
        why = next((w for w in ("cannot build", "overwritten") if note.startswith(w)), "no result")
        out.append(f"{row.step} ({why})")
    return out


def record(
    ctx: Context,
    ablation: Ablation,
    full_run_id: str,
    experiment_id: str,
    *,
    name: str,
    key: str,
    chart: Optional[Path] = None,
    study: Optional[str] = None,
) -> str:
    """A FINISHED run of kind leave_one_out holding the table and the forest plot, beside the
    full entry's run or group `full_run_id` (and tagged with the `study` it belongs to); the
    plot also written to `chart` if given."""
    from harness.results import plots

    store = ctx.writable_store
    full_run = store.get_run(full_run_id)
    keep = (
        Tag.ENTRY,
        Tag.STEP,
        Tag.CHAIN,
        Tag.SETTINGS,
        Tag.SETTINGS_FINGERPRINT,
        Tag.DATASET,
        Tag.DATASET_FINGERPRINT,
        Tag.GIT_COMMIT,
    )
    tags = {k: full_run.data.tags[k] for k in keep if k in full_run.data.tags}
    tags.update({Tag.KIND: "leave_one_out", Tag.FULL_RUN: full_run_id})
    if study:
        tags[Tag.STUDY] = study
    tags.update({k: v for k, v in full_run.data.tags.items() if k.startswith("mlflow.source.")})
    rows, missing = forest_rows(ablation.table), not_run(ablation.table)
    with store.run(experiment_id, f"{name} leave-one-out", tags) as run:  # ends FAILED if anything below fails
        store.log(run.info.run_id, metrics={f"contribution_{r[0]}": r[1] for r in rows})
        with tempfile.TemporaryDirectory(prefix="harness-loo-") as tmp:
            folder = Path(tmp)
            ablation.table.to_csv(folder / "leave_one_out.csv", index=False)
            plots.forest(rows, key, missing, folder / "forest.png")
            store.client.log_artifacts(run.info.run_id, str(folder))
        if chart is not None:
            plots.forest(rows, key, missing, chart)
    ctx.echo(f"MLflow: {run_link(store.uri, experiment_id, run.info.run_id)}")
    return run.info.run_id


def render(table: pd.DataFrame, metric: str, fmt: str, width: Optional[int] = None) -> str:
    """The leave-one-out table as text, markdown, csv or html (tables.leave_one_out). On a
    terminal the notes (why a step has no contribution) follow the table, one per line."""
    import shutil
    import textwrap

    shown = tables.leave_one_out(table, metric_key(metric))
    if fmt != "table":
        return tables.render_frame(table, shown, fmt)
    width = width or shutil.get_terminal_size((80, 24)).columns
    text = tables.terminal_table(shown.drop(columns=["note"]), width=width)
    notes = [f"{v}: {n}" for v, n in zip(shown["variant"], shown["note"]) if n]
    for line in notes:
        text += "\n" + "\n".join(textwrap.wrap(line, width, subsequent_indent="    "))
    return text
