"""Where the project's local stores live: light enough for the fast commands to import."""

from __future__ import annotations

from pathlib import Path


def journal_path(root: Path) -> Path:
    """The default Optuna storage: a journal file under mlruns/optuna/."""
    return Path(root) / "mlruns" / "optuna" / "journal.log"
