"""`harness ablate NAME --leave-one-out`: run NAME and every variant (NAME with one step's
changes put back to its parent's values) over the same seeds, and say what each step
contributes (full minus without): its verdict, its change with the 95% interval, p
corrected across the table (results.verdicts). With --seeds auto, seeds go where a
variant's verdict is still undecided.

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
from harness.results.steps import judge
from harness.results.verdicts import ROPE, Verdict, undecided_family
from harness.runs import runner
from harness.runs.adaptive import SeedChoice, next_seeds, wants_more, why_stopped
from harness.study.leave_one_out import Variant, leave_one_out, variant_title
from harness.tracking.names import Tag, run_link
from harness.tracking.protocol import RunStore
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
    seeds: Optional[SeedChoice] = None,
    force: bool = False,
    metric: str = "best_val_accuracy",
    chart: Optional[Path] = None,
) -> Ablation:
    """Run NAME, then each runnable variant over the seeds (a single run each when none are
    given; with `auto`, two, then one more to a variant and NAME while the variant's verdict
    is undecided); returns the table of contributions to `metric`, and writes the forest
    plot to `chart`."""
    key, choice = metric_key(metric), seeds or SeedChoice()
    variants = leave_one_out(Registry(ctx.root), name, overrides)
    runnable = [v for v in variants if v.runnable]
    seeds_of = {v.step: choice.first for v in runnable}
    ablation = Ablation(pd.DataFrame(), overwritten=[v.step for v in variants if not v.runnable])
    ran: dict[str, tuple[Optional[Evidence], str]] = {}
    ctx.echo(f"=== {name}, all steps")
    full, full_evidence = _run_full(ctx, name, overrides, choice.first, force)
    try:
        for number, variant in enumerate(runnable, start=1):
            ctx.echo(f"variant {number}/{len(runnable)}: {variant_title(name, variant.step)}")
            ran[variant.step] = _run_variant(ctx, name, overrides, variant, seeds=seeds_of[variant.step], force=force)
        told: set[str] = set()  # variants already said to stop
        while choice.auto:
            rows = _rows(ctx, name, variants, full_evidence, ran, key)
            more, family = [], undecided_family([row["_judged"] for row in rows])
            for row in rows[1:]:  # the variants (the first row is NAME itself)
                if not row["verdict"] or row["step"] not in seeds_of:  # no result: nothing for a seed to settle
                    continue
                if wants_more(row["_judged"], row["n"], choice.auto_max, family=family):
                    more.append(row["step"])
                    told.discard(row["step"])
                    continue
                reason = why_stopped(row["_judged"], row["n"], choice.auto_max, family=family)
                if reason and row["step"] not in told:
                    told.add(row["step"])
                    ctx.echo(f"{variant_title(name, row['step'])}: {reason}")
            if not more:
                break
            for step in more:
                seeds_of[step] = next_seeds(seeds_of[step])
            full_seeds = sorted(set().union(*(seeds_of[s] for s in seeds_of)))
            ctx.echo(f"--- undecided: {', '.join(more)}; one more seed to each and to {name}")
            full, full_evidence = _run_full(ctx, name, overrides, full_seeds, False)
            for variant in [v for v in runnable if v.step in more]:
                ran[variant.step] = _run_variant(
                    ctx, name, overrides, variant, seeds=seeds_of[variant.step], force=False
                )
    except KeyboardInterrupt:
        ablation.interrupted = True
    ablation.table = pd.DataFrame(_rows(ctx, name, variants, full_evidence, ran, key)).drop(columns="_judged")
    if not ablation.interrupted:
        ablation.record_run_id = record(ctx, ablation, full.run_id, full.experiment_id, name=name, key=key, chart=chart)
    return ablation


def _run_full(ctx: Context, name: str, overrides: list[str], seeds: Optional[list[int]], force: bool):
    """NAME over these seeds: (its outcome, its evidence)."""
    full = runner.run_ablation(ctx, name, overrides, seeds=seeds, force=force)
    store = ctx.writable_store
    return full, RunIndex(store, full.experiment_id).evidence(store.get_run(full.run_id), name)


def _rows(
    ctx: Context, name: str, variants: list[Variant], full: Evidence, ran: dict, key: str
) -> list[dict[str, Any]]:
    """The table: NAME, then each variant (its run's evidence, or why it has none), judged."""
    rows = [ablation_row(name, "(all steps)", full, None, key, "")]
    for variant in variants:
        if not variant.runnable:
            rows.append(ablation_row(name, variant.step, None, None, key, variant.describe()))
        elif variant.step in ran:
            evidence, note = ran[variant.step]
            rows.append(ablation_row(name, variant.step, evidence, full if evidence else None, key, note))
    for row, verdict in zip(rows, judge_rows(ctx.writable_store, rows, key)):
        row["_judged"] = verdict
    return rows


def _run_variant(
    ctx: Context, name: str, overrides: list[str], variant: Variant, *, seeds: Optional[list[int]], force: bool
):
    """(evidence, note) of one variant; a variant that cannot run gives (None, its reason),
    said as it happens."""
    label = f"without {variant.step}"
    try:
        outcome = runner.run_ablation(
            ctx, name, overrides, seeds=seeds, force=force, variant=runner.Variant(label, tuple(variant.overrides))
        )
    except CannotBuild as exc:
        return _no_result(ctx, name, variant, str(exc))
    except RunFailed as exc:
        return _no_result(ctx, name, variant, f"failed: {exc.reason}")
    except HarnessError as exc:
        return _no_result(ctx, name, variant, f"cannot run: {exc}")
    except Exception as exc:  # noqa: BLE001 - out of memory arrives as the backend's own error type
        if type(exc).__name__ != "ResourceExhaustedError" and not isinstance(exc, MemoryError):
            raise
        return _no_result(ctx, name, variant, f"out of memory: {str(exc).splitlines()[0][:160]}")
    GUARD.check()
    store = ctx.writable_store
    return RunIndex(store, outcome.experiment_id).evidence(store.get_run(outcome.run_id), label), variant.describe()


def _no_result(ctx: Context, name: str, variant: Variant, note: str) -> tuple[None, str]:
    ctx.echo(f"{variant_title(name, variant.step)}: {note}")
    return None, note


def ablation_row(
    name: str, step: str, evidence: Optional[Evidence], full: Optional[Evidence], key: str, note: str
) -> dict[str, Any]:
    """One row: the variant's metric over seeds; its contribution (full minus without) and
    verdict come from judge_rows, across the whole table."""
    row: dict[str, Any] = {"variant": name if step == "(all steps)" else variant_title(name, step), "step": step}
    row.update({key: None, "std": None, "n": 0, "verdict": "", "contribution": None, "ci_low": None, "ci_high": None})
    row.update({"p_value": None, "p_holm": None, "note": note, "runs": "", "_pair": (full, evidence)})
    if evidence is None:
        return row
    row.update(
        {key: evidence.mean(key), "std": evidence.std(key), "n": evidence.n(key), "runs": ",".join(evidence.run_ids)}
    )
    return row


def judge_rows(store: RunStore, rows: list[dict[str, Any]], key: str, rope: float = ROPE) -> list[Verdict]:
    """Every variant's contribution measured against the full entry (paired by seed, with
    the validation images) and decided across the table, Holm-corrected."""
    pairs = [row.pop("_pair") for row in rows]
    judged = judge(store, pairs, key, rope=rope)
    for row, verdict, (full, without) in zip(rows, judged, pairs):
        change = verdict.change
        if full is None or without is None:
            continue
        row["verdict"] = verdict.word
        row["contribution"] = change.mean if change else None
        row["ci_low"], row["ci_high"] = (change.low, change.high) if change else (None, None)
        row["p_value"], row["p_holm"] = (change.p if change else None), verdict.p_holm
    return judged


def forest_rows(table: pd.DataFrame) -> list[tuple]:
    """(step, contribution, ci_low, ci_high, verdict) of every variant with a contribution."""
    out = []
    for row in table.itertuples(index=False):
        if not tables.missing(row.contribution):
            value = lambda v: None if tables.missing(v) else float(v)  # noqa: E731
            out.append((row.step, float(row.contribution), value(row.ci_low), value(row.ci_high), row.verdict))
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
            ablation.table.to_csv(folder / "leave_one_out.csv", index=False, float_format=tables.CSV_FLOATS)
            plots.forest(rows, key, missing, folder / "forest.png")
            store.client.log_artifacts(run.info.run_id, str(folder))
        if chart is not None:
            plots.forest(rows, key, missing, chart)
    ctx.echo(f"leave-one-out run: {run_link(store.uri, experiment_id, run.info.run_id)}")
    return run.info.run_id


def render(table: pd.DataFrame, metric: str, fmt: str, width: Optional[int] = None) -> tables.Rendered:
    """The leave-one-out table as text, markdown, csv or html (tables.leave_one_out). On a
    terminal the notes (why a step has no contribution) follow the table, one per line, then
    what the interval covers and which correction p (Holm) is."""
    import shutil
    import textwrap

    shown = tables.leave_one_out(table, metric_key(metric))
    if fmt != "table":
        return tables.render_frame(table, shown, fmt)
    width = width or shutil.get_terminal_size((80, 24)).columns
    rendered = tables.terminal_table(shown.drop(columns=["note"]), width=width)
    lines = [rendered.text]
    for variant, note in zip(shown["variant"], shown["note"]):
        if note:
            lines.append("\n".join(textwrap.wrap(f"{variant}: {note}", width, subsequent_indent="    ")))
    footnote = tables.HOLM_NOTE.replace("change: child minus parent", "contribution: full minus without").format(
        rope=f"{100 * ROPE:g}"
    )
    lines.append("\n" + "\n".join(textwrap.wrap(footnote, width)))
    return tables.Rendered("\n".join(lines), rendered.left_out)
