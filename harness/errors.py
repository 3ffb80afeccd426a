"""The one error type a user sees: a single line, exit status 2, no traceback."""


class HarnessError(Exception):
    """Bad input (entry, key, value, dataset, storage): printed as one line, exit status 2."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
