"""`harness study`: six tiny cells (three entries x two seeds) shared by two local workers
through Optuna's journal file and through PostgreSQL, each landing as exactly one FINISHED
run under its entry's seed group; a worker killed mid-cell has its cell retried and landed
once; the same command again trains nothing; bad input is one line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter

import optuna
import pytest
from mlflow import MlflowClient

from harness.tracking.uri import default_tracking_uri
from tests.helpers import GEO_CHAIN, REPO, run_cli, write_entry

pytestmark = pytest.mark.slow  # trains models or starts processes: the full tier only

CELLS = {(entry, seed) for entry in ("geo", "geo_same", "geo_deep") for seed in (0, 1)}


@pytest.fixture
def chain(project):
    for name, text in GEO_CHAIN.items():
        write_entry(project, name, text)
    return project


def landed(project) -> tuple[Counter, list, MlflowClient]:
    """(FINISHED seed runs per (entry, seed) under the study's groups, all runs, client)."""
    client = MlflowClient(default_tracking_uri(project))
    experiment = client.get_experiment_by_name("digits (subset 300)")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    tags = lambda run, key: run.data.tags.get(key)  # noqa: E731
    groups = {r.info.run_id for r in runs if tags(r, "harness.kind") == "group" and tags(r, "harness.study")}
    seeds = [r for r in runs if tags(r, "harness.kind") == "seed" and tags(r, "mlflow.parentRunId") in groups]
    finished = Counter(
        (r.data.tags["harness.entry"], int(r.data.tags["harness.seed"])) for r in seeds if r.info.status == "FINISHED"
    )
    return finished, runs, client


def assert_study_complete(project, output: str) -> None:
    finished, runs, client = landed(project)
    assert finished == Counter({cell: 1 for cell in CELLS}), (finished, output[-3000:])
    assert "RUNNING" not in {r.info.status for r in runs}
    assert [r.info.run_name for r in runs if not r.inputs.dataset_inputs] == []  # the Datasets column is full
    (history,) = [r for r in runs if r.data.tags.get("harness.kind") == "history"]
    assert history.info.status == "FINISHED" and history.info.run_name == "geo_deep study"
    artifacts = {a.path for a in client.list_artifacts(history.info.run_id)}
    assert {"waterfall.png", "history.csv", "study-geo_deep.html"} <= artifacts
    groups = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == history.info.run_id]
    assert sorted(g.info.run_name for g in groups) == ["geo x2 seeds", "geo_deep x2 seeds", "geo_same x2 seeds"]
    assert {g.info.status for g in groups} == {"FINISHED"}
    champion = client.get_model_version_by_alias("harness-digits", "candidate")  # a subset: never @champion
    assert client.get_run(champion.run_id).data.tags["harness.kind"] == "final"
    assert "verdict" in output and "change [95% interval]" in output and "best_val_accuracy" in output
    assert "ms/step" not in output  # a line per cell, no Keras progress bars or epoch lines


@pytest.mark.parametrize("storage", ["journal", "postgresql"])
def test_two_local_workers_land_every_cell_once(chain, storage, request):
    extra = []
    if storage == "postgresql":
        extra = ["--storage", request.getfixturevalue("postgres_url")]
    # One "GPU" for two workers: on a CPU machine the pin changes nothing but what is said.
    env = {"CUDA_VISIBLE_DEVICES": "0"}
    result = run_cli(["study", "geo_deep", "--seeds", "2", "--workers", "2", *extra], chain, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "[worker 1] cell " in result.stdout and "[worker 2] cell " in result.stdout
    assert result.stdout.count("on GPU 0 (shared by 2: 0.45 of its memory)") == 2
    assert_study_complete(chain, result.stdout)
    again = run_cli(["study", "geo_deep", "--seeds", "2", *extra], chain)
    assert again.returncode == 0 and not re.search(r"^cell ", again.stdout, re.M)  # nothing left to train
    assert "did the final steps" in again.stdout
    dry = run_cli(["study", "geo_deep", "--seeds", "2", "--dry-run", *extra], chain)
    assert dry.stdout.count("done (best_val_accuracy") == 6


@pytest.mark.parametrize("storage", ["journal", "postgresql"])
def test_a_killed_workers_cell_is_retried_and_lands_once(chain, storage, request):
    extra, env = [], {}
    if storage == "postgresql":
        extra = ["--storage", request.getfixturevalue("postgres_url")]
        env = {"HARNESS_HEARTBEAT_SECONDS": "1", "HARNESS_GRACE_SECONDS": "3"}
    slow = GEO_CHAIN["geo"].replace("epochs: 2", "epochs: 6").replace("batch_size: 64", "batch_size: 8")
    write_entry(chain, "geo", slow)
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "study", "geo_deep", "--seeds", "2", *extra],
        cwd=chain,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **env},
    )
    for _ in range(1500):  # a study prints a line per cell, not per epoch: the backup says one is done
        if list((chain / "mlruns" / "backups").glob("*/state.npz")) or process.poll() is not None:
            break
        time.sleep(0.2)
    assert process.poll() is None, "the study ended before any cell backed up an epoch"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    time.sleep(5)  # PostgreSQL: past the grace period, the killed cell's heartbeat is stale
    result = run_cli(["study", "geo_deep", "--seeds", "2", *extra], chain, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "resumed from its backup at epoch" in result.stdout  # the retried cell went on from its backup
    assert_study_complete(chain, result.stdout)


def test_bad_study_input_is_one_line_and_writes_nothing(chain, harness_cli):
    cases = [
        (["study", "nowhere"], "unknown entry 'nowhere'"),
        (["study", "geo_deep", "--seeds", "0,0"], "--seeds"),
        (["study", "geo_deep", "--workers", "0"], "--workers 0"),
        (["study", "geo_deep", "--storage", "postgresql://nobody@127.0.0.1:1/x"], "--storage"),
    ]
    for args, fragment in cases:
        result = harness_cli(args, chain)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1 and fragment in lines[0], (args, result.stderr)
    assert not (chain / "mlruns" / "mlflow.db").exists() and not (chain / "mlruns" / "optuna").exists()


def test_a_worker_with_other_entries_is_refused(chain):
    first = run_cli(["study", "geo_deep", "--seeds", "1", "--dry-run"], chain)
    assert first.returncode == 0 and "(not started)" in first.stdout
    started = run_cli(["study", "geo", "--seeds", "1"], chain)
    assert started.returncode == 0, started.stderr
    trials = _trials(chain)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]  # the cell, then the final steps
    write_entry(chain, "geo", GEO_CHAIN["geo"].replace("filters: 4", "filters: 6"))  # another commit's entry
    refused = run_cli(["study", "geo", "--seeds", "1"], chain)
    assert refused.returncode == 2 and "run every worker from the same commit" in refused.stderr
    assert _trials(chain) == trials  # the refused worker claimed nothing


def _trials(project) -> list:
    storage = _journal(project)
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage).trials


def _journal(project):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(project / "mlruns" / "optuna" / "journal.log")))


def test_the_dry_run_accounts_for_every_step_of_the_report(project):
    """On the repository's own entries: every step is a cell, a variant, or says why not."""
    import shutil

    shutil.rmtree(project / "ablations")
    shutil.copytree(REPO / "ablations", project / "ablations")
    dry = run_cli(["study", "final", "--seeds", "1", "--leave-one-out", "--dry-run"], project)
    assert dry.returncode == 0, dry.stderr
    rows = [line.strip() for line in dry.stdout.splitlines()[1:]]
    history = [r.split(" seed ")[0] for r in rows if " without " not in r]
    assert history[0] == "baseline" and history[-1] == "final" and len(history) == 15
    variants = {r.split(" seed ")[0].split(" not a cell")[0].strip() for r in rows if " without " in r}
    assert len(variants) == 14  # one per step after the root
    assert any(r.startswith("final without same_padding") and "cannot build: valid padding" in r for r in rows)
    assert any(r.startswith("final without dropout") and "overwritten by final" in r for r in rows)
    assert not (project / "mlruns" / "mlflow.db").exists()
