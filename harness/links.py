"""Links into MLflow's UI that open in its model-training view (MLflow 3 otherwise opens an
experiment on its GenAI pages): a runs table, a run. For the local store the UI is the one
`harness ui` serves (127.0.0.1:5000 by default); for a tracking server, the server itself."""

from __future__ import annotations

from typing import Optional

UI = "http://127.0.0.1:5000"  # harness ui's default address
VIEW = "workflowType=machine_learning"  # the query MLflow's UI sets for its model-training view


def ui_base(tracking_uri: str, base: Optional[str] = None) -> str:
    """Where the UI of a store is served: `base` if given, the server for http(s) URIs, else
    harness ui's default address."""
    if base:
        return base.rstrip("/")
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return UI


def runs_link(tracking_uri: str, experiment_id: str, base: Optional[str] = None) -> str:
    """An experiment's (a dataset's) runs table."""
    return f"{ui_base(tracking_uri, base)}/#/experiments/{experiment_id}/runs?{VIEW}"


def run_link(tracking_uri: str, experiment_id: str, run_id: str, base: Optional[str] = None) -> str:
    """One run's page."""
    return f"{ui_base(tracking_uri, base)}/#/experiments/{experiment_id}/runs/{run_id}?{VIEW}"
