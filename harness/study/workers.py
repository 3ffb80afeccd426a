"""Running a study: this process as its only worker, or N worker processes on this machine
(each pinned to one GPU where there are GPUs), or a dry run that only says what is done.
Workers on other machines join by running the same command with the same --storage."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Optional

from harness.context import Context
from harness.errors import HarnessError
from harness.interrupts import GUARD
from harness.study.cells import StudyPlan
from harness.study.queue import Progress, all_done, claim_finalizing, open_study, status_rows, work

MAX_WORKERS = 64  # one machine's processes; more machines join with --storage


@dataclass(frozen=True)
class StudyOptions:
    """storage_url: None for the journal file (one machine), an RDB URL across machines;
    workers: processes on this machine; worker: this process is one of them (it trains and
    reports cells, the process that started it does the final steps); name: another study
    of the same command; dry_run: print the cells and which are done, write nothing."""

    storage_url: Optional[str] = None
    workers: int = 1
    worker: bool = False
    name: str = ""
    dry_run: bool = False

    def check(self) -> None:
        if not 1 <= self.workers <= MAX_WORKERS:
            raise HarnessError(f"--workers {self.workers}: use 1 to {MAX_WORKERS}")


def run_study(ctx: Context, plan_: StudyPlan, options: StudyOptions) -> None:
    """The whole study: cells claimed and trained, then (once, by whoever finds them all
    ended) the tables, the selection and the report."""
    options.check()
    if options.dry_run:
        return dry_run(ctx, plan_, options)
    study, storage, _, first = open_study(ctx, plan_, options.storage_url, options.name)
    if options.workers > 1:
        _run_workers(ctx, plan_, options)
    else:
        work(ctx, study, storage, plan_.overrides)
    if options.worker:
        return None
    if not all_done(study):
        ctx.echo(f"{Progress(len(study.user_attrs['cells'])).line(study)}; the same command continues the study")
        return None
    if claim_finalizing(ctx, study, storage):
        from harness.study.final import finalize

        finalize(ctx, study, plan_, first)
    else:
        ctx.echo(f"every cell has ended; {study.user_attrs.get('finalized_by')} did the final steps")
    return None


def dry_run(ctx: Context, plan_: StudyPlan, options: StudyOptions) -> None:
    """Print every cell and whether it is done, without creating or changing anything."""
    import optuna

    from harness import paths
    from harness.entries.registry import Registry
    from harness.runs.planning import plan
    from harness.study.queue import buildable_cells

    registry = Registry(ctx.root)
    first = plan(registry, plan_.target, list(plan_.overrides))
    cells, unbuildable = buildable_cells(registry, plan_, first.data.input_shape)
    study = None
    name = plan_.name(first.experiment) + (f"/{options.name}" if options.name else "")
    if options.storage_url or paths.journal_path(ctx.root).is_file():
        from harness.tuning.storage import open_storage

        storage, _ = open_storage(ctx.root, options.storage_url)
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            study = None
    ctx.echo(f"study {name}: {len(cells)} cells" + ("" if study else " (not started)"))
    for label, state in status_rows(study, cells):
        ctx.echo(f"  {label:40s} {state}")
    for group, reason in unbuildable.items():
        ctx.echo(f"  {group:40s} not a cell: {reason}")
    if plan_.leave_one_out:
        from harness.study.leave_one_out import leave_one_out

        for variant in leave_one_out(registry, plan_.target, list(plan_.overrides)):
            if not variant.runnable:
                ctx.echo(f"  {plan_.target + ' without ' + variant.step:40s} not a cell: {variant.describe()}")


def visible_gpus() -> list[str]:
    """The GPUs a worker may be pinned to: CUDA_VISIBLE_DEVICES if set, else nvidia-smi's list."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    if not shutil.which("nvidia-smi"):
        return []
    found = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return [str(i) for i, line in enumerate(found.stdout.splitlines()) if line.startswith("GPU ")]


def worker_command(plan_: StudyPlan, options: StudyOptions, tracking_uri: Optional[str]) -> list[str]:
    """The command line of one local worker: the same study, one process, --worker."""
    command = [sys.executable, "-m", "harness", "study", plan_.target, "--seeds", ",".join(map(str, plan_.seeds))]
    for override in plan_.overrides:
        command += ["--set", override]
    if plan_.leave_one_out:
        command.append("--leave-one-out")
    for flag, value in (
        ("--storage", options.storage_url),
        ("--name", options.name or None),
        ("--tracking-uri", tracking_uri),
    ):
        if value:
            command += [flag, value]
    return [*command, "--worker"]


def _run_workers(ctx: Context, plan_: StudyPlan, options: StudyOptions) -> None:
    """Start options.workers worker processes and relay their lines until they end; a
    signal is passed on to them (each ends its cell KILLED and queues it again)."""
    gpus = visible_gpus()
    command = worker_command(plan_, options, ctx.tracking_uri)
    workers = []
    for index in range(options.workers):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
        # Its own session: a Ctrl-C at the terminal reaches this process only, which passes it on
        # once (twice would make a worker exit at once).
        process = subprocess.Popen(
            command,
            cwd=ctx.root,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_default_sigint,
            start_new_session=True,
        )
        workers.append(process)
        pinned = f" on GPU {env['CUDA_VISIBLE_DEVICES']}" if gpus else ""
        ctx.echo(f"worker {index + 1} started (pid {process.pid}){pinned}")
    relays = [threading.Thread(target=_relay, args=(ctx, i + 1, w), daemon=True) for i, w in enumerate(workers)]
    for relay in relays:
        relay.start()
    with GUARD.on_emergency(lambda _reason: [_signal(w, signal.SIGKILL) for w in workers]):
        passed_on = False
        while any(w.poll() is None for w in workers):
            if GUARD.requested and not passed_on:
                for process in workers:
                    _signal(process, signal.SIGINT)
                passed_on = True
            threading.Event().wait(0.2)
    for relay in relays:
        relay.join(5)
    GUARD.check()
    failed = [i + 1 for i, w in enumerate(workers) if w.returncode not in (0,)]
    if failed:
        ctx.echo(f"workers {failed} ended with an error; their cells are queued again for the next run")


def _relay(ctx: Context, index: int, process: subprocess.Popen) -> None:
    for line in process.stdout:
        ctx.echo(f"[worker {index}] {line.rstrip()}")


def _signal(process: subprocess.Popen, sig: int) -> None:
    if process.poll() is None:
        try:
            process.send_signal(sig)
        except ProcessLookupError:
            pass


def _default_sigint() -> None:
    """A worker takes Ctrl-C as a signal to stop (a shell may have started us with it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
