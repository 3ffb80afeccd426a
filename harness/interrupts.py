"""Ctrl-C and SIGTERM without exceptions from a signal handler.

The handler only records the signal. Training stops at the next batch boundary (a Keras
callback sets `model.stop_training`), and the code between phases (data, evaluation,
artifacts) calls `GUARD.check()`, which raises `Interrupted` from ordinary code. Raising
from the handler itself unwound through TensorFlow's C++ and aborted the process ("free():
invalid next size"). A second signal exits at once, after ending the open runs KILLED.

Pure Python: the training core, tracking and the CLI all use it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Optional

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + signal number, as shells report
REASONS = {signal.SIGINT: "interrupted (Ctrl-C)", signal.SIGTERM: "terminated by SIGTERM"}
EMERGENCY_SECONDS = 5.0  # how long a second signal waits for the open runs to be marked KILLED


class Interrupted(KeyboardInterrupt):
    """Raised (from ordinary code, never from the handler) once a signal was received.
    A KeyboardInterrupt, so Optuna fails the running trial and re-raises it."""

    def __init__(self, signum: int):
        super().__init__(REASONS.get(signum, f"stopped by signal {signum}"))
        self.signum = signum
        self.exit_code = EXIT_CODES.get(signum, 128 + signum)
        self.reason = REASONS.get(signum, f"stopped by signal {signum}")
        self.mlflow_status = "KILLED"


class SignalGuard:
    """Records SIGINT and SIGTERM; `check()` raises Interrupted where it is safe to."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._on_emergency: dict[int, Callable[[str], None]] = {}
        self._next_key = 0
        self._installed = False
        self._at_once = 0  # > 0 while a signal may end the process at once (nothing open)
        self._held = 0  # > 0 while something outside MLflow is claimed (an Optuna trial, a study cell)
        self.stderr_fd: Optional[int] = None  # where messages go while fd 2 is pointed elsewhere
        self.stopping = "stopping at the next safe point"  # what a first signal is said to do

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def install(self) -> None:
        """Take over SIGINT and SIGTERM for this process (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)
        self._installed = True

    def reset(self) -> None:
        """Forget a recorded signal (tests that run several commands in one process)."""
        self.signum = None

    def check(self) -> None:
        """Raise Interrupted if a signal arrived. Call between phases, never in a handler."""
        if self.signum is not None:
            raise Interrupted(self.signum)

    @contextlib.contextmanager
    def exits_at_once(self) -> Iterator[None]:
        """While the block runs (a long import: TensorFlow takes seconds, and a flag is only
        looked at after it), a signal ends the process at once, with its exit status, unless
        a run is open (an on_emergency block). Only for code that holds nothing to clean up."""
        self.check()
        self._at_once += 1
        try:
            yield
        finally:
            self._at_once -= 1
        self.check()

    @contextlib.contextmanager
    def saying(self, stopping: str) -> Iterator[None]:
        """While the block runs, a first signal is said to do `stopping` ('stopping the
        server'), not training's 'stopping at the next safe point'."""
        before, self.stopping = self.stopping, stopping
        try:
            yield
        finally:
            self.stopping = before

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """While the block runs, something is claimed that an interrupt must hand back (an
        Optuna trial, a study's cell): a signal is then always a flag, never an exit at once."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1

    @contextlib.contextmanager
    def on_emergency(self, end: Callable[[str], None]) -> Iterator[None]:
        """While the block runs, a second signal calls `end(reason)` before exiting: the
        store uses it to mark its open run KILLED."""
        key = self._next_key
        self._next_key += 1
        self._on_emergency[key] = end
        try:
            yield
        finally:
            self._on_emergency.pop(key, None)

    def _handle(self, signum, frame) -> None:
        if self.signum is None and self._at_once and not self._on_emergency and not self._held:
            _write_stderr(
                f"\n{REASONS.get(signum, 'stopped')} while starting: nothing was open, exiting at once\n",
                self.stderr_fd,
            )
            os._exit(EXIT_CODES.get(signum, 128 + signum))
        if self.signum is None:
            self.signum = signum
            word = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
            _write_stderr(f"\n{word}: {self.stopping} (again to exit at once)\n")
            return
        self._exit_now(signum)

    def _exit_now(self, signum: int) -> None:
        reason = f"{REASONS.get(self.signum or signum, 'stopped')}, then a second signal: exited at once"
        enders = list(self._on_emergency.values())
        # The main thread is suspended inside this handler and may hold a lock the store
        # needs, so the runs are ended from a thread that is given a few seconds at most.
        worker = threading.Thread(target=_call_all, args=(enders, reason), daemon=True)
        worker.start()
        worker.join(EMERGENCY_SECONDS)
        _write_stderr(f"{reason}\n")
        os._exit(EXIT_CODES.get(self.signum or signum, 130))


def _call_all(enders: list[Callable[[str], None]], reason: str) -> None:
    for end in reversed(enders):  # the innermost run (a trial, a seed) first
        try:
            end(reason)
        except Exception:  # noqa: BLE001 - exiting anyway; the next command reaps the run
            pass


def _write_stderr(text: str, fd: Optional[int] = None) -> None:
    try:
        os.write(sys.stderr.fileno() if fd is None else fd, text.encode())
    except (OSError, ValueError):
        pass


GUARD = SignalGuard()
