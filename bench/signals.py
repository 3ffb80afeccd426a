"""Signals at random moments: SIGINT and SIGTERM sent to `harness run-ablation` and
`harness tune`, in float32 and in mixed_bfloat16, and what each left behind.

    python bench/signals.py [--signals 100] [--workers 2] [--seed 0]

Half the signals are SIGINT, half SIGTERM, spread evenly over the two commands, the two
precisions and five moments: while loading (before training), in the first epoch, in a
later epoch, while evaluating, while writing the model and artifacts. Each lands a random
delay after the line that opens its moment. Counted: exits other than 130/143 (and among
them aborts: a process killed by a signal of its own, such as SIGABRT), runs left RUNNING in
MLflow, trials left RUNNING in Optuna, tracebacks in the output, and the seconds from each
signal to the exit, by moment. A command that finished
before its signal landed is counted apart (it is not a test of the signal).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, scratch_project  # noqa: E402

ENTRY = """\
extends: baseline
description: Small, a few seconds an epoch on digits, so signals land in every phase.
model: {blocks: [{filters: 16, convs: 2}, {filters: 32, convs: 1}], padding: same, batch_norm: true}
optimizer: {name: adam, learning_rate: 0.01}
training: {epochs: 4, batch_size: 16}
search:
  optimizer.learning_rate: {float: [1.0e-3, 0.05], log: true}
"""
# moment -> (the line that opens it, the longest random delay after it, in seconds)
MOMENTS = {
    "loading": ("", 4.0),  # from 0.1 s after the start: imports, data, model build
    "first epoch": ("-> MLflow run", 1.5),
    "later epoch": ("epoch 2/", 0.8),
    "evaluating": ("evaluating", 0.4),
    "saving": ("evaluating", 0.6),
}
EXPECTED = {signal.SIGINT: 130, signal.SIGTERM: 143}


def command(kind: str, precision: str, index: int) -> list[str]:
    common = ["--set", f"training.precision={precision}"]
    if kind == "run-ablation":
        return ["run-ablation", "noisy", *common, "--set", f"training.seed={index}"]
    return ["tune", "noisy", "--trials", "1", "--pruner", "none", *common]


def one(project: Path, kind: str, precision: str, signum: int, moment: str, rng: random.Random, index: int) -> dict:
    marker, spread = MOMENTS[moment]
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", *command(kind, precision, index)],
        cwd=project,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: list[str] = []
    # In its first ~35 ms a command is the Python interpreter starting up, before any of the
    # harness's code runs (harness/entry.py installs the handlers first thing).
    delay = rng.uniform(0.1 if not marker else 0.0, spread)
    if marker:
        for line in process.stdout:
            lines.append(line)
            if marker in line:
                break
    sent: list[float] = []

    def send() -> None:
        if process.poll() is None:
            sent.append(time.monotonic())
            process.send_signal(signum)

    timer = threading.Timer(delay, send)
    timer.start()
    rest, _ = process.communicate(timeout=600)
    ended = time.monotonic()
    timer.join()
    output = "".join(lines) + rest
    return {
        "kind": kind,
        "precision": precision,
        "signal": signum,
        "moment": moment,
        "rc": process.returncode,
        "output": output,
        "landed": "stopping at the next safe point" in output or process.returncode != 0,
        "seconds to exit": ended - sent[0] if sent else None,
    }


def leftovers(project: Path) -> tuple[int, int]:
    """(MLflow runs RUNNING, Optuna trials RUNNING) in a project, read as a later command would."""
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    from mlflow import MlflowClient

    from harness.tracking.uri import default_tracking_uri

    client = MlflowClient(default_tracking_uri(project))
    running = 0
    for experiment in client.search_experiments():
        running += len(client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'"))
    import optuna

    from harness.paths import journal_path

    trials = 0
    journal = journal_path(project)
    if journal.is_file():
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage = JournalStorage(JournalFileBackend(str(journal)))
        for summary in optuna.get_all_study_summaries(storage):
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
            trials += sum(t.state == optuna.trial.TrialState.RUNNING for t in study.trials)
    return running, trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--signals", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2, help="commands at once, each in its own project")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    plan = []
    for i in range(args.signals):
        signum = signal.SIGINT if i % 2 == 0 else signal.SIGTERM
        kind = ("run-ablation", "tune")[(i // 2) % 2]
        precision = ("float32", "mixed_bfloat16")[(i // 4) % 2]
        moment = list(MOMENTS)[(i // 8) % len(MOMENTS)]
        plan.append((i, kind, precision, signum, moment))
    rng.shuffle(plan)
    projects = [scratch_project() for _ in range(args.workers)]
    for project in projects:
        (project / "ablations" / "noisy.yaml").write_text(ENTRY)
    results: list[dict] = []
    lock = threading.Lock()
    queue = list(plan)
    started = time.time()

    def worker(project: Path) -> None:
        local = random.Random(rng.random())
        while True:
            with lock:
                if not queue:
                    return
                i, kind, precision, signum, moment = queue.pop()
            result = one(project, kind, precision, signum, moment, local, i)
            result["leftover"] = leftovers(project)
            with lock:
                results.append(result)
                done = len(results)
            mark = "ok" if result["rc"] == EXPECTED[signum] else f"rc {result['rc']}"
            print(
                f"{done:3d}/{len(plan)} {kind:12s} {precision:14s} {signal.Signals(signum).name:7s} "
                f"{moment:12s} {mark}  left RUNNING: runs {result['leftover'][0]}, trials {result['leftover'][1]}",
                flush=True,
            )

    threads = [threading.Thread(target=worker, args=(p,)) for p in projects]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    landed = [r for r in results if r["landed"]]
    early = len(results) - len(landed)
    wrong = [r for r in landed if r["rc"] != EXPECTED[r["signal"]]]
    aborts = [r for r in landed if r["rc"] < 0 or r["rc"] == 134 or "free(): " in r["output"]]
    tracebacks = sum("Traceback" in r["output"] for r in results)
    running_runs, running_trials = (sum(v) for v in zip(*(leftovers(p) for p in projects)))
    print(f"\nmachine: {machine()}")
    print(
        f"{len(results)} signals ({Counter(signal.Signals(r['signal']).name for r in results)}) in "
        f"{time.time() - started:.0f} s; by command {dict(Counter(r['kind'] for r in results))}, "
        f"by precision {dict(Counter(r['precision'] for r in results))}, "
        f"by moment {dict(Counter(r['moment'] for r in results))}"
    )
    print(
        f"landed {len(landed)} (finished before the signal: {early}); aborts {len(aborts)}; "
        f"exits other than 130/143 {len(wrong)}; runs left RUNNING {running_runs}; trials left RUNNING "
        f"{running_trials}; tracebacks {tracebacks}"
    )
    for moment in MOMENTS:
        waits = sorted(r["seconds to exit"] for r in landed if r["moment"] == moment and r["seconds to exit"])
        if waits:
            print(
                f"seconds from the signal to the exit, {moment}: median {statistics.median(waits):.1f}, "
                f"max {waits[-1]:.1f} (n={len(waits)})"
            )
    for r in wrong[:5]:
        print(
            f"--- {r['kind']} {r['precision']} {signal.Signals(r['signal']).name} {r['moment']} rc {r['rc']}\n"
            f"{r['output'][-1200:]}"
        )


if __name__ == "__main__":
    main()
