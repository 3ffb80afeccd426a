"""The two web UIs over the project's stores: MLflow's UI and optuna-dashboard, each run as a
child process bound to 127.0.0.1 by default."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

from . import paths
from .context import Context
from .errors import HarnessError


def run_ui(ctx: Context, host: str, port: int) -> int:
    """Print each dataset's runs table, then serve MLflow's UI until it stops."""
    store = ctx.store
    experiments = [e for e in store.experiments() if e.name != "Default"]
    base = f"http://{host}:{port}"
    ctx.echo(f"MLflow UI on {base} (Ctrl-C stops it). Runs tables, by dataset:")
    for experiment in experiments:
        ctx.echo(f"  {experiment.name}: {base}/#/experiments/{experiment.experiment_id}/runs")
    if not experiments:
        ctx.echo("  (no runs yet: harness run-ablation NAME)")
    ctx.echo("To compare two entries: tick their runs in the runs table, then Compare.")
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        store.uri,
        "--host",
        host,
        "--port",
        str(port),
    ]
    return subprocess.call(command)


def run_dashboard(ctx: Context, storage: Optional[str], host: str, port: int) -> int:
    """Serve optuna-dashboard over the studies' storage until it stops."""
    target = storage or str(paths.journal_path(ctx.root))
    if storage is not None:
        from .tune_storage import check_url

        check_url(storage)
    elif not Path(target).is_file():
        raise HarnessError(f"no studies yet: {target} does not exist (harness tune NAME --trials N)")
    executable = shutil.which("optuna-dashboard") or str(Path(sys.executable).with_name("optuna-dashboard"))
    ctx.echo(f"optuna-dashboard on http://{host}:{port} over {target} (Ctrl-C stops it)")
    return subprocess.call([executable, target, "--host", host, "--port", str(port)])
