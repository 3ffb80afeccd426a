"""An exclusive lock on a file of this machine, released when the process ends however it
ends (flock): two identical commands train once, the second reusing the first's run."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Callable, Iterator, Optional


@contextlib.contextmanager
def exclusive(path: Path, on_wait: Optional[Callable[[str], None]] = None) -> Iterator[None]:
    """Hold the lock at `path` for the block; `on_wait(holder)` is called once if another
    process holds it (holder: that process's pid, as it wrote it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                handle.seek(0)
                on_wait(handle.read().strip() or "?")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
