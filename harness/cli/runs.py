"""The verbs about entries and training: list, show, run-ablation, ablate."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from harness.cli.common import (
    DatasetOption,
    EpochsOption,
    ForceOption,
    FormatOption,
    MaxSeedsOption,
    MetricOption,
    SeedsOption,
    SetOption,
    StorageOption,
    SystemMetricsOption,
    TrackingOption,
    app,
    context,
    echo,
    note,
    out,
    overrides,
    warn,
)
from harness.paths import CHART_SUFFIXES

# --------------------------------------------------------------------------- entries


@app.command("list")
def list_entries() -> None:
    """The entries as a numbered history, branches indented under their parent."""
    from harness.entries.lineage import lineage_lines
    from harness.entries.registry import Registry

    registry = Registry(context().root)
    lines = lineage_lines(registry, warn=warn)
    echo(f"ablations/ ({len(lines)} entries; the number is the step in its history)")
    for line in lines:
        echo(line)


@app.command()
def show(
    name: str = typer.Argument(..., help="Entry name, e.g. focal_loss."),
    diff: bool = typer.Option(False, "--diff", help="Only what NAME changes against its parent."),
    sets: Optional[list[str]] = SetOption,
) -> None:
    """The resolved spec, with the file each value came from."""
    from harness.entries.diffs import diff_against_parent, shown
    from harness.entries.registry import Registry

    registry = Registry(context().root)
    resolved = registry.resolve(name, overrides(sets))
    entry = resolved.entry
    out.print(f"[bold]{name}[/bold]  ({' > '.join(resolved.chain)})  spec {resolved.fingerprint()}")
    if entry.description:
        out.print(entry.description, markup=False)
    if diff:
        changes = diff_against_parent(registry, resolved).changes
        table = Table("key", f"{resolved.parent or 'defaults'}", name, "from", box=None)
        for change in changes:
            table.add_row(change.key, shown(change.old), shown(change.new), resolved.source_of(change.key))
        out.print(table if changes else "no change against its parent")
        return
    table = Table("key", "value", "from", box=None)
    for key, value in resolved.flat().items():
        table.add_row(key, shown(value), resolved.source_of(key))
    out.print(table)
    claims = {k: v for k, v in entry.report.model_dump().items() if v is not None}
    if claims:
        out.print("report says: " + ", ".join(f"{k} {v}" for k, v in claims.items()), markup=False)
    if entry.search:
        out.print("search: " + ", ".join(f"{k} {v}" for k, v in entry.search.items()), markup=False)


# --------------------------------------------------------------------------- runs


@app.command("run-ablation")
def run_ablation(
    name: str = typer.Argument(..., help="Entry name, e.g. focal_loss."),
    dataset: Optional[str] = DatasetOption,
    epochs: Optional[int] = EpochsOption,
    sets: Optional[list[str]] = SetOption,
    seeds: Optional[str] = SeedsOption,
    max_seeds: Optional[int] = MaxSeedsOption,
    force: bool = ForceOption,
    system_metrics: bool = SystemMetricsOption,
    tracking_uri: Optional[str] = TrackingOption,
) -> None:
    """Train an entry and record it as an MLflow run (or a group of seed runs). With --seeds
    auto, the entry and its parent get seeds until the entry's verdict is decided."""
    from harness.runs.adaptive import run_adaptive, seed_choice
    from harness.runs.runner import run_ablation as run
    from harness.runs.runner import say_next

    choice = seed_choice(seeds, max_seeds)
    ctx = context(tracking_uri)
    extra = [*overrides(sets, dataset, epochs), *(["training.system_metrics=true"] if system_metrics else [])]
    if choice.auto:
        run_adaptive(ctx, name, extra, auto_max=choice.auto_max, force=force)
    else:
        run(ctx, name, extra, seeds=choice.seeds, force=force)
        say_next(ctx, name, extra)


@app.command()
def ablate(
    name: str = typer.Argument(..., help="The entry to take apart, e.g. final."),
    leave_one_out: bool = typer.Option(False, "--leave-one-out", help="Revert one step at a time (required)."),
    seeds: Optional[str] = typer.Option(
        None, "--seeds", help="Seeds per variant: a count (3), a list (0,1,7), or auto (2, more where undecided)."
    ),
    max_seeds: Optional[int] = MaxSeedsOption,
    dataset: Optional[str] = DatasetOption,
    epochs: Optional[int] = EpochsOption,
    sets: Optional[list[str]] = SetOption,
    metric: str = MetricOption,
    fmt: str = FormatOption,
    chart: Optional[Path] = typer.Option(
        None, "--chart", help="Write the forest plot of the contributions (.png, .svg or .pdf)."
    ),
    force: bool = typer.Option(False, "--force", help="Train even where identical finished runs exist."),
    tracking_uri: Optional[str] = TrackingOption,
) -> None:
    """What each step contributes to NAME: NAME against NAME without that one step."""
    from harness.interrupts import GUARD
    from harness.results.tables import check_format
    from harness.runs.adaptive import seed_choice
    from harness.study import ablate as loo

    check_format(fmt)
    loo.check_mode(leave_one_out)
    choice = seed_choice(seeds, max_seeds)
    ctx = context(tracking_uri)
    if chart is not None:
        ctx.check_output(chart, "--chart", CHART_SUFFIXES)  # before anything trains
    ablation = loo.run_leave_one_out(
        ctx, name, overrides(sets, dataset, epochs), seeds=choice, force=force, metric=metric, chart=chart
    )
    rendered = loo.render(ablation.table, metric, fmt)
    echo(rendered.text)
    if rendered.note():
        note(rendered.note())
    if chart is not None and ablation.record_run_id:
        note(f"chart: {chart}")
    GUARD.check()  # after Ctrl-C: the table of what finished, then exit 130


@app.command()
def study(
    target: str = typer.Argument(..., help="The last step of the history to study, e.g. final."),
    seeds: str = typer.Option(
        "3", "--seeds", help="Seeds per cell: a count (3), a list (0,1,7), or auto (2, more where undecided)."
    ),
    max_seeds: Optional[int] = MaxSeedsOption,
    leave_one_out: bool = typer.Option(False, "--leave-one-out", help="Also every leave-one-out variant of TARGET."),
    dataset: Optional[str] = DatasetOption,
    epochs: Optional[int] = EpochsOption,
    sets: Optional[list[str]] = SetOption,
    workers: int = typer.Option(
        1, "--workers", help="Worker processes on this machine (one GPU each where there are GPUs)."
    ),
    storage: Optional[str] = StorageOption,
    name: str = typer.Option("", "--name", help="Another study of the same command (e.g. after editing entries)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the cells and which are done; change nothing."),
    worker: bool = typer.Option(False, "--worker", hidden=True),
    tracking_uri: Optional[str] = TrackingOption,
) -> None:
    """The report's whole study: every step (and variant) over the seeds, the comparison, the
    final model selected, tested and registered, the report. The same command continues it;
    workers here (--workers) or on other machines (--storage postgresql://...) share it."""
    from harness.context import Context
    from harness.entries.registry import find_root
    from harness.runs.adaptive import seed_choice
    from harness.study.cells import StudyPlan
    from harness.study.workers import StudyOptions, run_study

    choice = seed_choice(seeds, max_seeds)
    plan_ = StudyPlan(
        target, tuple(overrides(sets, dataset, epochs)), tuple(choice.first), leave_one_out, auto_max=choice.auto_max
    )
    options = StudyOptions(storage, workers, worker, name, dry_run)
    ctx = Context(find_root(), tracking_uri, echo=echo, verbose=0)  # one line per cell, not Keras's bars
    run_study(ctx, plan_, options)
