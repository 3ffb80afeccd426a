"""A study's final steps, claimed like a cell (study.queue) by the first process that finds
every cell ended, and retried by the next worker or run if that process is interrupted or
killed: the comparison table and the leave-one-out table from the study's own seed groups,
the pick of the final model on validation, its single test and registration, and the
report, each recorded on the study's run. Each step is safe to do again: the tables and the
report are rewritten, a leave-one-out record or a final run already FINISHED is kept."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pandas as pd

from harness import paths
from harness.context import Context
from harness.entries.registry import Registry
from harness.results import tables
from harness.results.compare import Scope, chart, compare_table, render
from harness.results.evidence import RunIndex
from harness.results.report import build_report
from harness.runs.final import select
from harness.study import ablate as loo
from harness.study.cells import StudyPlan
from harness.study.leave_one_out import leave_one_out
from harness.study.queue import (
    CANNOT_BUILD,
    FINAL_DONE,
    GROUPS,
    HISTORY_RUN,
    finish_groups,
    finished_groups,
    group_trials,
    own_runs_scope,
)
from harness.tracking.names import Tag, model_link, run_link

METRIC = "best_val_accuracy"


def finalize(ctx: Context, study, plan_: StudyPlan, first) -> float:
    """The tables, the selection and the report of a study whose cells have all ended; the
    selected entry's mean best_val_accuracy (the final steps' trial's value)."""
    finish_groups(ctx, study)  # a group a killed worker left waiting
    store = ctx.writable_store
    groups: dict[str, str] = study.user_attrs[GROUPS]
    history_run = study.user_attrs[HISTORY_RUN]
    chain = Registry(ctx.root).history(plan_.target)
    finished = finished_groups(ctx, study)
    scope = own_runs_scope(plan_, first, finished, chain, METRIC)
    comparison = compare_table(ctx, scope, chain=plan_.target)
    ctx.echo(render(comparison, scope, "table").text)
    experiment_id = store.ensure_experiment(first.experiment)
    _record_verdicts(store, history_run, comparison, scope, plan_.target)
    if plan_.leave_one_out and plan_.target in finished and not _recorded_leave_one_out(store, experiment_id, study):
        _leave_one_out(
            ctx,
            plan_,
            study,
            groups=groups,
            finished=finished,
            experiment_id=experiment_id,
        )
    final_run_id = _selected(store, history_run)
    if final_run_id is None:
        selection = select(ctx, scope, chain)
        store.log(history_run, tags={Tag.SELECTED: selection.entry, Tag.FINAL_RUN: selection.final_run_id})
        final_run_id = selection.final_run_id
    out = paths.reports(ctx.root) / f"study-{paths.slug(plan_.target)}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    build_report(ctx, scope, out, "html")
    store.log_artifact(history_run, out)
    store.client.set_terminated(history_run, "FINISHED")
    links = [
        f"study run: {run_link(store.uri, experiment_id, history_run)}",
        f"runs table: {comparison.runs_table}",
        f"report: {out}",
        *_model_links(store, experiment_id, final_run_id),
    ]
    study.set_user_attr(FINAL_DONE, {"by": f"{socket.gethostname()}:{os.getpid()}", "links": links})
    for line in links:
        ctx.echo(line)
    return float(store.get_run(final_run_id).data.metrics.get(METRIC, float("nan")))


def _model_links(store, experiment_id: str, final_run_id: str) -> list[str]:
    """The registered version, labelled by the alias it was given (champion: or
    candidate:); the final run that tested it where no version was registered."""
    tags = store.get_run(final_run_id).data.tags
    name, _, version = tags.get(Tag.REGISTERED, "").partition(" version ")
    if not version:
        return [f"final run: {run_link(store.uri, experiment_id, final_run_id)}"]
    label = tags.get(Tag.REGISTERED_AS, "registered")
    return [f"{label}: {model_link(store.uri, name, version)} ({name} v{version})"]


def _record_verdicts(store, history_run: str, comparison, scope: Scope, target: str) -> None:
    """The study run answers first: its description and verdicts.md lead with each step's
    verdict, change and claim; history.csv and the waterfall follow; its metrics are its
    own (the target's mean, how many steps each verdict got), not the pick's."""
    frame = comparison.frame
    summary = tables.verdict_summary(frame)
    table = tables.markdown_table(tables.verdict_table(frame, METRIC))
    footnote = tables.HOLM_NOTE.format(rope=f"{100 * scope.rope:g}")
    document = (
        f"# What each step of {target} did ({comparison.caption(scope)})\n\n{summary}.\n\n{table}\n\n{footnote}\n"
    )
    counts = tables.verdict_counts(frame)
    target_rows = frame[frame["entry"] == target]
    metrics = {f"steps_{k}" if k != "steps" else "steps": v for k, v in counts.items()}
    if not target_rows.empty and not tables.missing(target_rows[METRIC].iloc[0]):
        metrics[f"target_{METRIC}"] = float(target_rows[METRIC].iloc[0])
    with tempfile.TemporaryDirectory(prefix="harness-study-") as tmp:
        folder = Path(tmp)
        (folder / "verdicts.md").write_text(document)
        frame.to_csv(folder / "history.csv", index=False, float_format=tables.CSV_FLOATS)
        chart(frame, METRIC, folder / "waterfall.png")
        store.client.log_artifacts(history_run, str(folder))
    store.log(history_run, metrics=metrics, tags={"mlflow.note.content": document[:4900]})


def _selected(store, history_run: str):
    """The final run a study already selected, tested and registered, if it FINISHED."""
    final_run_id = store.get_run(history_run).data.tags.get(Tag.FINAL_RUN)
    if final_run_id and store.get_run(final_run_id).info.status == "FINISHED":
        return final_run_id
    return None


def _recorded_leave_one_out(store, experiment_id: str, study) -> bool:
    """Whether this study's leave-one-out table was recorded already (a retried final step)."""
    return bool(
        store.runs(
            experiment_id, status="FINISHED", tags={Tag.KIND: "leave_one_out", Tag.STUDY: study.study_name}, limit=1
        )
    )


def _leave_one_out(
    ctx: Context,
    plan_: StudyPlan,
    study,
    *,
    groups: dict[str, str],
    finished: dict[str, str],
    experiment_id: str,
) -> None:
    """The leave-one-out table from the study's variant groups (`groups`: every group's run
    id, `finished`: those that finished; a variant with no group gives the reason its cells
    could not be built or run), recorded with its forest plot."""
    cannot_build: dict[str, str] = study.user_attrs.get(CANNOT_BUILD, {})
    store = ctx.writable_store
    index = RunIndex(store, experiment_id)
    target = plan_.target
    full = index.evidence(store.get_run(finished[target]), target)
    rows = [loo.ablation_row(target, "(all steps)", full, None, METRIC, "")]
    for variant in leave_one_out(Registry(ctx.root), target, list(plan_.overrides)):
        group = f"{target} without {variant.step}"
        if not variant.runnable:
            rows.append(loo.ablation_row(target, variant.step, None, None, METRIC, variant.describe()))
        elif group in finished:
            evidence = index.evidence(store.get_run(finished[group]), group)
            rows.append(loo.ablation_row(target, variant.step, evidence, full, METRIC, variant.describe()))
        elif group in groups:
            reason = store.get_run(groups[group]).data.tags.get(Tag.REASON, "did not finish")
            rows.append(loo.ablation_row(target, variant.step, None, None, METRIC, reason))
        else:
            failed = {t.user_attrs.get("reason", "") for t in group_trials(study, group)} - {""}
            reason = cannot_build.get(group) or "; ".join(sorted(failed)) or "not a cell of the study"
            rows.append(loo.ablation_row(target, variant.step, None, None, METRIC, reason))
    loo.judge_rows(store, rows, METRIC)
    ablation = loo.Ablation(pd.DataFrame(rows))
    ctx.echo(loo.render(ablation.table, METRIC, "table").text)
    loo.record(ctx, ablation, finished[target], experiment_id, name=target, key=METRIC, study=study.study_name)
