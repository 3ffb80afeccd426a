"""An exclusive lock on a file of this machine, released when the process ends however it
ends (flock): two identical commands train once, the second reusing the first's run."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Optional

from harness.interrupts import GUARD

POLL_SECONDS = 0.2  # how often a waiting process retries (and looks for Ctrl-C)


@contextlib.contextmanager
def exclusive(path: Path, on_wait: Optional[Callable[[str], None]] = None) -> Iterator[None]:
    """Hold the lock at `path` for the block; `on_wait(holder)` is called once if another
    process holds it (holder: that process's pid, as it wrote it). Waiting stops on Ctrl-C
    or SIGTERM (Interrupted)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        waited = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited and on_wait is not None:
                    handle.seek(0)
                    on_wait(handle.read().strip() or "?")
                waited = True
                GUARD.check()
                time.sleep(POLL_SECONDS)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def process_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
