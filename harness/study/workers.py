"""Running a study: this process as its only worker, or N worker processes on this machine
(each pinned to one GPU where there are GPUs), or a dry run that only says what is done.
Workers on other machines join by running the same command with the same --storage."""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Optional

from optuna.trial import TrialState

from harness.context import Context
from harness.errors import HarnessError
from harness.interrupts import GUARD
from harness.study.auto import add_seeds
from harness.study.cells import StudyPlan
from harness.study.queue import (
    CELLS,
    FINAL,
    FINAL_DONE,
    Progress,
    claim,
    final_state,
    finish_groups,
    heartbeat,
    open_study,
    queue_final_steps,
    requeued_on_interrupt,
    run_cell,
    status_rows,
)

MAX_WORKERS = 64  # one machine's processes; more machines join with --storage
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # --name: part of the Optuna study's name


class StudyIncomplete(HarnessError):
    """Workers ended with errors and the study is not complete: exit status 1."""

    exit_code = 1


@dataclass(frozen=True)
class StudyOptions:
    """storage_url: None for the journal file (one machine), an RDB URL across machines;
    workers: processes on this machine; worker: this process is one of them, started by
    another (it says nothing of the study's state at its end); name: another study of the
    same command; dry_run: print the cells and which are done, write nothing."""

    storage_url: Optional[str] = None
    workers: int = 1
    worker: bool = False
    name: str = ""
    dry_run: bool = False

    def check(self) -> None:
        if not 1 <= self.workers <= MAX_WORKERS:
            raise HarnessError(f"--workers {self.workers}: use 1 to {MAX_WORKERS}")
        if self.name and not NAME.fullmatch(self.name):
            raise HarnessError(
                f"--name {self.name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )


def run_study(ctx: Context, plan_: StudyPlan, options: StudyOptions) -> None:
    """The whole study: cells claimed and trained, then the final steps (the tables, the
    selection, the report), claimed like a cell by whichever process finds every cell ended.
    Workers here (options.workers) relay their lines; this process then claims whatever is
    left (the final steps, if a worker ended before it could)."""
    options.check()
    if options.dry_run:
        return dry_run(ctx, plan_, options)
    study, storage, _, first = open_study(ctx, plan_, options.storage_url, options.name)
    failed = _run_workers(ctx, plan_, options) if options.workers > 1 else []
    done = work(ctx, study, storage, plan_, first)
    if options.worker:
        return None
    _say_where_it_stands(ctx, study, done.final_steps)
    if failed and final_state(study) != TrialState.COMPLETE:
        raise StudyIncomplete(f"workers {', '.join(map(str, failed))} ended with an error; the study is not complete")
    return None


@dataclass
class Worked:
    """What one process did of a study: cells it trained, whether it did the final steps."""

    cells: int = 0
    final_steps: bool = False


def work(ctx: Context, study, storage, plan_: StudyPlan, first) -> Worked:
    """Claim and run what waits, until nothing does or a signal arrives: cells, and once
    every cell has ended, the final steps."""
    from harness.study.final import finalize

    progress = Progress(len(study.user_attrs[CELLS]))
    done = Worked()
    while not GUARD.requested:
        finish_groups(ctx, study)  # groups a killed worker left waiting
        if plan_.auto_max is not None and add_seeds(ctx, study, storage, plan_, first):
            continue  # more cells for the undecided steps: claim them first
        queue_final_steps(ctx, study, storage)
        trial = claim(study, storage)
        if trial is None:
            break
        if trial.user_attrs.get(FINAL):
            with heartbeat(storage, trial), requeued_on_interrupt(study, trial):
                _final_steps(ctx, study, trial, plan_, first, finalize)
            done.final_steps = True
            continue
        done.cells += run_cell(ctx, study, trial, storage=storage, settings=plan_.overrides, progress=progress)
    GUARD.check()
    return done


def _final_steps(ctx: Context, study, trial, plan_: StudyPlan, first, finalize) -> None:
    """Run the final steps as the claimed trial; a failure is kept as its reason (the same
    command tries again), an interrupt queues it again (requeued_on_interrupt)."""
    try:
        selected_value = finalize(ctx, study, plan_, first)
    except HarnessError as exc:
        trial.set_user_attr("reason", str(exc)[:500])
        study.tell(trial, state=TrialState.FAIL)
        raise
    study.tell(trial, selected_value if math.isfinite(selected_value) else float("-inf"))  # NaN would FAIL it


def _say_where_it_stands(ctx: Context, study, did_final: bool) -> None:
    """After the work: a finished study's links (printed already by whoever did its final
    steps, if that was this process), else how far it is."""
    if final_state(study) == TrialState.COMPLETE:
        if not did_final:
            done = study.user_attrs.get(FINAL_DONE, {})
            ctx.echo(f"every cell has ended; {done.get('by', 'another worker')} did the final steps")
            for line in done.get("links", []):
                ctx.echo(line)
        return
    line = Progress(len(study.user_attrs[CELLS])).line(study)
    ctx.echo(f"{line}; final steps {_final_words(final_state(study))}; the same command continues the study")


def _final_words(state) -> str:
    if state is None:
        return "after the last cell"
    return {"WAITING": "waiting", "RUNNING": "running in another worker", "FAIL": "failed"}.get(
        state.name, state.name.lower()
    )


def dry_run(ctx: Context, plan_: StudyPlan, options: StudyOptions) -> None:
    """Print every cell and whether it is done, without creating or changing anything (a
    storage that does not exist yet is not made)."""
    import optuna

    from harness.entries.registry import Registry
    from harness.runs.planning import plan
    from harness.study.queue import buildable_cells
    from harness.tuning.storage import open_storage

    registry = Registry(ctx.root)
    first = plan(registry, plan_.target, list(plan_.overrides))
    cells, unbuildable = buildable_cells(registry, plan_, first.data)
    name = plan_.name(first.experiment) + (f"/{options.name}" if options.name else "")
    storage, _ = open_storage(ctx.root, options.storage_url, create=False)
    study = None
    if storage is not None:
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


GPU_MEMORY_FOR_WORKERS = 0.9  # of a shared GPU's memory, split evenly; the rest for CUDA's own context


@dataclass(frozen=True)
class Placement:
    """Where a local worker trains: its GPU (None: the CPU) and, where several workers share
    that GPU, its slice of the GPU's memory; env is what its process is given for that."""

    gpu: Optional[str]
    sharing: int = 1
    env: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        if self.gpu is None:
            return ""
        if self.sharing == 1:
            return f" on GPU {self.gpu}"
        return (
            f" on GPU {self.gpu} (shared by {self.sharing}: {self.env['XLA_PYTHON_CLIENT_MEM_FRACTION']} of its memory)"
        )


def placements(workers: int, gpus: list[str]) -> list[Placement]:
    """Workers dealt round the GPUs; where more than one lands on a GPU, each gets an even
    slice of its memory: JAX preallocates 75% of a GPU per process unless told
    (XLA_PYTHON_CLIENT_MEM_FRACTION), so a second worker would not start; TensorFlow is told
    to grow its memory as needed instead of taking it all (PyTorch does so already)."""
    if not gpus:
        return [Placement(None) for _ in range(workers)]
    chosen = [gpus[index % len(gpus)] for index in range(workers)]
    result = []
    for gpu in chosen:
        sharing = chosen.count(gpu)
        env = {"CUDA_VISIBLE_DEVICES": gpu}
        if sharing > 1:
            fraction = math.floor(100 * GPU_MEMORY_FOR_WORKERS / sharing) / 100
            env.update(XLA_PYTHON_CLIENT_MEM_FRACTION=f"{fraction:.2f}", TF_FORCE_GPU_ALLOW_GROWTH="true")
        result.append(Placement(gpu, sharing, env))
    return result


def worker_command(plan_: StudyPlan, options: StudyOptions, tracking_uri: Optional[str]) -> list[str]:
    """The command line of one local worker: the same study, one process, --worker."""
    seeds = ",".join(map(str, plan_.seeds)) + ","  # a list, even of one seed: "7," (a bare "7" is a count)
    if plan_.auto_max is not None:
        seeds = "auto"
    command = [sys.executable, "-m", "harness", "study", plan_.target, "--seeds", seeds]
    if plan_.auto_max is not None:
        command += ["--max-seeds", str(plan_.auto_max)]
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


def _run_workers(ctx: Context, plan_: StudyPlan, options: StudyOptions) -> list[int]:
    """Start options.workers worker processes and relay their lines until they end; a
    signal is passed on to them (each ends its cell KILLED and queues it again). Returns
    the numbers of the workers that ended with an error."""
    command = worker_command(plan_, options, ctx.tracking_uri)
    workers = []
    for index, placement in enumerate(placements(options.workers, visible_gpus())):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **placement.env}
        # Its own session: a Ctrl-C at the terminal reaches this process only, which passes it on
        # once (twice would make a worker exit at once).
        process = subprocess.Popen(
            command,
            cwd=ctx.root,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_sigint_until_armed,
            start_new_session=True,
        )
        workers.append(process)
        ctx.echo(f"worker {index + 1} started (pid {process.pid}){placement.describe()}")
    relays = [threading.Thread(target=_relay, args=(ctx, i + 1, w), daemon=True) for i, w in enumerate(workers)]
    for relay in relays:
        relay.start()
    with GUARD.on_emergency(lambda _reason: [_signal(w, signal.SIGKILL) for w in workers]):
        passed_on: set[int] = set()
        while any(w.poll() is None for w in workers):
            if GUARD.requested:
                for process in workers:
                    if process.pid not in passed_on and _catches_sigint(process.pid) is not False:
                        _signal(process, signal.SIGINT)
                        passed_on.add(process.pid)
            threading.Event().wait(0.2)
    for relay in relays:
        relay.join(5)
    GUARD.check()
    failed = [i + 1 for i, w in enumerate(workers) if w.returncode not in (0,)]
    if failed:
        ctx.echo(f"workers {failed} ended with an error (above); this process takes what they left")
    return failed


def _relay(ctx: Context, index: int, process: subprocess.Popen) -> None:
    for line in process.stdout:
        ctx.echo(f"[worker {index}] {line.rstrip()}")


def _signal(process: subprocess.Popen, sig: int) -> None:
    if process.poll() is None:
        try:
            process.send_signal(sig)
        except ProcessLookupError:
            pass


def _sigint_until_armed() -> None:
    """A worker starts with Ctrl-C ignored where /proc tells when it takes it (Linux): Python
    then installs no KeyboardInterrupt of its own, so a Ctrl-C passed on while the worker is
    still starting cannot end it in a traceback; it is passed on once the worker's handler
    is in (_catches_sigint). Elsewhere it starts with Ctrl-C as Python takes it."""
    armed_later = os.path.exists(f"/proc/{os.getpid()}/status")
    signal.signal(signal.SIGINT, signal.SIG_IGN if armed_later else signal.SIG_DFL)


def _catches_sigint(pid: int) -> Optional[bool]:
    """Whether process `pid` has a handler for SIGINT (its SigCgt mask); None where unknown."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signal.SIGINT - 1) & 1)
    except OSError:
        pass
    return None
