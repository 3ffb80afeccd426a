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
        if self.signum is None:
            self.signum = signum
            word = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
            _write_stderr(f"\n{word}: stopping at the next safe point (again to exit at once)\n")
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


def _write_stderr(text: str) -> None:
    try:
        os.write(sys.stderr.fileno(), text.encode())
    except (OSError, ValueError):
        pass


GUARD = SignalGuard()
