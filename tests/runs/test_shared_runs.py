"""Runs shared by commands: an entry with the same spec as another is compared under its own
name (the finished run records it as an alias), and two identical seed-group commands at
once make one group, not two."""

from __future__ import annotations

import pytest

from tests.helpers import run_cli, start_cli, store_runs, write_entry

pytestmark = pytest.mark.slow  # trains models or starts processes: the full tier only

TINY = ["--epochs", "1", "--set", "data.subset=240"]


def test_an_entry_with_the_same_spec_as_another_is_compared_under_its_name(project):
    write_entry(project, "alias_b", "extends: baseline\ndescription: The same spec as baseline.\n")
    assert run_cli(["run-ablation", "baseline", *TINY], project).returncode == 0
    alias = run_cli(["run-ablation", "alias_b", *TINY], project)
    assert alias.returncode == 0 and "already done in run" in alias.stdout and "of baseline" in alias.stdout
    table = run_cli(["compare", "alias_b", "baseline", "--subset", "240", "--format", "csv"], project)
    assert table.returncode == 0, table.stderr
    assert "not run" not in table.stdout and table.stdout.count("\n") == 3  # header, two rows
    _, runs = store_runs(project, "digits (subset 240)")
    assert len(runs) == 1 and runs[0].data.tags["harness.aliases"] == "alias_b"
    again = run_cli(["run-ablation", "alias_b", *TINY], project)
    assert (
        again.returncode == 0
        and store_runs(project, "digits (subset 240)")[1][0].data.tags["harness.aliases"] == "alias_b"
    )


def test_two_identical_seed_group_commands_at_once_make_one_group(project):
    args = ["run-ablation", "adam", "--seeds", "2", *TINY]
    first, second = start_cli(args, project), start_cli(args, project)
    outputs = [first.communicate(timeout=600)[0], second.communicate(timeout=600)[0]]
    assert first.returncode == 0 and second.returncode == 0, outputs
    _, runs = store_runs(project, "digits (subset 240)")
    groups = [r for r in runs if r.data.tags.get("harness.kind") == "group"]
    seeds = [r for r in runs if r.data.tags.get("harness.kind") == "seed"]
    assert len(groups) == 1 and groups[0].info.status == "FINISHED", [(r.info.run_name, r.info.status) for r in runs]
    assert sorted(r.data.tags["harness.seed"] for r in seeds) == ["0", "1"]
    assert any("already done in group run" in out for out in outputs)
