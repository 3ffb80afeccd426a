"""How the harness names what it keeps in MLflow: its tag prefix and one experiment per
dataset. Imports nothing heavy, so the commands that only read stay fast."""

from __future__ import annotations

from typing import Optional

TAG = "harness."  # prefix of the harness's own tags, apart from MLflow's


def experiment_name(source: str, subset: Optional[int]) -> str:
    """One experiment per dataset: runs on different data are never compared."""
    return source if subset is None else f"{source} (subset {subset})"
