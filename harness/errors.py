"""The one error type a user sees: a single line, exit status 2, no traceback."""


class HarnessError(Exception):
    """Bad input (entry, key, value, dataset, storage): printed as one line, exit status 2."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class RunFailed(HarnessError):
    """A run that started and ended FAILED (e.g. its loss became NaN): exit status 1."""

    exit_code = 1

    def __init__(self, reason: str, run_id: str = ""):
        super().__init__(f"{reason} (run {run_id} FAILED)" if run_id else reason)
        self.reason = " ".join(str(reason).split())


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so a run ends KILLED as on Ctrl-C."""
