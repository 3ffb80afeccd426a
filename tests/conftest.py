"""Fixtures: a clean environment for every test, a throw-away project (a copy of ablations/),
the CLI run in this process, and fresh PostgreSQL databases. Helpers live in helpers.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.helpers import LOCAL_POSTGRES, OUTSIDE_ENV, REPO


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
