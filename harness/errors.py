"""The errors a user sees: one line, an exit status, no traceback."""


class HarnessError(Exception):
    """Bad input (entry, key, value, dataset, storage): printed as one line, exit status 2."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class RunEnded(HarnessError):
    """Ends the open run with `mlflow_status` and `reason` (tracking.Store.run reads both),
    and the command with `exit_code`. `mlflow_tags` are logged on the run first."""

    exit_code = 1

    def __init__(self, reason: str, status: str = "FAILED", run_id: str = "", tags: dict | None = None):
        self.reason = " ".join(str(reason).split())
        super().__init__(f"{self.reason} (run {run_id} {status})" if run_id else self.reason)
        self.mlflow_status = status
        self.mlflow_tags = tags or {}


class RunFailed(RunEnded):
    """A run that started and ended FAILED (e.g. its loss became NaN): exit status 1."""

    def __init__(self, reason: str, run_id: str = ""):
        super().__init__(reason, "FAILED", run_id)


def describe(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    return f"{type(exc).__name__}: {first_line(exc)}" if str(exc) else type(exc).__name__


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 300 else line[:297] + "..."
