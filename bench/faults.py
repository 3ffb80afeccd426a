"""One scripted run of the faults a long study meets, with counts: faults injected and
survived, bad inputs tried and tracebacks seen, runs and trials expected and found.

    python bench/faults.py [--random-inputs 300]

Everything runs in a scratch project through the `harness` command, on digits.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import string
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, scratch_project  # noqa: E402
from harness.quiet import load_keras  # noqa: E402

SLOW = """\
extends: baseline
description: Small, slow enough to be killed mid-run.
model: {blocks: [{filters: 16, convs: 2}], padding: same}
optimizer: {name: adam, learning_rate: 0.01}
training: {epochs: 8, batch_size: 8}
search:
  optimizer.learning_rate: {float: [1.0e-3, 0.05], log: true}
"""


def harness(project, *args, **kwargs):
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=project, capture_output=True, text=True, **kwargs)


def start(project, *args):
    return subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=project, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"},  # each epoch line as printed
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # Ctrl-C-able when run in the background


def until(process, marker):
    for line in process.stdout:
        if marker in line:
            return
    raise RuntimeError(f"never saw {marker}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--random-inputs", type=int, default=300)
    args = parser.parse_args()
    load_keras()
    from mlflow import MlflowClient

    from harness import tune
    from harness.ablation import Registry
    from harness.errors import HarnessError
    from harness.tracking import default_tracking_uri

    project = scratch_project()
    (project / "ablations" / "slow.yaml").write_text(SLOW)
    survived = {}

    p = start(project, "run-ablation", "slow")
    until(p, "Epoch 4/8")
    p.send_signal(signal.SIGKILL)
    p.wait()
    rerun = harness(project, "run-ablation", "slow")
    client = MlflowClient(default_tracking_uri(project))
    experiment = client.get_experiment_by_name("digits")
    (run,) = client.search_runs([experiment.experiment_id])
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss"))
    survived["kill -9 mid-run, plain re-run resumes"] = rerun.returncode == 0 and run.info.status == "FINISHED" and steps == list(range(1, 9))

    for sig, code, label in ((signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")):
        p = start(project, "run-ablation", "slow", "--force", "--epochs", "30")
        until(p, "Epoch 2/30")
        p.send_signal(sig)
        p.wait()
        latest = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
        survived[f"{label} mid-run ends KILLED, exit {code}"] = p.returncode == code and latest.info.status == "KILLED"

    nan = harness(project, "run-ablation", "baseline", "--epochs", "3", "--set", "optimizer.learning_rate=1e30")
    latest = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
    survived["NaN loss ends FAILED with the epoch"] = (nan.returncode == 1 and latest.info.status == "FAILED"
                                                     and "loss became NaN at epoch" in latest.data.tags.get("harness.reason", ""))

    p = start(project, "tune", "slow", "--trials", "2", "--pruner", "none")
    until(p, "Epoch 3/8")
    p.send_signal(signal.SIGKILL)
    p.wait()
    again = harness(project, "tune", "slow", "--trials", "2", "--pruner", "none")
    study, _ = tune.load_study(project, "slow", [], None)
    complete = sum(t.state.name == "COMPLETE" for t in study.trials)
    survived["kill -9 of a tune worker: trial failed, retried, study complete"] = again.returncode == 0 and complete == 2

    skip = harness(project, "run-ablation", "slow")
    survived["re-run of a finished spec is skipped"] = skip.returncode == 0 and "already done" in skip.stdout

    # Concurrency: two run-ablations and two tune workers at once.
    before = len(client.search_runs([experiment.experiment_id]))
    pair = [start(project, "run-ablation", "slow", "--epochs", "2", "--set", f"training.seed={s}") for s in (11, 12)]
    outs = [q.communicate()[0] for q in pair]
    workers = [start(project, "tune", "slow", "--trials", "2", "--pruner", "none", "--epochs", "2") for _ in range(2)]
    outs += [q.communicate()[0] for q in workers]
    locked = sum("database is locked" in o for o in outs)
    study2, _ = tune.load_study(project, "slow", ["training.epochs=2"], None)
    runs_after = client.search_runs([experiment.experiment_id])
    trial_runs = [r for r in runs_after if r.data.tags.get("harness.study") == study2.study_name and r.data.tags.get("harness.kind") == "trial"]
    expected_runs = before + 2 + 1 + 4  # two run-ablations, one study run, four trials

    # Bad input: command lines and random YAML.
    bad_lines = [["run-ablation", "nope"], ["run-ablation", "../x"], ["run-ablation", "slow", "--set", "x"],
                 ["run-ablation", "slow", "--set", "training.epoch=2"], ["run-ablation", "slow", "--dataset", "mnist"],
                 ["tune", "slow", "--trials", "1", "--pruner", "sometimes"], ["show", "slow", "--set", "model.blocks.9.filters=1"],
                 ["compare", "--metric", "nope"], ["run-ablation", "slow", "--seeds", "0,0"]]
    tracebacks = 0
    exits = []
    for line in bad_lines:
        result = harness(project, *line)
        tracebacks += "Traceback" in result.stderr + result.stdout
        exits.append(result.returncode)
    rng = random.Random(0)
    registry_errors = 0
    pieces = ["extends: baseline", "model: {blocks: [{filters: x}]}", "training: {epochs: -1}", "optimizer: adam",
              "search: {loss.gamma: {float: [5, 1]}}", "extends: [a]", "model:\n  padding: diagonal", "{{{", "- 1",
              "training: {batch_size: 1e3}", "data: {source: folder:/nope}", "loss: {name: focal, gamma: 1e-4}"]
    for i in range(args.random_inputs):
        text = "\n".join(rng.sample(pieces, rng.randint(1, 4)))
        if rng.random() < 0.3:
            text = "".join(rng.choice(string.printable) for _ in range(rng.randint(0, 60)))
        (project / "ablations" / "fuzz.yaml").write_text(text)
        try:
            Registry(project).resolve("fuzz")
        except HarnessError:
            registry_errors += 1
        except Exception:  # noqa: BLE001 - exactly what this counts
            tracebacks += 1
    print(f"machine: {machine()}")
    print(f"faults injected {len(survived)}, survived {sum(survived.values())}:")
    for label, ok in survived.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {label}")
    print(f"concurrency: runs expected {expected_runs}, found {len(runs_after)}; "
          f"trials expected 4, in Optuna {len(study2.trials)}, as MLflow child runs {len(trial_runs)}; "
          f"'database is locked' seen {locked} times")
    print(f"bad input: {len(bad_lines)} command lines (exit statuses {sorted(set(exits))}) and {args.random_inputs} "
          f"random YAML documents ({registry_errors} one-line errors, the rest valid); tracebacks seen: {tracebacks}")


if __name__ == "__main__":
    main()
