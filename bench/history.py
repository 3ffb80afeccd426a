"""The report's whole history through `harness study`, with 1 worker and with 2, timed.

    python bench/history.py [--data /tmp/cifar] [--subset 1000] [--epochs 1] [--seeds 2]
                            [--until final] [--workers 1,2]

Each worker count gets a fresh project (the repository's entries, an empty store) and runs
`harness study UNTIL --seeds S --epochs E --dataset folder:DATA --set data.subset=N
--workers W` as a user would, a new process from start to exit: every step of the history
over the seeds, then compare, select (one test, @champion) and the report. Prints each wall
time and the ratio. Every cell is independent, so with one GPU per worker the training part
divides by the number of workers; on a machine whose cores one worker already fills, more
workers share the same cores and are not faster.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import DEFAULT_DATA, data_overrides, machine, scratch_project  # noqa: E402


def run_study(args, workers: int) -> tuple[float, str]:
    """Wall seconds of one `harness study` from an empty store, and its last lines."""
    project = scratch_project()
    sets = [part for item in data_overrides(args.data, args.subset) for part in ("--set", item)]
    command = [
        sys.executable,
        "-m",
        "harness",
        "study",
        args.until,
        "--seeds",
        str(args.seeds),
        "--epochs",
        str(args.epochs),
        *sets,
        "--workers",
        str(workers),
    ]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=project, capture_output=True, text=True, env={**os.environ, "COLUMNS": "100"})
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"study with {workers} worker(s) failed ({done.returncode}):\n{done.stderr[-3000:]}")
    (project / "study.log").write_text(done.stdout + done.stderr)
    return seconds, f"{project}/study.log"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA, help="CIFAR-10 image folder, or digits")
    parser.add_argument("--subset", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--until", default="final")
    parser.add_argument("--workers", default="1,2", help="worker counts to time, in this order")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    print(f"machine: {machine()}")
    from harness.entries.registry import Registry

    steps = len(Registry(Path(__file__).resolve().parents[1]).history(args.until))
    print(
        f"study {args.until}: {steps} steps x {args.seeds} seeds = {steps * args.seeds} cells, "
        f"{args.epochs} epoch(s), data {args.data} subset {args.subset}",
        flush=True,
    )
    times = {}
    for workers in counts:
        times[workers], log = run_study(args, workers)
        print(f"{workers} worker(s): {times[workers]:.1f} s wall (log: {log})", flush=True)
    base = times[counts[0]]
    for workers in counts[1:]:
        print(f"ratio {workers} workers / {counts[0]}: {times[workers] / base:.3f}")
    print(
        f"cores here: {os.cpu_count()}; with one GPU per worker the training of the cells divides by "
        "the workers (ratio about 1/N plus the fixed select/report tail)"
    )


if __name__ == "__main__":
    main()
