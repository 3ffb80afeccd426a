"""Leave-one-out on a short chain whose middle step changes the geometry: the variant that
cannot be built is a row with its reason, not the end of the command; the others run; the
complete table is recorded with its forest plot; Ctrl-C prints what finished, and the same
command again finishes the rest."""

from __future__ import annotations

import io
import re
import signal

import pandas as pd
import pytest

from tests.helpers import GEO_CHAIN, run_cli, start_cli, store_runs, write_entry

pytestmark = pytest.mark.slow  # trains models or starts processes: the full tier only


@pytest.fixture
def chain(project):
    for name, text in GEO_CHAIN.items():
        write_entry(project, name, text)
    return project


def runs_of(project):
    return store_runs(project, "digits (subset 300)")


def test_a_variant_that_cannot_be_built_is_a_row_with_its_reason(chain, tmp_path):
    chart = tmp_path / "forest.png"
    result = run_cli(
        ["ablate", "geo_deep", "--leave-one-out", "--seeds", "2", "--format", "csv", "--chart", str(chart)], chain
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "variant 1/2: geo_deep without geo_same" in result.stdout
    assert "variant 2/2: geo_deep without its own step" in result.stdout
    table = pd.read_csv(io.StringIO(result.stdout.split("leave-one-out run: ")[-1].split("\n", 1)[1]))
    rows = table.set_index("step")
    assert list(table["step"]) == ["(all steps)", "geo_same", "geo_deep"]  # one row per step of the chain
    assert pd.isna(rows.loc["geo_same", "contribution"])
    assert rows.loc["geo_same", "note"].startswith("cannot build: block 2 pools a 1x1 feature map (from 8x8)")
    assert rows.loc["geo_deep", "contribution"] == pytest.approx(
        rows.loc["(all steps)", "best_val_accuracy"] - rows.loc["geo_deep", "best_val_accuracy"]
    )
    assert rows.loc["geo_deep", "ci_low"] <= rows.loc["geo_deep", "contribution"] <= rows.loc["geo_deep", "ci_high"]
    assert chart.read_bytes()[:4] == b"\x89PNG"
    client, runs = runs_of(chain)
    assert "RUNNING" not in {r.info.status for r in runs}
    variants = {r.data.tags.get("harness.variant") for r in runs if r.data.tags.get("harness.kind") == "variant"}
    assert variants == {"without geo_deep"}  # nothing recorded for the variant that cannot be built
    (record,) = [r for r in runs if r.data.tags.get("harness.kind") == "leave_one_out"]
    artifacts = {a.path for a in client.list_artifacts(record.info.run_id)}
    assert {"leave_one_out.csv", "forest.png"} <= artifacts
    assert record.data.metrics["contribution_geo_deep"] == pytest.approx(rows.loc["geo_deep", "contribution"])


def test_ctrl_c_prints_what_finished_and_the_same_command_finishes_the_rest(chain):
    command = ["ablate", "geo_deep", "--leave-one-out", "--epochs", "40"]
    process = start_cli(command, chain)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if "variant 2/2" in line:
            break
    for line in process.stdout:
        seen.append(line)
        if line.startswith("epoch 1/"):
            break
    process.send_signal(signal.SIGINT)
    rest = process.communicate(timeout=120)[0]
    assert process.returncode == 130, rest
    assert "geo_deep without geo_same" in rest and "cannot build" in rest  # the table of what finished
    _, runs = runs_of(chain)
    assert "RUNNING" not in {r.info.status for r in runs}
    assert [r.info.status for r in runs if r.data.tags.get("harness.variant") == "without geo_deep"] == ["KILLED"]
    again = run_cli(command, chain)  # the same command
    assert again.returncode == 0, again.stdout + again.stderr
    assert "geo_deep: already done" in again.stdout and "resuming geo_deep" in again.stdout


def test_ablate_seeds_auto_gives_seeds_only_to_variants_that_can_use_them(project):
    """`ablate --leave-one-out --seeds auto`: every variant starts with two seeds; one still
    undecided gets a third (and the full entry with it) or is told why more cannot settle
    it; none passes --max-seeds, and the full entry has every seed a variant is paired on."""
    from tests.helpers import TINY_CHAIN

    for name, text in TINY_CHAIN.items():
        write_entry(project, name, text)
    command = ["ablate", "tiny_wide", "--leave-one-out", "--seeds", "auto", "--max-seeds", "3", "--format", "csv"]
    result = run_cli(command, project)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    table = pd.read_csv(io.StringIO(result.stdout.split("leave-one-out run: ")[-1].split("\n", 1)[1]))
    rows = table.set_index("step")
    variants = rows.drop(index="(all steps)")
    assert set(variants["n"]) <= {2, 3} and rows.loc["(all steps)", "n"] == variants["n"].max()
    given = {step for line in re.findall(r"--- undecided: ([^;]+);", result.stdout) for step in line.split(", ")}
    for step, row in variants.iterrows():
        stopped = f"without {step}: more seeds cannot settle it"
        if str(row["verdict"]).startswith("undecided") and row["n"] == 2:
            assert stopped in result.stdout, result.stdout[-3000:]
        assert (row["n"] == 3) == (step in given)  # a third seed exactly where one was asked for


def test_ablate_seeds_auto_ends_with_a_variant_that_cannot_be_built(chain):
    """A variant with no result has nothing for a seed to settle: the loop gives it none
    and ends (it used to ask for seeds for it forever)."""
    command = ["ablate", "geo_deep", "--leave-one-out", "--seeds", "auto", "--max-seeds", "3", "--format", "csv"]
    result = run_cli(command, chain, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    table = pd.read_csv(io.StringIO(result.stdout.split("leave-one-out run: ")[-1].split("\n", 1)[1])).set_index("step")
    assert table.loc["geo_same", "n"] == 0 and "cannot build" in table.loc["geo_same", "note"]
    assert 2 <= table.loc["geo_deep", "n"] <= 3
