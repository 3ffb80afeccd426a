"""How the harness names what it keeps in MLflow: its tags (`Tag`), one experiment per
dataset, and links into MLflow's UI that open in its model-training view (MLflow 3 otherwise
opens an experiment on its GenAI pages). For the local store the UI is the one `harness ui`
serves (127.0.0.1:5000 by default); for a tracking server, the server itself. Imports
nothing heavy, so the commands that only read stay fast."""

from __future__ import annotations

import json
from typing import Optional
from urllib.parse import quote

TAG = "harness."  # prefix of the harness's own tags, apart from MLflow's
VAL_CORRECT = "val_correct.npy"  # artifact: which validation images the final model got right (uint8)
UI = "http://127.0.0.1:5000"  # harness ui's default address
VIEW = "workflowType=machine_learning"  # the query MLflow's UI sets for its model-training view
SAVED_VIEW = "mlflow.sharedViewState."  # experiment tags MLflow's UI reads as saved runs-table views
RANKED_KINDS = ("run", "group")  # what a runs table ranks: single runs and seed groups, not their parts
RANKING_METRIC = "best_val_accuracy"
VIEW_COLUMNS = (  # what a saved view shows, ranking metric first
    "tags.`harness.step`",
    "tags.`harness.kind`",
    f"metrics.`{RANKING_METRIC}`",
    f"metrics.`{RANKING_METRIC}_ci_low`",
    f"metrics.`{RANKING_METRIC}_ci_high`",
    f"metrics.`{RANKING_METRIC}_n`",
    "metrics.`val_macro_f1`",
    "metrics.`train_seconds`",
    "tags.`harness.settings`",
)


class Tag:
    """The harness's own tag keys, each with what it holds."""

    ENTRY = TAG + "entry"  # the entry a run trained (its file's name)
    ALIASES = TAG + "aliases"  # other entries of the same spec this run stands for: 'alias_b,alias_c'
    PARENT = TAG + "parent"  # the entry it extends ('' for a root)
    CHAIN = TAG + "chain"  # its history, root first: 'baseline > ... > adam'
    STEP = TAG + "step"  # '04 adam': sorting by it gives the report's order
    KIND = TAG + "kind"  # run | seed | group | variant | trial | study | history | leave_one_out | final
    VARIANT = TAG + "variant"  # a leave-one-out variant's label: 'without adam'
    SEED = TAG + "seed"  # the training seed of a single run
    SEEDS = TAG + "seeds"  # the seeds of a group: '0,1,2'
    MEMBERS = TAG + "members"  # a group's seed runs (trained or reused), by run id
    SPEC_FINGERPRINT = TAG + "spec_fingerprint"  # of the resolved spec: equal means the same experiment
    DATASET_FINGERPRINT = TAG + "dataset_fingerprint"  # of the images and labels used (after subset and split)
    DATASET = TAG + "dataset"  # the data source: digits, cifar10, folder:DIR
    SETTINGS = TAG + "settings"  # the overrides apart from the entry, as one reads them
    SETTINGS_FINGERPRINT = TAG + "settings_fingerprint"  # the same, as a key: runs compare only with equal settings
    OVERRIDES = TAG + "overrides"  # every override the run was given
    GIT_COMMIT = TAG + "git_commit"  # HEAD of the project, -dirty with local changes
    RANKED = TAG + "ranked"  # 'yes' on the runs a saved view ranks (RANKED_KINDS)
    REASON = TAG + "reason"  # why a run ended FAILED or KILLED
    WARNING = TAG + "warning"  # a warning the run printed (batch-norm lag)
    BACKUP = TAG + "backup"  # the folder of the run's training-state backup
    PID = TAG + "pid"  # the process that runs it (orphans are reaped by pid)
    HOST = TAG + "host"  # the machine that process runs on
    STUDY = TAG + "study"  # the Optuna study a trial, study run or study cell belongs to
    TRIAL = TAG + "trial"  # a trial's number in its study
    SAMPLED = TAG + "sampled"  # the keys a trial sampled
    TRIAL_STATE = TAG + "trial_state"  # PRUNED for a pruned trial
    STORAGE = TAG + "storage"  # a study's Optuna storage, credentials redacted
    METRIC = TAG + "metric"  # a study's monitored metric
    BEST_TRIAL = TAG + "best_trial"  # a study's best trial number
    CELLS = TAG + "cells"  # how many cells a `harness study` planned
    SELECTED = TAG + "selected"  # the entry a study selected
    FINAL_RUN = TAG + "final_run"  # a study's final (tested, registered) run
    FULL_RUN = TAG + "full_run"  # a leave-one-out record's full-entry run or group
    SOURCE_RUN = TAG + "source_run"  # the run whose model a final run tested
    SELECTED_BY = TAG + "selected_by"  # the validation figure a final run was picked by
    REGISTERED_AS = TAG + "registered_as"  # the alias its version was given then: champion | candidate
    REGISTERED = TAG + "registered"  # the model version and alias a final run registered
    BEST_PREFIX = TAG + "best."  # a study's best value of each searched key: harness.best.<key>
    RESOLVED_PREFIX = TAG + "resolved."  # what each "auto" setting meant: harness.resolved.<name>


def experiment_name(source: str, subset: Optional[int]) -> str:
    """One experiment per dataset: runs on different data are never compared."""
    return source if subset is None else f"{source} (subset {subset})"


def ui_base(tracking_uri: str, base: Optional[str] = None) -> str:
    """Where the UI of a store is served: `base` if given, the server for http(s) URIs, else
    harness ui's default address."""
    if base:
        return base.rstrip("/")
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return UI


def runs_link(tracking_uri: str, experiment_id: str, base: Optional[str] = None, view: Optional[str] = None) -> str:
    """An experiment's (a dataset's) runs table; given a saved view's key (view_key), the
    table as that view filters, sorts and shows it."""
    shared = f"&viewStateShareKey={view}" if view else ""
    return f"{ui_base(tracking_uri, base)}/#/experiments/{experiment_id}/runs?{VIEW}{shared}"


def model_link(tracking_uri: str, model_name: str, version: Optional[str] = None, base: Optional[str] = None) -> str:
    """A registered model's page, or one of its versions'."""
    page = f"{ui_base(tracking_uri, base)}/#/models/{quote(model_name, safe='')}"
    return f"{page}/versions/{version}" if version else page


def table_link(
    tracking_uri: str,
    experiment_id: str,
    settings_fingerprint: Optional[str],
    experiment_tags: dict[str, str],
    base: Optional[str] = None,
) -> str:
    """The runs table of one settings set as its saved view shows it, or the whole table
    where that view was never saved (runs made before views were)."""
    key = view_key(settings_fingerprint) if settings_fingerprint else None
    saved = key is not None and SAVED_VIEW + key in experiment_tags
    return runs_link(tracking_uri, experiment_id, base, view=key if saved else None)


def view_key(settings_fingerprint: str) -> str:
    """The key of the saved view of one settings set's runs (an experiment tag's suffix)."""
    return f"harness-{settings_fingerprint}"


def saved_view(settings_label: str, settings_fingerprint: str, created_ms: int) -> str:
    """A saved view as MLflow's UI stores it (an experiment tag's value): the runs of one
    settings set, single runs and seed groups only, best first by the ranking metric, with
    that metric and its interval shown."""
    search = f"tags.`{Tag.SETTINGS_FINGERPRINT}` = '{settings_fingerprint}' and tags.`{Tag.RANKED}` = 'yes'"
    state = {
        "searchFilter": search,
        "orderByKey": f"metrics.`{RANKING_METRIC}`",
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "selectedColumns": list(VIEW_COLUMNS),
    }
    envelope = {
        "name": f"harness: {settings_label}"[:100],
        "createdAt": created_ms,
        "updatedAt": created_ms,
        "state": json.dumps(state),
    }
    return json.dumps(envelope)


def run_link(tracking_uri: str, experiment_id: str, run_id: str, base: Optional[str] = None) -> str:
    """One run's page."""
    return f"{ui_base(tracking_uri, base)}/#/experiments/{experiment_id}/runs/{run_id}?{VIEW}"
