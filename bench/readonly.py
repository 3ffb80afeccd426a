"""How fast the commands that only read answer, on a store of about 100 runs.

    python bench/readonly.py [--runs 100] [--repeats 3]

The store: one real run-ablation and one real one-trial tune (so `run-ablation` finds its
run already done and `save-best` has a study), then synthetic runs written through the
harness's own Store with the tags and metrics real runs carry (seed groups of three and
single runs over the report's history), up to --runs in all. Each command is timed as a
user meets it, a new process from start to exit (the servers: until they print their
links), the median of --repeats; each lists which slow imports it made (TensorFlow, Keras,
MLflow, scikit-learn, Optuna: -X importtime).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, scratch_project  # noqa: E402

TINY = ["--epochs", "1", "--set", "data.subset=300"]
HEAVY = ("tensorflow", "keras", "mlflow", "sklearn", "optuna")  # the slow imports, looked for in each command


def harness(project: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def synthetic_runs(project: Path, count: int) -> int:
    """Runs as the harness writes them, without training: groups of three seeds and singles."""
    from harness.entries import settings
    from harness.entries.registry import Registry
    from harness.runs.planning import step_label
    from harness.tracking.names import Tag
    from harness.tracking.store import Store

    store = Store(project)
    experiment_id = store.ensure_experiment("digits (subset 300)")
    registry, rng, made = Registry(project), random.Random(0), 0
    history = [entry.name for entry in registry.chain("final")]  # the report's steps, root first
    while made < count:
        for name in history:
            resolved = registry.resolve(name, ["data.subset=300", "training.epochs=1"])
            tags = {
                Tag.ENTRY: name,
                Tag.STEP: step_label(resolved),
                Tag.SETTINGS: "training.epochs=1",
                Tag.SETTINGS_FINGERPRINT: settings.fingerprint(["training.epochs=1"]),
                Tag.SPEC_FINGERPRINT: resolved.fingerprint(),
            }
            metrics = lambda: {
                "best_val_accuracy": rng.uniform(0.1, 0.9),
                "best_val_loss": rng.uniform(0.5, 2),  # noqa: E731
                "train_val_gap": rng.uniform(-0.1, 0.2),
                "epochs_run": 1,
                "train_seconds": 2.0,
                "param_count": 10_000,
            }
            group = store.client.create_run(
                experiment_id, run_name=f"{name} x3 seeds", tags={**tags, Tag.KIND: "group", Tag.SEEDS: "0,1,2"}
            )
            members = []
            for seed in range(3):
                child = store.client.create_run(
                    experiment_id,
                    run_name=f"{name} seed {seed}",
                    tags={**tags, Tag.KIND: "seed", "mlflow.parentRunId": group.info.run_id},
                )
                store.log(child.info.run_id, params=resolved.flat(), metrics=metrics())
                store.client.set_terminated(child.info.run_id, "FINISHED")
                members.append(child.info.run_id)
            store.log(group.info.run_id, metrics=metrics(), tags={Tag.MEMBERS: ",".join(members)})
            store.client.set_terminated(group.info.run_id, "FINISHED")
            made += 4
            if made >= count:
                break
    return made


def timed(project: Path, args: list[str], repeats: int) -> tuple[float, list[str]]:
    """(median seconds, which of HEAVY it imported) of a command run `repeats` times."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = harness(project, *args)
        seconds.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise SystemExit(f"harness {' '.join(args)} failed: {result.stderr[-500:]}")
    probe = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "harness", *args], cwd=project, capture_output=True, text=True
    )
    lines = [line for line in probe.stderr.splitlines() if line.startswith("import time:")]
    imported = {line.rsplit("|", 1)[-1].strip() for line in lines}
    heavy = [m for m in HEAVY if m in imported]
    return statistics.median(seconds), heavy


def timed_server(project: Path, args: list[str], repeats: int) -> tuple[float, float, int]:
    """Median seconds until a server command says `ready` (it answers; its links follow),
    median seconds from Ctrl-C to its exit, and how many processes were left on its port."""
    ready, stop, left = [], [], 0
    port = args[args.index("--port") + 1]
    for _ in range(repeats):
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "harness", *args],
            cwd=project,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for line in process.stdout:
            if line.startswith("ready after"):
                break
        ready.append(time.perf_counter() - started)
        stopped = time.perf_counter()
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        stop.append(time.perf_counter() - stopped)
        found = subprocess.run(["pgrep", "-f", "--", f"--port {port}"], capture_output=True, text=True)
        left += len(found.stdout.split())
    return statistics.median(ready), statistics.median(stop), left


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    project = scratch_project()
    for real in (
        ["run-ablation", "same_padding", *TINY],
        ["tune", "baseline", "--trials", "1", "--pruner", "none", *TINY],
    ):
        result = harness(project, *real)
        if result.returncode != 0:
            raise SystemExit(result.stderr[-1000:])
    made = synthetic_runs(project, args.runs - 4)
    commands = {
        "list": ["list"],
        "show final": ["show", "final"],
        "compare (table)": ["compare", "--subset", "300"],
        "compare --format csv": ["compare", "--subset", "300", "--format", "csv"],
        "report --format html": ["report", "--subset", "300", "--format", "html"],
        "save-best": ["save-best", "baseline", "baseline_best", *TINY, "--force"],
        "run-ablation (already done)": ["run-ablation", "same_padding", *TINY],
    }
    print(f"machine: {machine()}")
    print(f"store: {made + 4} runs ({made} synthetic, 4 real) in one experiment; median of {args.repeats} runs each\n")
    for label, command in commands.items():
        seconds, heavy = timed(project, command, args.repeats)
        print(f"{label:30s} {seconds:5.2f} s   imports: {', '.join(heavy) or 'none of them'}", flush=True)
    for label, command in (("ui", ["ui", "--port", "5099"]), ("dashboard", ["dashboard", "--port", "8099"])):
        ready, stop, left = timed_server(project, command, args.repeats)
        print(f"{label + ' (until ready)':30s} {ready:5.2f} s   Ctrl-C to exit {stop:4.2f} s, processes left {left}")


if __name__ == "__main__":
    main()
