"""Scaling out on existing engines: an MLflow tracking server on PostgreSQL and Optuna RDB
storage on PostgreSQL, two tune workers pointing at both; and Optuna's heartbeat failing
and retrying the trial of a killed worker."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest
from mlflow import MlflowClient

from harness.tuning import best_entry
from tests.helpers import SLOW, TUNABLE, run_cli, wait_for, write_entry

pytestmark = pytest.mark.slow  # trains models or starts processes: the full tier only


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tracking_server(postgres_url, tmp_path):
    """`mlflow server` on 127.0.0.1 over a fresh PostgreSQL database."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            postgres_url,
            "--artifacts-destination",
            (tmp_path / "artifacts").as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            if server.poll() is not None:
                raise AssertionError(server.stdout.read()) from None
            time.sleep(1)
    else:
        server.kill()
        raise AssertionError("mlflow server did not start in 120 s")
    yield url
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


def test_two_workers_against_a_tracking_server_and_postgresql(project, tracking_server, postgres_url_2):
    write_entry(project, "tunable", TUNABLE)
    command = [
        sys.executable,
        "-m",
        "harness",
        "tune",
        "tunable",
        "--trials",
        "2",
        "--pruner",
        "none",
        "--set",
        "data.subset=300",
        "--tracking-uri",
        tracking_server,
        "--storage",
        postgres_url_2,
    ]
    workers = [
        subprocess.Popen(command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for worker in workers:
        out, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err
        assert "database is locked" not in out + err
    study, _ = best_entry.load_study(project, "tunable", ["data.subset=300"], postgres_url_2)
    assert [t.state for t in study.trials].count(optuna.trial.TrialState.COMPLETE) == 4
    client = MlflowClient(tracking_server)
    experiment = client.get_experiment_by_name("digits (subset 300)")
    runs = client.search_runs([experiment.experiment_id])
    studies = [r for r in runs if r.data.tags.get("harness.kind") == "study"]
    trials = [r for r in runs if r.data.tags.get("harness.kind") == "trial"]
    assert len(studies) == 1
    assert sorted(int(r.data.tags["harness.trial"]) for r in trials) == [0, 1, 2, 3]
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {studies[0].info.run_id}
    assert {r.info.status for r in trials} == {"FINISHED"}
    artifacts = {a.path for a in client.list_artifacts(trials[0].info.run_id)}
    assert "learning_curves.png" in artifacts


def test_heartbeat_fails_and_retries_a_killed_workers_trial_on_postgresql(project, postgres_url):
    write_entry(project, "slow", SLOW)
    env = {"HARNESS_HEARTBEAT_SECONDS": "1", "HARNESS_GRACE_SECONDS": "3"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness",
            "tune",
            "slow",
            "--trials",
            "2",
            "--pruner",
            "none",
            "--storage",
            postgres_url,
        ],
        cwd=project,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**__import__("os").environ, **env, "PYTHONUNBUFFERED": "1"},
    )
    wait_for(process, "epoch 2/8")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    time.sleep(5)  # past the grace period: the trial's heartbeat is stale
    result = run_cli(["tune", "slow", "--trials", "2", "--pruner", "none", "--storage", postgres_url], project, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    study, _ = best_entry.load_study(project, "slow", [], postgres_url)
    states = [t.state for t in study.trials]
    assert states[0] == optuna.trial.TrialState.FAIL
    assert states.count(optuna.trial.TrialState.COMPLETE) == 2
    assert any(t.system_attrs.get("failed_trial") == 0 for t in study.trials[1:])
