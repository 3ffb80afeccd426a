"""The context every command passes down: the project, its store, and how to report."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from harness.tracking.protocol import RunStore
    from harness.tracking.store import Store

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Context:
    """root: the project folder (holds ablations/); tracking_uri: None for the local store;
    echo: where progress lines go; verbose: None for the harness's own line per epoch
    (through echo), else Keras's fit verbosity (0: nothing, as a study's cells). The store
    opens on first use and writes nothing until a command does (`writable_store`)."""

    root: Path
    tracking_uri: Optional[str] = None
    echo: Echo = print
    verbose: Any = None

    @cached_property
    def store(self) -> Store:
        from harness.tracking.store import Store

        return Store(self.root, self.tracking_uri)

    @cached_property
    def writable_store(self) -> Store:
        """The store, once the runs that dead processes left RUNNING are ended (kill -9)."""
        store = self.store
        for run_id in store.reap_orphans():
            self.echo(f"marked run {run_id} FAILED: its process died while it was RUNNING")
        return store

    @cached_property
    def store_uri(self) -> str:
        """The tracking URI, without opening the store."""
        from harness.tracking.uri import default_tracking_uri

        return self.tracking_uri or default_tracking_uri(self.root)

    @cached_property
    def reader(self) -> RunStore:
        """The store for reading where a write may follow (a run-ablation that looks for its
        run, ui's links): the local SQLite file read directly (no MLflow import), else the
        MLflow store."""
        from harness.tracking.reader import open_reader

        return open_reader(self.root, self.tracking_uri) or self.store

    @cached_property
    def strict_reader(self) -> RunStore:
        """The store for a command that only reads: a missing local store, or a local file
        that is not a store the reader knows (MLflow would create or migrate it: a write),
        is a one-line error."""
        from harness.tracking.reader import open_reader
        from harness.tracking.uri import require_store

        require_store(self.root, self.tracking_uri)
        return open_reader(self.root, self.tracking_uri, strict=True) or self.store

    def check_output(self, path: Path, option: str, suffixes: Sequence[str] = ()) -> Path:
        """A file a command will write for the user, checked before any work (paths.check_output):
        never inside this project's store, its backups and journal, the store file a tracking
        URI names, or the caches; mlruns/reports/ is the one place under mlruns/ allowed."""
        from harness import paths
        from harness.tracking.uri import sqlite_path

        store_file = sqlite_path(self.store_uri)
        protected = [paths.mlruns(self.root), paths.cache_dir()]
        if store_file:
            protected += [Path(store_file + suffix) for suffix in ("", "-wal", "-shm", "-journal")]
        return paths.check_output(
            path, option, protected=protected, allowed=[paths.reports(self.root)], suffixes=suffixes
        )


def fitted(line: str, indent: str = "", command: bool = False) -> str:
    """A long progress line wrapped at the terminal's width (80 where there is none), after
    `indent`, its continuation lines indented two more, no word or run id broken. A
    `command` ends each broken line with a backslash, so it pastes into a shell whole."""
    width = shutil.get_terminal_size((80, 24)).columns - (2 if command else 0)
    lines = textwrap.wrap(
        line,
        width,
        initial_indent=indent,
        subsequent_indent=indent + "  ",
        break_long_words=False,
        break_on_hyphens=False,
    )
    return (" \\\n" if command else "\n").join(lines)
