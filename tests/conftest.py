"""Shared fixtures: a throw-away project (a copy of ablations/ and an empty mlruns/), the
real MLflow and Optuna stores inside it, and the CLI run as a user runs it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENTRIES = sorted(p.stem for p in (REPO / "ablations").glob("*.yaml"))

# One epoch on a few hundred digits: enough to exercise every part, fast on 2 cores.
TINY = ["data.subset=240", "training.epochs=1"]
LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"  # every session's and CI's machine runs it
OUTSIDE_ENV = ("MLFLOW_TRACKING_URI", "HARNESS_ROOT", "MLFLOW_REGISTRY_URI")  # would point runs elsewhere


@pytest.fixture(autouse=True, scope="session")
def _no_tracking_uri_from_outside():
    """Module-scoped fixtures run before the per-test clean-up below: start clean."""
    for name in OUTSIDE_ENV:
        os.environ.pop(name, None)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path_factory):
    for name in OUTSIDE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def project(tmp_path) -> Path:
    """A project folder holding a copy of the repository's ablations/."""
    shutil.copytree(REPO / "ablations", tmp_path / "ablations")
    return tmp_path


def run_cli(args, cwd, env=None, timeout=600, **kwargs) -> subprocess.CompletedProcess:
    """`harness ARGS` in a subprocess, as a user would type it."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HARNESS_ROOT")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


@pytest.fixture
def harness_cli(monkeypatch, capsys):
    """`harness ARGS` run in this process (harness.cli.run, the console script minus its
    process exit): the same parsing, checks and messages, without a new interpreter, for
    the many tables of bad input. Tests of what only a process shows (signals, imports,
    exit statuses as a shell sees them) use run_cli."""
    from harness.cli.main import run

    def call(args, project) -> subprocess.CompletedProcess:
        monkeypatch.setenv("HARNESS_ROOT", str(project))
        capsys.readouterr()
        code = run(list(args))
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)

    return call


def start_cli(args, cwd, stderr=subprocess.STDOUT) -> subprocess.Popen:
    """`harness ARGS` started in the background, its lines readable as they are printed
    (stdout, and stderr unless given apart), Ctrl-C deliverable (interruptible)."""
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        text=True,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # see each line as it is printed
        preexec_fn=interruptible,
    )


def store_runs(project: Path, experiment: str):
    """(MlflowClient, every run of `experiment` in the project's store; [] if there is none)."""
    from mlflow import MlflowClient

    from harness.tracking.uri import default_tracking_uri

    client = MlflowClient(default_tracking_uri(project))
    found = client.get_experiment_by_name(experiment)
    return client, (client.search_runs([found.experiment_id]) if found else [])


def interruptible() -> None:
    """preexec_fn for a child a test will Ctrl-C: a shell that runs the suite in the background
    (job control off) starts it with SIGINT ignored, and Python keeps an inherited SIG_IGN."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def quiet(project: Path):
    """A Context for in-process calls: the project, its local store, no printing."""
    from harness.context import Context

    return Context(project, echo=lambda _: None, verbose=0)


def write_entry(project: Path, name: str, text: str) -> Path:
    path = project / "ablations" / f"{name}.yaml"
    path.write_text(text)
    return path


def _fresh_database():
    """A new database on the PostgreSQL of HARNESS_TEST_POSTGRES_URL (default: the local
    server this project's machines run, LOCAL_POSTGRES), dropped afterwards. Skipped, saying
    why, only where no PostgreSQL answers."""
    base = os.environ.get("HARNESS_TEST_POSTGRES_URL") or LOCAL_POSTGRES
    import sqlalchemy

    name = f"harness_test_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    except sqlalchemy.exc.OperationalError as exc:
        admin.dispose()
        pytest.skip(f"no PostgreSQL answers at {base} (set HARNESS_TEST_POSTGRES_URL): {str(exc).splitlines()[0]}")
    yield base.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture
def postgres_url():
    yield from _fresh_database()


@pytest.fixture
def postgres_url_2():
    yield from _fresh_database()
