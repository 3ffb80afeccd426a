"""The two web UIs over the project's stores: MLflow's UI and optuna-dashboard, each a child
process bound to 127.0.0.1 by default. A busy port or a host that is not this machine's is
one line before anything starts; the server's own start-up chatter goes to a log file
unless --verbose; its links print once it answers. Ctrl-C or SIGTERM stops the server's
whole process group within a few seconds; a watchdog process kills the group too if this
process dies without stopping it (kill -9), so nothing is left holding the port."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from harness import paths
from harness.context import Context
from harness.errors import HarnessError
from harness.interrupts import GUARD

START_SECONDS = 60  # how long a server may take to answer before it counts as failed
STOP_SECONDS = 2  # how long a stopped server may take to exit before it is killed
LEAN = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job runner: the UI needs none of its 7 consumers
# Kills the server's process group once the harness is gone (re-parented: even a zombie
# harness counts as gone), and exits once the group is.
WATCHDOG = """
import os, signal, sys, time
parent, group = int(sys.argv[1]), int(sys.argv[2])
while os.getppid() == parent:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        sys.exit(0)
    time.sleep(0.5)
try:
    os.killpg(group, signal.SIGKILL)
except ProcessLookupError:
    pass
"""


def check_port(host: str, port: int) -> None:
    """A port this machine can listen on, else a one-line HarnessError naming it: in use,
    or a host that is not an address of this machine."""
    if not 0 < port < 65536:
        raise HarnessError(f"--port {port}: use a port from 1 to 65535")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except (socket.gaierror, UnicodeError) as exc:
        raise HarnessError(f"--host {host}: not an address this machine knows ({exc})") from None
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                raise HarnessError(f"--host {host}: not an address of this machine") from None
            raise HarnessError(
                f"port {port} on {host} is in use or not available ({exc.strerror}); choose another with --port"
            ) from None


def run_ui(ctx: Context, *, host: str, port: int, verbose: bool = False) -> int:
    """Print each dataset's runs table, then serve MLflow's UI until it stops."""
    check_port(host, port)
    store = ctx.reader  # the local file read directly: the links print without importing MLflow
    experiments = [e for e in store.experiments() if e.name != "Default"]
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        store.uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",  # one user on one machine: MLflow's default of 4 web workers costs seconds of start-up
    ]
    base = f"http://{host}:{port}"

    links = [line for experiment in experiments for line in _ui_links(store, experiment, base)]

    def ready() -> None:
        ctx.echo(f"MLflow UI on {base} (Ctrl-C stops it).")
        for line in links or ["(no runs yet: harness run-ablation NAME)"]:
            ctx.echo(f"  {line}")
        ctx.echo("A runs table link opens its saved view: one settings set, best first; tick two")
        ctx.echo("runs and Compare to see what differs.")

    return serve(ctx, command, (host, port), ready, None if verbose else paths.mlruns(ctx.root) / "ui.log")


def _ui_links(store, experiment, base: str) -> list[str]:
    """One dataset's links: its runs table (the view of its latest ranked run's settings),
    its latest study run, the model its latest final run registered."""
    from harness.tracking.names import Tag, model_link, run_link, table_link

    experiment_id = experiment.experiment_id
    ranked = store.runs(experiment_id, tags={Tag.RANKED: "yes"}, limit=1)
    fingerprint = ranked[0].data.tags.get(Tag.SETTINGS_FINGERPRINT) if ranked else None
    table = table_link(store.uri, experiment_id, fingerprint, store.experiment_tags(experiment_id), base)
    settings = f" ({ranked[0].data.tags.get(Tag.SETTINGS, '')})" if ranked else ""
    lines = [f"{experiment.name} runs table{settings}: {table}"]
    studies = [r for kind in ("history", "study") for r in store.runs(experiment_id, tags={Tag.KIND: kind}, limit=1)]
    if studies:
        study = max(studies, key=lambda r: r.info.start_time)
        link = run_link(store.uri, experiment_id, study.info.run_id, base)
        lines.append(f"latest study run ({study.info.run_name}): {link}")
    for final in store.runs(experiment_id, tags={Tag.KIND: "final"}, limit=1):
        name, _, version = final.data.tags.get(Tag.REGISTERED, "").partition(" version ")
        if version:
            lines.append(f"registered model {name} (latest v{version}): {model_link(store.uri, name, base=base)}")
    return lines


def run_dashboard(ctx: Context, storage: Optional[str], *, host: str, port: int, verbose: bool = False) -> int:
    """Serve optuna-dashboard over the studies' storage until it stops."""
    target = storage or str(paths.journal_path(ctx.root))
    if storage is not None:
        from harness.tuning.storage import check_url

        check_url(storage)
    elif not Path(target).is_file():
        raise HarnessError(f"no studies yet: {target} does not exist (harness tune NAME --trials N)")
    check_port(host, port)
    executable = shutil.which("optuna-dashboard") or str(Path(sys.executable).with_name("optuna-dashboard"))
    command = [executable, target, "--host", host, "--port", str(port)]
    ready = lambda: ctx.echo(f"optuna-dashboard on http://{host}:{port} over {target} (Ctrl-C stops it)")  # noqa: E731
    return serve(
        ctx, command, (host, port), ready, None if verbose else paths.optuna_folder(ctx.root) / "dashboard.log"
    )


def serve(ctx: Context, command: list[str], address: tuple[str, int], ready, log: Optional[Path]) -> int:
    """Start `command` in its own process group (watched: it dies with this process), print
    its links (`ready()`) once it answers on `address`, and wait; a signal stops the whole
    group. Output goes to `log` (None: this terminal)."""
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
    sink = open(log, "w") if log is not None else None  # noqa: SIM115 - closed in finally
    watchdog = None
    try:
        process = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT if sink else None,
            start_new_session=True,
            env={**os.environ, **LEAN},
        )
        watchdog = _watch(process)
        with GUARD.on_emergency(lambda _reason: _stop(process, signal.SIGKILL)), GUARD.saying("stopping the server"):
            answered, started = False, time.monotonic()
            while process.poll() is None:
                if GUARD.requested:
                    _stop(process, signal.SIGTERM)
                    break
                if not answered and _answers(address):
                    answered = True
                    ready()
                    where = f"; server log: {log}" if log else ""
                    ctx.echo(f"ready after {time.monotonic() - started:.1f} s (Ctrl-C stops it{where})")
                if not answered and time.monotonic() - started > START_SECONDS:
                    _stop(process, signal.SIGTERM)
                    raise HarnessError(
                        f"{command[0]} did not answer on port {address[1]} in {START_SECONDS} s{_tail(log)}"
                    )
                time.sleep(0.1)
        code = process.wait()
        _stop(process, signal.SIGKILL)  # whatever of its group outlived it
        if not answered and not GUARD.requested:
            raise HarnessError(f"the server stopped before it answered (exit {code}){_tail(log)}")
        return 0 if GUARD.requested else code
    finally:
        if watchdog is not None:
            _end(watchdog)
        if sink is not None:
            sink.close()


def _watch(process: subprocess.Popen) -> subprocess.Popen:
    """A small process, in a session of its own, that kills the server's group once this
    process is gone however it went (a kill -9 runs no clean-up here)."""
    return subprocess.Popen(
        [sys.executable, "-c", WATCHDOG, str(os.getpid()), str(process.pid)],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _end(watchdog: subprocess.Popen) -> None:
    """The watchdog ended once the server is: it would linger up to half a second otherwise."""
    if watchdog.poll() is None:
        watchdog.kill()
    watchdog.wait()


def _answers(address: tuple[str, int]) -> bool:
    host = "127.0.0.1" if address[0] in ("0.0.0.0", "") else address[0]
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, address[1])) == 0


def _stop(process: subprocess.Popen, first: int) -> None:
    """End the server's process group: `first` (SIGTERM), then SIGKILL for whatever is left
    (a worker that outlived its parent would keep the port)."""
    try:
        os.killpg(process.pid, first)
    except ProcessLookupError:
        return
    try:
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _tail(log: Optional[Path]) -> str:
    if log is None or not log.is_file():
        return ""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return f"; last line of {log}: {lines[-1][:200]}" if lines else ""
