"""The verbs about entries and training: list, show, run-ablation, ablate."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table
from rich.tree import Tree

from .cli_common import (
    DatasetOption,
    EpochsOption,
    ForceOption,
    FormatOption,
    MetricOption,
    SeedsOption,
    SetOption,
    TrackingOption,
    app,
    context,
    echo,
    out,
    overrides,
    warn,
)

# --------------------------------------------------------------------------- entries


@app.command("list")
def list_entries() -> None:
    """The entries as a lineage tree, with their descriptions."""
    from .entries import Registry, first_sentence

    ctx = context()
    registry = Registry(ctx.root)
    children = registry.children(warn=warn)
    tree = Tree(f"ablations/ ({len(registry.names())} entries)")

    def add(node, name):
        entry = registry.entry(name)
        branch = node.add(f"[bold]{name}[/bold]  {first_sentence(entry.description)}")
        for child in children.get(name, []):
            add(branch, child)

    for root_name in children.get(None, []):
        add(tree, root_name)
    out.print(tree)


@app.command()
def show(
    name: str = typer.Argument(..., help="Entry name, e.g. focal_loss."),
    diff: bool = typer.Option(False, "--diff", help="Only what NAME changes against its parent."),
    sets: Optional[list[str]] = SetOption,
) -> None:
    """The resolved spec, with the file each value came from."""
    from .diffs import diff_against_parent, shown
    from .entries import Registry

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
    force: bool = ForceOption,
    tracking_uri: Optional[str] = TrackingOption,
) -> None:
    """Train an entry and record it as an MLflow run (or a group of seed runs)."""
    from .runner import parse_seeds
    from .runner import run_ablation as run

    ctx = context(tracking_uri)
    run(ctx, name, overrides(sets, dataset, epochs), seeds=parse_seeds(seeds), force=force)


@app.command()
def ablate(
    name: str = typer.Argument(..., help="The entry to take apart, e.g. final."),
    leave_one_out: bool = typer.Option(False, "--leave-one-out", help="Revert one step at a time (required)."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Seeds per variant: a count (3) or a list (0,1,7)."),
    dataset: Optional[str] = DatasetOption,
    epochs: Optional[int] = EpochsOption,
    sets: Optional[list[str]] = SetOption,
    metric: str = MetricOption,
    fmt: str = FormatOption,
    force: bool = typer.Option(False, "--force", help="Train even where identical finished runs exist."),
    tracking_uri: Optional[str] = TrackingOption,
) -> None:
    """What each step contributes to NAME: NAME against NAME without that one step."""
    from . import leave_one_out as loo
    from .runner import parse_seeds
    from .tables import check_format

    check_format(fmt)
    loo.check_mode(leave_one_out)
    ctx = context(tracking_uri)
    table = loo.run_leave_one_out(
        ctx, name, overrides(sets, dataset, epochs), seeds=parse_seeds(seeds), force=force, metric=metric
    )
    echo(loo.render(table, metric, fmt))
