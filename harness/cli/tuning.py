"""The verbs about Optuna studies: tune, save-best, and optuna-dashboard."""

from __future__ import annotations

from typing import Optional

import typer

from harness.cli.common import (
    DatasetOption,
    SetOption,
    StorageOption,
    TrackingOption,
    app,
    context,
    echo,
    overrides,
)

# --------------------------------------------------------------------------- tuning


@app.command()
def tune(
    name: str = typer.Argument(..., help="Entry with a search block, e.g. focal_loss."),
    trials: int = typer.Option(..., "--trials", help="Trials to run now (they add up across runs)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Stop starting trials after S seconds."),
    dataset: Optional[str] = DatasetOption,
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Sets training.epochs for every trial."),
    storage: Optional[str] = StorageOption,
    pruner: str = typer.Option("median", "--pruner", help="median | hyperband | none."),
    metric: str = typer.Option("val_accuracy", "--metric", help="Monitored metric (val_accuracy or val_loss)."),
    sets: Optional[list[str]] = SetOption,
    save_as: Optional[str] = typer.Option(None, "--save-as", help="Write the best trial as ablations/NEW.yaml."),
    tracking_uri: Optional[str] = TrackingOption,
) -> None:
    """An Optuna study over the entry's search block; each trial an MLflow child run."""
    from harness.tuning.best_entry import check_new_name, write_best_entry
    from harness.tuning.tune import TuneSettings
    from harness.tuning.tune import tune as run_study

    ctx = context(tracking_uri)
    extra = overrides(sets, dataset, epochs)
    settings = TuneSettings(trials, timeout, storage, pruner, metric)
    if save_as is not None:
        check_new_name(ctx.root, save_as)
    run_study(ctx, name, settings, extra)
    if save_as:
        echo(f"wrote {write_best_entry(ctx.root, name, save_as, extra, storage)}")


@app.command("save-best")
def save_best(
    name: str = typer.Argument(..., help="The tuned entry."),
    new_name: str = typer.Argument(..., help="Name of the new entry (ablations/NEW.yaml)."),
    dataset: Optional[str] = DatasetOption,
    epochs: Optional[int] = typer.Option(None, "--epochs", help="As given to tune."),
    sets: Optional[list[str]] = SetOption,
    storage: Optional[str] = StorageOption,
    force: bool = typer.Option(False, "--force", help="Overwrite an existing entry file."),
) -> None:
    """Write a study's best trial out as a new entry that extends NAME."""
    from harness.tuning.best_entry import write_best_entry

    path = write_best_entry(context().root, name, new_name, overrides(sets, dataset, epochs), storage, force)
    echo(f"wrote {path}")


# --------------------------------------------------------------------------- servers


@app.command()
def dashboard(
    storage: Optional[str] = StorageOption,
    port: int = typer.Option(8080, "--port"),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address; 127.0.0.1 keeps it on this machine."),
    verbose: bool = typer.Option(False, "--verbose", help="Show the server's own output (else a log file)."),
) -> None:
    """optuna-dashboard over the studies' storage, on 127.0.0.1."""
    from harness.cli.servers import run_dashboard

    raise typer.Exit(run_dashboard(context(), storage, host=host, port=port, verbose=verbose))
