"""The `harness` command: verbs only. Parse, call, print; every check and every table lives
in the library. The verbs live in runs.py, results.py and tuning.py beside this file; heavy
imports (TensorFlow, MLflow, Optuna) happen inside the library modules that need them, so
`harness --help`, `list` and `show` answer at once."""

from __future__ import annotations

import os
import signal
import sys
from typing import Optional

import typer

from harness.cli.common import app, err, out
from harness.errors import HarnessError
from harness.interrupts import GUARD

try:  # typer 0.29 raises its own copy of click's exceptions
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # older typer: click's own
    from click.exceptions import ClickException, NoArgsIsHelpError

# Importing a verbs module registers its verbs on the app; `harness --help` lists them in
# the order they were registered, so these three stay in this order.
# isort: off
from harness.cli import runs  # noqa: E402, F401
from harness.cli import results  # noqa: E402, F401
from harness.cli import tuning  # noqa: E402, F401
from harness.cli import project  # noqa: E402, F401

# isort: on


def _exit_now(code: int) -> None:
    """Exit without interpreter finalisation. After a signal, TensorFlow's threads may still
    be winding down, and tearing the interpreter down under them has aborted the process;
    after a command, finalisation resets the signal handlers to the defaults, so a Ctrl-C
    landing in the second it takes would kill the process by the signal. Everything the
    command wrote is committed by then (MLflow calls are synchronous)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run(argv: Optional[list[str]] = None) -> int:
    """Run one command and return its exit status: bad input -> one line and 2; a failed run
    -> one line and 1; Ctrl-C -> 130 (SIGTERM: 143), the run ended KILLED."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="harness", standalone_mode=False)
    except HarnessError as exc:
        err.print(f"error: {exc}", markup=False)
        code = exc.exit_code
    except NoArgsIsHelpError as exc:
        out.print(exc.format_message(), markup=False)
        code = 2
    except ClickException as exc:
        verb = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "harness"
        err.print(f"error: {' '.join(exc.format_message().split())} (see {verb} --help)", markup=False)
        code = 2
    except KeyboardInterrupt:  # typer hands Ctrl-C back as exit 130; this is one raised outside it
        code = 130
    except Exception as exc:  # noqa: BLE001 - a defect or an environment failure: still one line
        if os.environ.get("HARNESS_DEBUG") or isinstance(exc, BrokenPipeError):
            raise
        from harness.errors import describe

        err.print(f"error: {describe(exc)} (HARNESS_DEBUG=1 shows the traceback)", markup=False)
        code = 1
    if GUARD.requested or code == 130:
        terminated = GUARD.signum == signal.SIGTERM
        err.print("terminated" if terminated else "interrupted", markup=False)
        return 143 if terminated else 130
    return code if isinstance(code, int) else 0


def main(argv: Optional[list[str]] = None) -> None:
    """The console script: signals handled as flags, one command, then an exit that skips
    interpreter finalisation (_exit_now)."""
    GUARD.install()
    try:
        code = run(argv)
    except BrokenPipeError:  # `harness compare | head`
        os._exit(0)
    _exit_now(code)
