"""A store that fails under the harness: damaged, read-only, full. One clear line, exit 1 or
2, no traceback, and no run left RUNNING where the store can still be written. The faults
are real file-system states (a tmpfs of a few kilobytes, a read-only bind mount), made where
this user may mount (root, as in CI), else with file permissions."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

from harness.tracking.uri import default_tracking_uri
from tests.helpers import run_cli

pytestmark = pytest.mark.slow  # trains models or starts processes: the full tier only

TINY = ["--epochs", "1", "--set", "data.subset=200"]


def one_line_failure(result, codes=(1, 2), *fragments):
    output = result.stdout + result.stderr
    assert result.returncode in codes, output
    assert "Traceback" not in output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


@pytest.fixture
def finished_project(project):
    """A project whose store holds one finished run."""
    result = run_cli(["run-ablation", "same_padding", *TINY], project)
    assert result.returncode == 0, result.stderr
    return project


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_store_is_one_line(finished_project, damage):
    db = finished_project / "mlruns" / "mlflow.db"
    if damage == "garbage":
        db.write_bytes(b"this is not a database" * 100)
    else:
        db.write_bytes(db.read_bytes()[:8192])
    for verb in (["run-ablation", "adam", *TINY], ["compare"], ["report"]):
        line = one_line_failure(run_cli(verb, finished_project), (1, 2))
        assert "mlflow.db" in line or "tracking store" in line, line


@pytest.fixture
def read_only(finished_project):
    mlruns = finished_project / "mlruns"
    if can_mount():
        subprocess.run(["mount", "--bind", str(mlruns), str(mlruns)], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mlruns)], check=True)
        yield finished_project
        subprocess.run(["umount", "--lazy", str(mlruns)], check=True)  # this process may still hold the store open
    else:
        os.chmod(mlruns, 0o555)
        os.chmod(mlruns / "mlflow.db", 0o444)
        yield finished_project
        os.chmod(mlruns, 0o755)
        os.chmod(mlruns / "mlflow.db", 0o644)


def test_a_read_only_store_is_one_line_and_keeps_its_runs(read_only):
    line = one_line_failure(run_cli(["run-ablation", "adam", *TINY], read_only), (1, 2))
    assert "mlflow.db" in line or "read-only" in line or "readonly" in line, line
    client = MlflowClient(default_tracking_uri(read_only))
    runs = client.search_runs([client.get_experiment_by_name("digits (subset 200)").experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED"]


@pytest.mark.skipif(not can_mount(), reason="a full file system needs a tmpfs mount (root, as in CI)")
def test_a_full_disk_while_writing_artifacts_fails_the_run_in_one_line(project):
    artifacts = project / "mlruns" / "artifacts"
    artifacts.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(artifacts)], check=True)
    try:
        result = run_cli(["run-ablation", "same_padding", *TINY], project)
    finally:
        subprocess.run(["umount", str(artifacts)], check=True)
    one_line_failure(result, (1,), "No space left on device")
    client = MlflowClient(default_tracking_uri(project))
    (run,) = client.search_runs([client.get_experiment_by_name("digits (subset 200)").experiment_id])
    assert run.info.status == "FAILED"
    assert "No space left on device" in run.data.tags["harness.reason"]
    assert not any(Path(project / "mlruns" / "backups").glob("*/.state.npz.*.tmp"))
