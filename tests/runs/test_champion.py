"""Only a pick one can trust becomes @champion: the entries as written, the whole data, three
seeds or more for every entry compared. Any other pick registers as @candidate. Every
version is described and tagged, and a moved alias says from which version to which."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from harness.tracking.uri import default_tracking_uri
from tests.helpers import run_cli, write_entry

pytestmark = pytest.mark.slow  # trains models or starts processes: the full tier only

CHAIN = {
    "small": "description: A small CNN on all of digits.\nmodel: {blocks: [{filters: 4, convs: 1}], padding: same}\n"
    "optimizer: {name: adam, learning_rate: 0.01}\ntraining: {epochs: 1, batch_size: 64}\n",
    "small_wide": "extends: small\ndescription: Twice the filters.\nmodel: {blocks: [{filters: 8, convs: 1}]}\n",
}


def test_champion_only_for_a_trustworthy_pick_and_every_move_said(project):
    for name, text in CHAIN.items():
        write_entry(project, name, text)
    for name in CHAIN:
        assert run_cli(["run-ablation", name, "--seeds", "2"], project).returncode == 0
    small = run_cli(["select", "small", "small_wide"], project)
    assert small.returncode == 0, small.stderr
    assert "registering as @candidate: an entry compared has 2 seed(s), fewer than 3" in small.stdout
    for name in CHAIN:
        assert run_cli(["run-ablation", name, "--seeds", "3"], project).returncode == 0
    crowned = run_cli(["select", "small", "small_wide"], project)
    assert crowned.returncode == 0, crowned.stderr
    assert "registering as @champion" in crowned.stdout and "@champion: v2 (" in crowned.stdout
    smoke = run_cli(["run-ablation", "small", "--seeds", "3", "--epochs", "2"], project)
    assert smoke.returncode == 0
    picked = run_cli(["select", "small", "--epochs", "2"], project)
    assert picked.returncode == 0, picked.stderr
    assert "@candidate: v1 (" in picked.stdout and "-> v3 (small, training.epochs=2)" in picked.stdout
    again = run_cli(["select", "small", "small_wide"], project)
    assert again.returncode == 0 and "@champion: v2 (" in again.stdout and "-> v4 (" in again.stdout
    client = MlflowClient(default_tracking_uri(project))
    versions = client.search_model_versions("name = 'harness-digits'")
    assert len(versions) == 4
    for version in versions:
        assert version.description and {"entry", "settings", "dataset", "test_accuracy", "final_run"} <= set(
            version.tags
        )
    aliases = client.get_registered_model("harness-digits").aliases
    assert {k: int(v) for k, v in aliases.items()} == {"champion": 4, "candidate": 3}
    report = run_cli(["report"], project)
    assert report.returncode == 0 and "@champion" not in (project / "mlruns" / "reports" / "report.md").read_text()
