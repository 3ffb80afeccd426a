"""No output path can harm the store or a user's files: every file the harness writes for the
user (--out, --chart, a Markdown report's images) is checked before any work, never resolves
into the store, its backups or the caches, and a folder the harness did not make is never
deleted. Bad paths are one line, exit status 2, and nothing is written."""

from __future__ import annotations

import os
import shutil
import sqlite3

import pytest

from tests.helpers import REPO, run_cli

TINY = ["--epochs", "1", "--set", "data.subset=240"]


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A project with one finished run, made once for the module (copied per test)."""
    project = tmp_path_factory.mktemp("stored")
    shutil.copytree(REPO / "ablations", project / "ablations")
    result = run_cli(["run-ablation", "baseline", *TINY], project)
    assert result.returncode == 0, result.stderr
    return project


@pytest.fixture
def finished(stored, tmp_path, monkeypatch):
    """A copy of the finished project, the working folder (relative paths are the user's)."""
    project = tmp_path / "project"
    shutil.copytree(stored, project, symlinks=True)
    with sqlite3.connect(project / "mlruns" / "mlflow.db") as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    monkeypatch.chdir(project)
    return project


def refused(result, *fragments) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_out_and_chart_never_overwrite_the_store(finished, harness_cli):
    database = finished / "mlruns" / "mlflow.db"
    before = database.read_bytes()
    (finished / "link.db").symlink_to(database)
    cases = [
        ["compare", "--subset", "240", "--out", "mlruns/mlflow.db"],
        ["compare", "--subset", "240", "--out", str(database)],
        ["compare", "--subset", "240", "--out", "link.db"],
        ["compare", "--subset", "240", "--chart", "mlruns/artifacts/x.png"],
        ["report", "--subset", "240", "--format", "html", "--out", "mlruns/mlflow.db"],
        ["report", "--subset", "240", "--out", "link.db"],
        ["ablate", "baseline", "--leave-one-out", "--chart", "mlruns/backups/forest.png", *TINY],
    ]
    for args in cases:
        refused(harness_cli(args, finished), "part of the harness's own files")
        assert database.read_bytes() == before, args
    assert run_cli(["compare", "--subset", "240"], finished).returncode == 0  # the store still reads


def test_a_reports_images_never_replace_a_users_folder(finished, harness_cli):
    notes = finished / "r" / "notes_files"
    notes.mkdir(parents=True)
    (notes / "important.txt").write_text("x")
    refused(harness_cli(["report", "--subset", "240", "--out", "r/notes.md"], finished), "notes_files", "not made by")
    assert (notes / "important.txt").read_text() == "x" and not (finished / "r" / "notes.md").exists()
    done = harness_cli(["report", "--subset", "240", "--out", "r/other.md"], finished)
    assert done.returncode == 0, done.stderr
    again = harness_cli(["report", "--subset", "240", "--out", "r/other.md"], finished)  # its own folder: replaced
    assert again.returncode == 0, again.stderr
    images = sorted(p.name for p in (finished / "r" / "other_files").iterdir())
    assert ".made-by-harness" in images and any(name.endswith(".png") for name in images)
    assert not [p for p in (finished / "r").iterdir() if p.name.startswith(".")]  # no half-built folder left


def test_markdown_image_links_are_escaped(finished, harness_cli):
    folder = finished / "r?%#é x"
    folder.mkdir()
    done = harness_cli(["report", "--subset", "240", "--out", str(folder / "a b.md")], finished)
    assert done.returncode == 0, done.stderr
    text = (folder / "a b.md").read_text()
    links = [line.split("](", 1)[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert links and all(" " not in link and "#" not in link for link in links)
    from urllib.parse import unquote

    assert all((folder / unquote(link)).is_file() for link in links)


def test_bad_output_paths_are_one_line_before_any_work(finished, tmp_path, harness_cli):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    os.chmod(read_only, 0o500)
    cases = [
        (["compare", "--subset", "240", "--out", str(tmp_path)], ["is a folder"]),
        (["compare", "--subset", "240", "--out", "/dev/full"], ["/dev/full", "not a regular file"]),
        (["compare", "--subset", "240", "--out", ""], ["--out"]),
        (["compare", "--subset", "240", "--chart", str(tmp_path)], ["--chart"]),
        (["compare", "--subset", "240", "--chart", "x.xyz"], [".png or .svg or .pdf"]),
        (["compare", "--subset", "240", "--chart", "/dev/full"], ["--chart"]),
        (["report", "--subset", "240", "--out", str(tmp_path)], ["is a folder"]),
        (["report", "--subset", "240", "--out", "/no/such/folder/r.md"], ["does not exist"]),
        (["ablate", "baseline", "--leave-one-out", "--chart", "/dev/full", *TINY], ["--chart /dev/full"]),
    ]
    if os.geteuid() != 0:  # root writes anywhere
        cases.append((["compare", "--subset", "240", "--out", str(read_only / "t.md")], ["not writable"]))
    runs_before = _run_count(finished)
    for args, fragments in cases:
        refused(harness_cli(args, finished), *fragments)
    assert not list(tmp_path.glob("*.png")) and not (tmp_path / "x.xyz").exists()
    assert _run_count(finished) == runs_before  # the ablate refusal trained nothing


def test_a_chart_is_written_where_it_says_in_the_format_its_name_says(finished, harness_cli):
    for name, magic in (("w.png", b"\x89PNG"), ("w.svg", b"<?xml"), ("w.pdf", b"%PDF")):
        result = harness_cli(["compare", "--subset", "240", "--chart", name], finished)
        assert result.returncode == 0, result.stderr
        assert f"chart: {name}" in result.stderr
        assert (finished / name).read_bytes().startswith(magic)


def _run_count(project) -> int:
    with sqlite3.connect(project / "mlruns" / "mlflow.db") as connection:
        return connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
