"""What every verb of the `harness` command shares: the typer app, the two consoles, the
options that recur, and the objects a verb hands to the library."""

from __future__ import annotations

import math
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(
    help="Ablation studies of Keras CNN image classifiers, tracked in MLflow, tuned with Optuna.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

SetOption = typer.Option(None, "--set", help="Override a spec key: --set training.epochs=5 (repeatable).")
DatasetOption = typer.Option(None, "--dataset", help="digits | cifar10 | folder:DIR (sets data.source).")
EpochsOption = typer.Option(None, "--epochs", help="Sets training.epochs.")
TrackingOption = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: SQLite in mlruns/).")
SourceOption = typer.Option("digits", "--dataset", help="Dataset whose runs to use: digits | cifar10 | folder:DIR.")
SubsetOption = typer.Option(None, "--subset", help="Use the runs made with data.subset=N.")
MetricOption = typer.Option(
    "best_val_accuracy", "--metric", help="Final metric: best_val_accuracy, val_macro_f1, best_val_loss ..."
)
FormatOption = typer.Option("table", "--format", help="table | markdown | csv | html.")
StorageOption = typer.Option(None, "--storage", help="Optuna RDB URL (default: journal file in mlruns/optuna/).")
SeedsOption = typer.Option(
    None, "--seeds", help="A group run over seeds: a count (3), a list (0,1,7), or auto (2, more where undecided)."
)
MaxSeedsOption = typer.Option(None, "--max-seeds", help="With --seeds auto: the most seeds a step gets (default 6).")
ForceOption = typer.Option(False, "--force", help="Train even if an identical finished run exists.")
SystemMetricsOption = typer.Option(
    False, "--system-metrics", help="Log MLflow's system metrics (CPU, memory, GPU) during training."
)
AnySettingsOption = typer.Option(
    False, "--any-settings", help="The latest run of each entry, whatever its settings (a column names them)."
)
CompareSetOption = typer.Option(None, "--set", help="Compare the runs made with these overrides (as run-ablation's).")
CompareEpochsOption = typer.Option(None, "--epochs", help="Compare the runs made with --epochs N.")
RopeOption = typer.Option(
    0.5, "--rope", help="Region of practical equivalence, +/- percentage points of the metric (default 0.5)."
)


def echo(message: str) -> None:
    out.print(message, markup=False)


def note(message: str) -> None:
    """A line for the reader that is not the command's output: stderr, so `> file` holds only
    the output (stdout flushed first: the two stay in order where they share a pipe)."""
    out.file.flush()
    err.print(message, markup=False)


def warn(message: str) -> None:
    err.print(f"warning: {message}", markup=False)


def context(tracking_uri: Optional[str] = None):
    from harness.context import Context
    from harness.entries.registry import find_root

    return Context(find_root(), tracking_uri, echo=echo)


def scope(
    dataset: str,
    subset: Optional[int],
    metric: str,
    *,
    sets: Optional[list[str]] = None,
    epochs: Optional[int] = None,
    any_settings: bool = False,
    rope: float = 0.5,
):
    """The runs a verb reads: one dataset (and subset) on one metric, made with the settings
    that --set and --epochs give; none given: the verb's default (Scope). --any-settings
    takes every settings, so it stands alone."""
    from harness.errors import HarnessError
    from harness.results.compare import Scope

    if any_settings and (sets or epochs is not None):
        raise HarnessError(
            "--any-settings shows the latest run of each entry whatever its settings: drop --set/--epochs"
        )
    if not (math.isfinite(rope) and 0 <= rope <= 50):
        raise HarnessError(f"--rope {rope}: give percentage points from 0 to 50 (0.5 is half a point of accuracy)")
    given = overrides(sets, None, epochs) if (sets or epochs is not None) else None
    settings = tuple(given) if given is not None else None
    return Scope(dataset, subset, metric, settings, any_settings, rope=rope / 100)


def overrides(sets: Optional[list[str]], dataset: Optional[str] = None, epochs: Optional[int] = None) -> list[str]:
    from harness.entries.overrides import command_overrides

    return command_overrides(sets, dataset, epochs)
