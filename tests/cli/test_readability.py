"""What a user reads: one metric ranks every kind of run, names and step tags explain
themselves, every command that writes a run prints its link, seed groups reuse finished
runs, tune says where it is, the web UIs start and stop cleanly, `list` fits a terminal."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time

import optuna
import psutil
import pytest
from mlflow import MlflowClient

from harness.tracking.uri import default_tracking_uri
from harness.tuning import best_entry
from tests.helpers import TUNABLE, run_cli, start_cli, write_entry

SUBSET = ["--set", "data.subset=300"]
LINK = "?workflowType=machine_learning"


def client_and_runs(project):
    client = MlflowClient(default_tracking_uri(project))
    experiment = client.get_experiment_by_name("digits (subset 300)")
    runs = client.search_runs([experiment.experiment_id], order_by=["metrics.best_val_accuracy DESC"])
    return client, experiment, runs


@pytest.mark.slow
def test_one_column_ranks_runs_groups_and_studies_and_names_explain_them(project):
    write_entry(project, "tunable", TUNABLE)
    single = run_cli(["run-ablation", "tunable", "--epochs", "2", *SUBSET, "--set", "training.seed=5"], project)
    assert single.returncode == 0, single.stderr
    group = run_cli(["run-ablation", "tunable", "--epochs", "2", *SUBSET, "--seeds", "2"], project)
    assert group.returncode == 0, group.stderr
    tuned = run_cli(["tune", "tunable", "--trials", "1", "--epochs", "2", "--pruner", "none", *SUBSET], project)
    assert tuned.returncode == 0, tuned.stderr
    assert "cuda" not in tuned.stderr.lower()  # TensorFlow's start-up lines stay unseen
    client, experiment, runs = client_and_runs(project)
    names = {r.info.run_name: r.data.tags["harness.kind"] for r in runs}
    assert names == {
        "tunable": "run",
        "tunable x2 seeds": "group",
        "tunable seed 0": "seed",
        "tunable seed 1": "seed",
        "tunable study": "study",
        "tunable trial 0": "trial",
    }
    assert all("best_val_accuracy" in r.data.metrics for r in runs)  # so one sorted column ranks them all
    values = [r.data.metrics["best_val_accuracy"] for r in runs]
    assert values == sorted(values, reverse=True)
    assert {r.data.tags["harness.step"] for r in runs} == {"02 tunable"}
    (grouped,) = [r for r in runs if r.data.tags["harness.kind"] == "group"]
    assert "harness.seed" not in grouped.data.tags
    for output, kind, label in ((single, "run", "run"), (group, "group", "group run"), (tuned, "study", "study run")):
        (run,) = [r for r in runs if r.data.tags["harness.kind"] == kind and r.info.run_id in output.stdout]
        lines = output.stdout.strip().splitlines()
        link = f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}{LINK}"
        after = lines[lines.index(f"{label}: {link}") + 1 :]  # the link, then only what to try next
        if kind == "study":
            assert after == []
        else:
            assert after[0].startswith("next: harness run-ablation tunable --seeds auto"), after
            assert " ".join(" ".join(after).split()).endswith("then harness compare)"), after
            assert all(len(line) <= 80 for line in after), after
    assert "trial 1 of 1 (Optuna trial #0): optimizer.learning_rate=0.01" in tuned.stdout
    study, _ = best_entry.load_study(project, "tunable", ["training.epochs=2", "data.subset=300"], None)
    assert study.metric_names == ["val_accuracy"]


@pytest.mark.slow
def test_a_seed_group_reuses_a_finished_run_of_the_same_seed(project):
    write_entry(project, "tunable", TUNABLE)
    first = run_cli(["run-ablation", "tunable", "--epochs", "2", *SUBSET], project)
    assert first.returncode == 0, first.stderr
    group = run_cli(["run-ablation", "tunable", "--epochs", "2", *SUBSET, "--seeds", "2"], project)
    assert group.returncode == 0, group.stderr
    assert group.stdout.count("training tunable") == 1 and "already done" in group.stdout
    client, _, runs = client_and_runs(project)
    (single,) = [r for r in runs if r.data.tags["harness.kind"] == "run"]
    (grouped,) = [r for r in runs if r.data.tags["harness.kind"] == "group"]
    members = grouped.data.tags["harness.members"].split(",")
    assert members[0] == single.info.run_id and len(members) == 2
    forced = run_cli(["run-ablation", "tunable", "--epochs", "2", *SUBSET, "--seeds", "2", "--force"], project)
    assert forced.stdout.count("training tunable") == 2


@pytest.mark.slow
def test_save_best_rounds_and_prints_no_tensorflow_noise(project):
    write_entry(project, "tunable", TUNABLE)
    assert (
        run_cli(["tune", "tunable", "--trials", "2", "--epochs", "1", "--pruner", "none", *SUBSET], project).returncode
        == 0
    )
    study, _ = best_entry.load_study(project, "tunable", ["training.epochs=1", "data.subset=300"], None)
    study.enqueue_trial({"optimizer.learning_rate": 0.0123456789})
    assert (
        run_cli(["tune", "tunable", "--trials", "1", "--epochs", "1", "--pruner", "none", *SUBSET], project).returncode
        == 0
    )
    saved = run_cli(["save-best", "tunable", "tunable_best", "--epochs", "1", *SUBSET], project)
    assert saved.returncode == 0 and saved.stderr == "", saved.stderr
    import yaml

    written = yaml.safe_load((project / "ablations" / "tunable_best.yaml").read_text())
    best = study.best_params["optimizer.learning_rate"]
    assert written["optimizer"]["learning_rate"] == float(f"{best:.4g}")  # 4 significant digits


VERBS = {
    "list": [],
    "show": ["final"],
    "run-ablation": ["final"],
    "ablate": ["final", "--leave-one-out"],
    "compare": [],
    "select": [],
    "report": [],
    "tune": ["final", "--trials", "1"],
    "save-best": ["final", "x"],
    "dashboard": [],
    "ui": [],
}
BAD_VALUES = {
    "run-ablation": ["--epochs", "many"],
    "ablate": ["--epochs", "x"],
    "compare": ["--subset", "x"],
    "select": ["--subset", "x"],
    "report": ["--subset", "x"],
    "tune": ["--timeout", "soon"],
    "dashboard": ["--port", "x"],
    "ui": ["--port", "x"],
}


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_answers_usage_errors_in_one_line(project, verb, harness_cli):
    for args in ([verb, *VERBS[verb], "--bogus"], [verb, *VERBS[verb], *BAD_VALUES.get(verb, ["--bogus2"])]):
        result = harness_cli(args, project)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
        assert f"harness {verb} --help" in lines[0]
    needs_name = [v for v, args in VERBS.items() if args and not args[0].startswith("-")]
    if verb in needs_name:
        result = harness_cli([verb], project)
        assert result.returncode == 2 and "Missing argument" in result.stderr


def test_list_is_a_numbered_history_that_fits_80_columns(project):
    result = run_cli(["list"], project, env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()[1:]
    assert max(len(line) for line in lines) <= 80 and len(lines) == 18
    assert lines[0].split()[:2] == ["1", "baseline"] and lines[14].split()[:2] == ["15", "final"]
    assert [line.split()[:2] for line in lines[15:]] == [["16", "resnet50"], ["16", "squeezenet"], ["16", "vgg16"]]
    assert all(line.startswith("  16 ") for line in lines[15:])  # a branch, indented under final


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("verb", ["ui", "dashboard"])
def test_a_busy_port_is_one_line_before_any_link(project, verb):
    (project / "mlruns" / "optuna").mkdir(parents=True)
    (project / "mlruns" / "optuna" / "journal.log").write_text("")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli([verb, "--port", str(port)], project)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == result.stderr.strip().splitlines()[0] and f"port {port}" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "verb, sig, code",
    [
        ("ui", signal.SIGTERM, 143),
        ("ui", signal.SIGINT, 130),
        ("ui", signal.SIGKILL, -9),
        ("dashboard", signal.SIGINT, 130),
        ("dashboard", signal.SIGKILL, -9),
    ],
)
def test_a_server_says_ready_once_it_answers_and_leaves_nothing_when_stopped(project, verb, sig, code):
    """Its links print once the server answers; Ctrl-C and SIGTERM stop it; kill -9 leaves
    it to the watchdog, which kills the server's process group once the harness is gone."""
    trained = run_cli(["run-ablation", "same_padding", "--epochs", "1", *SUBSET], project)
    assert trained.returncode == 0, trained.stderr
    # The harness's own line per epoch, not Keras's; then what gives the step a verdict.
    assert re.search(r"^epoch 1/1  loss \d\.\d{4} acc \d\.\d{4}  val loss \d\.\d{4} acc", trained.stdout, re.M)
    assert "ms/step" not in trained.stdout and "Epoch 1/1" not in trained.stdout
    hint = "next: harness run-ablation same_padding --seeds auto --set training.epochs=1 --set data.subset=300"
    assert hint in " ".join(trained.stdout.replace(" \\\n", " ").split())  # at 80 columns, continued by a backslash
    assert all(len(line) <= 80 for line in trained.stdout.splitlines() if not line.startswith("run: http"))
    (project / "mlruns" / "optuna").mkdir(parents=True, exist_ok=True)
    (project / "mlruns" / "optuna" / "journal.log").touch()
    port = free_port()
    process = start_cli([verb, "--port", str(port)], project, stderr=subprocess.PIPE)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("ready after"):
            break
    assert _answers(port), "ready was said before the server answered"
    tree = psutil.Process(process.pid).children(recursive=True)  # the server, its workers, the watchdog
    assert tree
    if verb == "ui":
        assert f"127.0.0.1:{port}/#/experiments/" in "".join(lines) and "viewStateShareKey=" in "".join(lines)
    process.send_signal(sig)
    assert process.wait(timeout=60) == code
    if sig == signal.SIGINT:
        assert "Ctrl-C: stopping the server" in process.stderr.read()  # not training's "next safe point"
    if sig != signal.SIGKILL:  # stopped through the harness: when it exits, nothing of it is left
        left = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not left, [(p.pid, p.cmdline()) for p in left]
    # The watchdog looks twice a second. A dying process's command line empties before its
    # sockets close, so wait for both: no process named for the port, and nothing answering.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (_survivors(port) or _answers(port)):
        time.sleep(0.2)
    assert not _answers(port), "the server still answers"
    assert not _survivors(port)


def _answers(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _survivors(port: int) -> list[str]:
    """Processes whose command line holds --port PORT (pgrep's -- : its pattern starts with --)."""
    found = subprocess.run(["pgrep", "-f", "--", f"--port {port}"], capture_output=True, text=True)
    assert found.returncode in (0, 1), found.stderr  # 1: none; anything else: pgrep itself failed
    return found.stdout.split()


def test_optuna_is_quiet_about_failed_trials(project, capfd):
    from harness.tuning.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.INFO)  # as loud as Optuna gets, whatever ran before
    storage, _ = open_storage(project, None)  # every way of the harness into Optuna passes here
    study = optuna.create_study(study_name="quiet", storage=storage)
    capfd.readouterr()
    study.optimize(lambda trial: 1 / 0, n_trials=2, catch=(ZeroDivisionError,))
    assert len(study.trials) == 2 and all(t.state.name == "FAIL" for t in study.trials)
    assert capfd.readouterr().err == ""  # no "Trial 0 failed with parameters ..." and no traceback
