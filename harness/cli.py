"""The `harness` command: verbs only. Parse, call, print; no training or tracking logic.

Heavy imports (TensorFlow, MLflow, Optuna) happen inside the verbs that need them, so
`harness --help`, `list` and `show` answer at once.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from .errors import HarnessError
from .interrupts import GUARD
from .quiet import load_keras

try:  # typer 0.29 raises its own copy of click's exceptions
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # older typer: click's own
    from click.exceptions import ClickException, NoArgsIsHelpError

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
TrackingOption = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: SQLite in mlruns/).")


def _echo(message: str) -> None:
    out.print(message, markup=False)


def _root():
    from .ablation import find_root

    return find_root()


def _registry():
    from .ablation import Registry

    return Registry(_root())


def _overrides(sets: Optional[List[str]], dataset: Optional[str] = None, epochs: Optional[int] = None) -> list[str]:
    from .yamlio import yaml_scalar

    overrides = list(sets or [])
    if dataset is not None:  # taken literally: `folder:/x/a #2` is a path, not a YAML comment
        overrides.insert(0, f"data.source={yaml_scalar(dataset)}")
    if epochs is not None:
        overrides.insert(0, f"training.epochs={epochs}")
    return overrides


MAX_SEEDS = 1000  # a group of more runs than this is a typo


def parse_seeds(text: Optional[str]) -> Optional[list[int]]:
    """`3` -> [0, 1, 2]; `0,1,7` -> [0, 1, 7]. Seeds are 0 .. 2**32-1, none repeated."""
    from .spec import SEED_MAX

    if text is None:
        return None
    try:
        if "," in text:
            seeds = [int(part) for part in text.split(",") if part.strip()]
        else:
            count = int(text)
            if not 1 <= count <= MAX_SEEDS:
                raise ValueError
            seeds = list(range(count))
    except ValueError:
        raise HarnessError(f"--seeds {text!r}: expected a count from 1 to {MAX_SEEDS} (3) or a list (0,1,7)") from None
    if not seeds or len(seeds) > MAX_SEEDS:
        raise HarnessError(f"--seeds {text!r}: give 1 to {MAX_SEEDS} seeds")
    bad = [s for s in seeds if not 0 <= s <= SEED_MAX]
    if bad:
        raise HarnessError(f"--seeds {text!r}: seed {bad[0]} is outside 0..{SEED_MAX}")
    if len(set(seeds)) != len(seeds):
        raise HarnessError(f"--seeds {text!r}: a seed is repeated")
    return seeds


def _check_tracking(uri: Optional[str]) -> None:
    """A bad --tracking-uri fails before anything slow is imported."""
    if uri is not None:
        from .tracking import check_uri

        check_uri(uri)


# --------------------------------------------------------------------------- entries


@app.command("list")
def list_entries() -> None:
    """The entries as a lineage tree, with their descriptions."""
    registry = _registry()
    children = registry.children(warn=lambda message: err.print(f"warning: {message}", markup=False))
    tree = Tree(f"ablations/ ({len(registry.names())} entries)")

    def add(node, name):
        entry = registry.entry(name)
        branch = node.add(f"[bold]{name}[/bold]  {_first_sentence(entry.description)}")
        for child in children.get(name, []):
            add(branch, child)

    for root_name in children.get(None, []):
        add(tree, root_name)
    out.print(tree)


def _first_sentence(text: str, limit: int = 110) -> str:
    sentence = text.split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= limit else sentence[: limit - 3] + "..."


@app.command()
def show(
    name: str = typer.Argument(..., help="Entry name, e.g. focal_loss."),
    diff: bool = typer.Option(False, "--diff", help="Only what NAME changes against its parent."),
    sets: Optional[List[str]] = SetOption,
) -> None:
    """The resolved spec, with the file each value came from."""
    from .ablation import diff_against_parent

    registry = _registry()
    resolved = registry.resolve(name, _overrides(sets))
    entry = resolved.entry
    out.print(f"[bold]{name}[/bold]  ({' > '.join(resolved.chain)})  spec {resolved.fingerprint()}")
    if entry.description:
        out.print(entry.description)
    if diff:
        changes = diff_against_parent(registry, resolved).changes
        table = Table("key", f"{resolved.parent or 'defaults'}", name, "from", box=None)
        for change in changes:
            table.add_row(change.key, _value(change.old), _value(change.new), resolved.source_of(change.key))
        out.print(table if changes else "no change against its parent")
        return
    table = Table("key", "value", "from", box=None)
    for key, value in resolved.flat().items():
        table.add_row(key, _value(value), resolved.source_of(key))
    out.print(table)
    claims = {k: v for k, v in entry.report.model_dump().items() if v is not None}
    if claims:
        out.print("report says: " + ", ".join(f"{k} {v}" for k, v in claims.items()))
    if entry.search:
        out.print("search: " + ", ".join(f"{k} {v}" for k, v in entry.search.items()))


def _value(value) -> str:
    from .ablation import _ABSENT

    if value is _ABSENT:
        return "(none)"
    return "null" if value is None else str(value)


# --------------------------------------------------------------------------- runs


@app.command("run-ablation")
def run_ablation(
    name: str = typer.Argument(..., help="Entry name, e.g. focal_loss."),
    dataset: Optional[str] = DatasetOption,
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Sets training.epochs."),
    sets: Optional[List[str]] = SetOption,
    seeds: Optional[str] = typer.Option(None, "--seeds", help="A group run over seeds: a count (3) or a list (0,1,7)."),
    force: bool = typer.Option(False, "--force", help="Train even if an identical finished run exists."),
    tracking_uri: Optional[str] = TrackingOption,
) -> None:
    """Train an entry and record it as an MLflow run (or a group of seed runs)."""
    seed_list = parse_seeds(seeds)
    overrides = _overrides(sets, dataset, epochs)
    _registry().resolve(name, overrides)  # bad input fails here, before the slow imports
    _check_tracking(tracking_uri)
    load_keras()
    from . import runner

    runner.run_ablation(
        _root(),
        name,
        overrides,
        seeds=seed_list,
        force=force,
        tracking_uri=tracking_uri,
        echo=_echo,
    )


# --------------------------------------------------------------------------- comparing

SourceOption = typer.Option("digits", "--dataset", help="Dataset whose runs to use: digits | cifar10 | folder:DIR.")
SubsetOption = typer.Option(None, "--subset", help="Use the runs made with data.subset=N.")
MetricOption = typer.Option("best_val_accuracy", "--metric", help="Final metric: best_val_accuracy, val_macro_f1, best_val_loss ...")
FORMATS = ("table", "markdown", "csv", "html")


@app.command()
def compare(
    names: Optional[List[str]] = typer.Argument(None, help="Entries to compare (default: all with runs)."),
    chain: Optional[str] = typer.Option(None, "--chain", help="Compare the whole history of this entry."),
    dataset: str = SourceOption,
    subset: Optional[int] = SubsetOption,
    metric: str = MetricOption,
    fmt: str = typer.Option("table", "--format", help="table | markdown | csv | html."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Write the table to FILE."),
    chart_file: Optional[Path] = typer.Option(None, "--chart", help="History chart PNG (default: mlruns/reports/)."),
    tracking_uri: Optional[str] = TrackingOption,
) -> None:
    """The history as a table: metric mean +/- std (n), delta vs parent, Welch's p-value."""
    load_keras()
    from . import compare as comparing

    if fmt not in FORMATS:
        raise HarnessError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    if names and chain:
        raise HarnessError("give entry names or --chain NAME, not both")
    root = _root()
    if out_file is not None and not out_file.parent.is_dir():
        raise HarnessError(f"--out {out_file}: folder {out_file.parent} does not exist")
    table, _ = comparing.compare_table(root, names, chain, dataset, subset, metric, tracking_uri)
    if table.empty:
        raise HarnessError(f"no finished runs of these entries on {dataset!r}")
    text = comparing.render(table, metric, fmt)
    if out_file:
        out_file.write_text(text)
        _echo(f"wrote {out_file}")
    else:
        _echo(text)
    chart_path = chart_file or root / "mlruns" / "reports" / f"compare-{_slug(dataset, subset)}.png"
    comparing.chart(table, metric, chart_path)
    _echo("runs used (latest finished per entry): " + "; ".join(f"{r.entry} {r.runs}" for r in table.itertuples()))
    _echo(f"chart: {chart_path}")


def _slug(dataset: str, subset: Optional[int]) -> str:
    text = dataset + (f"-subset{subset}" if subset else "")
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


@app.command()
def ablate(
    name: str = typer.Argument(..., help="The entry to take apart, e.g. final."),
    leave_one_out: bool = typer.Option(False, "--leave-one-out", help="Revert one step at a time (required)."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Seeds per variant: a count (3) or a list (0,1,7)."),
    dataset: Optional[str] = DatasetOption,
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Sets training.epochs."),
    sets: Optional[List[str]] = SetOption,
    metric: str = MetricOption,
    fmt: str = typer.Option("table", "--format", help="table | markdown | csv | html."),
    force: bool = typer.Option(False, "--force", help="Train even where identical finished runs exist."),
    tracking_uri: Optional[str] = TrackingOption,
) -> None:
    """What each step contributes to NAME: NAME against NAME without that one step."""
    if not leave_one_out:
        raise HarnessError("ablate needs --leave-one-out (the only mode so far)")
    if fmt not in FORMATS:
        raise HarnessError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    seed_list = parse_seeds(seeds)
    overrides = _overrides(sets, dataset, epochs)
    _registry().resolve(name, overrides)
    _check_tracking(tracking_uri)
    load_keras()
    from .ablate import run_leave_one_out
    from .compare import metric_key

    table = run_leave_one_out(_root(), name, overrides, seed_list, force, tracking_uri, _echo, metric)
    if fmt == "csv":
        _echo(table.to_csv(index=False))
        return
    key = metric_key(metric)
    shown = table.copy()
    shown[key] = [("" if m is None or m != m else f"{m:.4f} +/- {s:.4f} ({n})") for m, s, n in zip(table[key], table["std"], table["n"])]
    shown["contribution"] = table["contribution"].map(lambda v: "" if v is None or v != v else f"{v:+.4f}")
    shown["p (Welch)"] = table["p_value"].map(lambda v: "" if v is None or v != v else f"{v:.3g}")
    shown = shown[["variant", key, "contribution", "p (Welch)", "note"]]
    if fmt == "markdown":
        from .compare import _markdown

        _echo(_markdown(shown))
    elif fmt == "html":
        _echo(shown.to_html(index=False))
    else:
        _echo(shown.to_string(index=False))


@app.command("select")
def select_final(
    names: Optional[List[str]] = typer.Argument(None, help="Candidate entries (default: all with runs)."),
    metric: str = MetricOption,
    dataset: str = SourceOption,
    subset: Optional[int] = SubsetOption,
    tracking_uri: Optional[str] = TrackingOption,
) -> None:
    """Pick the best entry on validation, test its model once, register it as @champion."""
    load_keras()
    from .selection import select

    select(_root(), names, metric, dataset, subset, tracking_uri, _echo)


@app.command()
def report(
    fmt: str = typer.Option("md", "--format", help="md | html."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Default: mlruns/reports/report.md|html."),
    dataset: str = SourceOption,
    subset: Optional[int] = SubsetOption,
    metric: str = MetricOption,
    tracking_uri: Optional[str] = TrackingOption,
) -> None:
    """The study as one Markdown or HTML document: history, curves, tuning, final model."""
    load_keras()
    from .report import build_report

    root = _root()
    target = out_file or root / "mlruns" / "reports" / f"report.{fmt}"
    path = build_report(root, target, fmt, dataset, subset, metric, tracking_uri)
    _echo(f"wrote {path}")


# --------------------------------------------------------------------------- tuning

StorageOption = typer.Option(None, "--storage", help="Optuna RDB URL (default: journal file in mlruns/optuna/).")


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
    sets: Optional[List[str]] = SetOption,
    save_as: Optional[str] = typer.Option(None, "--save-as", help="Write the best trial as ablations/NEW.yaml."),
    tracking_uri: Optional[str] = TrackingOption,
) -> None:
    """An Optuna study over the entry's search block; each trial an MLflow child run."""
    from .search_space import parse_search

    if pruner not in ("median", "hyperband", "none"):
        raise HarnessError(f"--pruner {pruner!r}: use median, hyperband or none")
    if metric not in ("val_accuracy", "val_loss"):
        raise HarnessError(f"--metric {metric!r}: use val_accuracy or val_loss")
    overrides = _overrides(sets, dataset, epochs)
    registry = _registry()
    resolved = registry.resolve(name, overrides)
    if not parse_search(resolved, registry):
        raise HarnessError(f"{registry.rel(resolved.entry.path)}: no search block to tune")
    if save_as is not None:
        registry.path_of(save_as)
    _check_tracking(tracking_uri)
    load_keras()
    from . import tune as tuning

    tuning.tune(_root(), name, trials, overrides, timeout=timeout, storage_url=storage, pruner=pruner,
                metric=metric, tracking_uri=tracking_uri, echo=_echo)
    if save_as:
        path = tuning.write_best_entry(_root(), name, save_as, overrides, storage)
        _echo(f"wrote {path}")


@app.command("save-best")
def save_best(
    name: str = typer.Argument(..., help="The tuned entry."),
    new_name: str = typer.Argument(..., help="Name of the new entry (ablations/NEW.yaml)."),
    dataset: Optional[str] = DatasetOption,
    epochs: Optional[int] = typer.Option(None, "--epochs", help="As given to tune."),
    sets: Optional[List[str]] = SetOption,
    storage: Optional[str] = StorageOption,
    force: bool = typer.Option(False, "--force", help="Overwrite an existing entry file."),
) -> None:
    """Write a study's best trial out as a new entry that extends NAME."""
    from . import tune as tuning

    path = tuning.write_best_entry(_root(), name, new_name, _overrides(sets, dataset, epochs), storage, force)
    _echo(f"wrote {path}")


@app.command()
def dashboard(
    storage: Optional[str] = StorageOption,
    port: int = typer.Option(8080, "--port"),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address; 127.0.0.1 keeps it on this machine."),
) -> None:
    """optuna-dashboard over the studies' storage, on 127.0.0.1."""
    import shutil
    import subprocess

    from .paths import journal_path

    target = storage or str(journal_path(_root()))
    if storage is None and not Path(target).is_file():
        raise HarnessError(f"no studies yet: {target} does not exist (harness tune NAME --trials N)")
    executable = shutil.which("optuna-dashboard") or str(Path(sys.executable).with_name("optuna-dashboard"))
    _echo(f"optuna-dashboard on http://{host}:{port} over {target} (Ctrl-C stops it)")
    raise typer.Exit(subprocess.call([executable, target, "--host", host, "--port", str(port)]))


@app.command()
def ui(
    port: int = typer.Option(5000, "--port"),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address; 127.0.0.1 keeps it on this machine."),
    tracking_uri: Optional[str] = TrackingOption,
) -> None:
    """The MLflow UI over this store, on 127.0.0.1."""
    import subprocess

    load_keras()
    from .tracking import Store

    store = Store(_root(), tracking_uri)
    experiments = [e for e in store.experiments() if e.name != "Default"]
    base = f"http://{host}:{port}"
    out.print(f"MLflow UI on {base} (Ctrl-C stops it). Runs tables, by dataset:")
    for experiment in experiments:
        out.print(f"  {experiment.name}: {base}/#/experiments/{experiment.experiment_id}/runs")
    if not experiments:
        out.print("  (no runs yet: harness run-ablation NAME)")
    out.print("To compare two entries: tick their runs in the runs table, then Compare.")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store.uri, "--host", host, "--port", str(port)]
    raise typer.Exit(subprocess.call(command))


# --------------------------------------------------------------------------- entry point


def _exit_now(message: Optional[str], code: int) -> None:
    """Exit without interpreter finalisation. After a signal, TensorFlow's threads may still
    be winding down, and tearing the interpreter down under them has aborted the process;
    after a command, finalisation resets the signal handlers to the defaults, so a Ctrl-C
    landing in the second it takes would kill the process by the signal. Everything the
    command wrote is committed by then (MLflow calls are synchronous)."""
    import os

    if message:
        err.print(message, markup=False)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: Optional[list[str]] = None) -> None:
    """Run the CLI: bad input -> one line and exit 2; a failed run -> one line and exit 1;
    Ctrl-C -> exit 130, SIGTERM -> 143, the run ended KILLED."""
    import os

    GUARD.install()
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="harness", standalone_mode=False)
    except HarnessError as exc:
        err.print(f"error: {exc}", markup=False)
        code = exc.exit_code
    except NoArgsIsHelpError as exc:
        out.print(exc.format_message(), markup=False)
        code = 2
    except ClickException as exc:
        verb = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "harness"
        err.print(f"error: {' '.join(exc.format_message().split())} (see {verb} --help)", markup=False)
        code = 2
    except KeyboardInterrupt:  # typer hands Ctrl-C back as exit 130; this is one raised outside it
        code = 130
    except BrokenPipeError:  # `harness compare | head`
        os._exit(0)
    except Exception as exc:  # noqa: BLE001 - a defect or an environment failure: still one line
        if os.environ.get("HARNESS_DEBUG"):
            raise
        from .tracking import describe

        err.print(f"error: {describe(exc)} (HARNESS_DEBUG=1 shows the traceback)", markup=False)
        code = 1
    if GUARD.requested or code == 130:
        terminated = GUARD.signum == signal.SIGTERM
        _exit_now("terminated" if terminated else "interrupted", 143 if terminated else 130)
    _exit_now(None, code if isinstance(code, int) else 0)
