"""The store's URI is built from the project's path with the escaping SQLAlchemy needs: a
project in a folder whose name holds '?', '%xx', '#', spaces or unicode keeps its store
inside itself, and nothing is made beside it."""

from __future__ import annotations

import shutil

import pytest

from harness.tracking.uri import default_tracking_uri, sqlite_path
from tests.helpers import REPO, run_cli

pytestmark = pytest.mark.slow  # trains models or starts processes: the full tier only

FOLDERS = ["q?x=1", "pct%2e%2e", "a #b é"]


@pytest.mark.parametrize("name", FOLDERS)
def test_a_project_in_an_odd_folder_keeps_its_store_inside(tmp_path, name):
    parent = tmp_path / "parent"
    project = parent / name
    shutil.copytree(REPO / "ablations", project / "ablations")
    assert sqlite_path(default_tracking_uri(project)) == str((project / "mlruns" / "mlflow.db").resolve())
    result = run_cli(["run-ablation", "baseline", "--epochs", "1", "--set", "data.subset=240"], project, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (project / "mlruns" / "mlflow.db").is_file()
    assert sorted(p.name for p in parent.iterdir()) == [name]  # no store, no folder beside the project
    table = run_cli(["compare", "--subset", "240", "--format", "csv"], project)
    assert table.returncode == 0 and "baseline" in table.stdout, table.stderr
