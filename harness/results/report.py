"""The study as one document: the history table and its waterfall, the leave-one-out forest
plot (when one was run), learning curves (a seed group's as the mean with a band), the
tuning studies with Optuna's plots, and the final model's confusion matrix and per-class
table, every run linked to the MLflow UI. HTML is one self-contained file (images embedded);
Markdown keeps its images in a folder beside it."""

from __future__ import annotations

import base64
import html
import shutil
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd

from harness import paths
from harness.context import Context
from harness.errors import HarnessError
from harness.results import tables
from harness.results.compare import Comparison, Scope, chart, compare_table, experiment_for
from harness.tracking.names import Tag, run_link
from harness.tracking.protocol import RunStore

REPORT_FORMATS = ("md", "html")
STUDY_PLOTS = ("optimization_history.png", "param_importances.png")


@dataclass
class Section:
    title: str
    text: str = ""
    table: Optional[pd.DataFrame] = None
    images: list[tuple[str, Path]] = field(default_factory=list)  # (caption, file)
    links: list[tuple[str, str]] = field(default_factory=list)  # (label, url): the runs behind the section


def check_format(fmt: str) -> None:
    if fmt not in REPORT_FORMATS:
        raise HarnessError(f"--format {fmt!r}: use md or html")


def build_report(ctx: Context, scope: Scope, out: Path, fmt: str = "md") -> Path:
    """Write the report to `out` (Markdown: its images to `<out stem>_files/` beside it, a
    folder the harness made, never a user's). Every path is checked before any work."""
    check_format(fmt)
    if out.parent == paths.reports(ctx.root):
        out.parent.mkdir(parents=True, exist_ok=True)
    ctx.check_output(out, "--out")
    if fmt == "md":
        paths.check_own_folder(assets_folder(out), "--out")
    comparison = compare_table(ctx, scope)  # the settings checked first, then the store read
    store = ctx.strict_reader
    experiment_id = experiment_for(store, scope.source, scope.subset)
    link = lambda run_id: run_link(store.uri, experiment_id, run_id)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="harness-report-") as tmp:
        work = Path(tmp)
        sections = [_verdicts(comparison, scope), _history(comparison, scope, work, link)]
        sections.append(_curves(store, comparison.frame, work, link))
        sections += [
            s
            for s in (_leave_one_out(store, experiment_id, work, link), _tuning(store, experiment_id, work, link))
            if s
        ]
        final = _final(store, experiment_id, work, link)
        if final is not None:
            sections.append(final)
        title = f"Ablation study on {scope.experiment}"
        if fmt == "html":
            paths.write_file(out, _html(title, sections))
        else:
            _write_markdown(title, sections, out)
    return out


def assets_folder(out: Path) -> Path:
    """Where a Markdown report keeps its images: <stem>_files beside it."""
    return out.parent / f"{out.stem}_files"


def _verdicts(comparison: Comparison, scope: Scope) -> Section:
    """The answer first: each step's verdict, its change with the interval, the claim."""
    text = f"{comparison.caption(scope)}: {tables.verdict_summary(comparison.frame)}. " + tables.HOLM_NOTE.format(
        rope=f"{100 * scope.rope:g}"
    )
    return Section("Which steps helped", text, tables.verdict_table(comparison.frame, scope.key))


def _history(comparison: Comparison, scope: Scope, work: Path, link) -> Section:
    image = chart(comparison.frame, scope.metric, work / "history.png")
    text = (
        f"{comparison.caption(scope)}. One row per entry, in history order: its verdict, its change against its "
        "parent with the 95% interval, the metric over seeds (mean +/- std, n), p corrected across the table (Holm) "
        "and raw, what the step changed, and the report's own figure with whether this study supports it (the "
        "report's figures are CIFAR-10 results: on other data they are not comparable). " + " ".join(comparison.notes)
    )
    links = [(row.entry, link(row.run)) for row in comparison.frame.itertuples() if row.run]
    caption = "The metric step by step: each bar one step's change, coloured by its verdict; diamonds: the report"
    return Section("History", text, tables.comparison(comparison.frame, scope.key), [(caption, image)], links)


def _download(store: RunStore, run_id: str, artifact: str, folder: Path) -> Optional[Path]:
    try:
        return store.download_artifact(run_id, artifact, folder)
    except FileNotFoundError:  # a run without this artifact is shown without it
        return None


def _curves(store: RunStore, frame: pd.DataFrame, work: Path, link) -> Section:
    images, links = [], []
    for row in frame.itertuples():
        if not row.run:
            continue
        run_id = row.run
        folder = work / f"curves_{row.entry}"
        folder.mkdir()
        path = _download(store, run_id, "learning_curves.png", folder)
        if path is not None:
            images.append((f"{row.entry}", path))
            links.append((row.entry, link(run_id)))
    text = "Loss and accuracy per epoch, train and validation; a seed group's as the mean over its seeds with a band."
    return Section("Learning curves", text, None, images, links)


def _latest_of_kind(store: RunStore, experiment_id: str, kind: str):
    """The latest FINISHED run of this kind in the experiment, or None."""
    runs = store.runs(experiment_id, status="FINISHED", tags={Tag.KIND: kind}, limit=1)
    return runs[0] if runs else None


def _leave_one_out(store: RunStore, experiment_id: str, work: Path, link) -> Optional[Section]:
    run = _latest_of_kind(store, experiment_id, "leave_one_out")
    if run is None:
        return None
    path = _download(store, run.info.run_id, "forest.png", work)
    table_path = _download(store, run.info.run_id, "leave_one_out.csv", work)
    table = _readable_leave_one_out(pd.read_csv(table_path)) if table_path else None
    text = (
        f"What each step contributes to {run.data.tags.get(Tag.ENTRY)}: the entry against the entry with that one "
        "step's changes put back to its parent's values (full minus without), over the same seeds."
    )
    return Section(
        "Leave-one-out",
        text,
        table,
        [("Contribution of each step", path)] if path else [],
        [(run.info.run_name, link(run.info.run_id))],
    )


def _readable_leave_one_out(raw: pd.DataFrame) -> pd.DataFrame:
    """The recorded table as the terminal shows it (4 decimals, intervals, no run ids); a
    table of unknown columns as it is."""
    key = "best_val_accuracy"
    needed = {"variant", "verdict", "contribution", "ci_low", "ci_high", key, "std", "n", "p_holm", "p_value", "note"}
    if not needed <= set(raw.columns):
        return raw.fillna("")
    return tables.leave_one_out(raw.astype({"note": str, "verdict": str}).replace("nan", ""), key)


def _tuning(store: RunStore, experiment_id: str, work: Path, link) -> Optional[Section]:
    studies = store.runs(experiment_id, tags={Tag.KIND: "study"})
    if not studies:
        return None
    rows, images, links = [], [], []
    for run in studies:
        tags, metrics = run.data.tags, run.data.metrics
        best = {k.removeprefix(Tag.BEST_PREFIX): v for k, v in tags.items() if k.startswith(Tag.BEST_PREFIX)}
        name = tags.get(Tag.STUDY, run.info.run_name)
        rows.append(
            {
                "study": name,
                "trials": int(metrics.get("trials", 0)),
                "pruned": int(metrics.get("trials_pruned", 0)),
                "epochs spent": int(metrics.get("epochs_spent", 0)),
                "best value": _best_value(metrics, tags),
                "best params": ", ".join(f"{k}={_short(v)}" for k, v in best.items()),
            }
        )
        links.append((run.info.run_name, link(run.info.run_id)))
        for plot in STUDY_PLOTS:
            folder = work / f"study_{run.info.run_id}"
            folder.mkdir(exist_ok=True)
            path = _download(store, run.info.run_id, plot, folder)
            if path is not None:
                images.append((f"{name}: {plot.removesuffix('.png').replace('_', ' ')}", path))
    text = "Optuna studies on this dataset (trial 0 of each is the entry itself)."
    return Section("Tuning", text, pd.DataFrame(rows), images, links)


def _best_value(metrics: dict, tags: dict) -> str:
    """A study run's best value: logged under best_<its metric> (best_val_accuracy ...)."""
    metric = tags.get(Tag.METRIC, "val_accuracy")
    value = metrics.get(f"best_{metric}")
    return f"{value:.4f}" if value is not None else ""


def _short(value: str) -> str:
    try:
        return f"{float(value):.4g}"
    except ValueError:
        return value


def _final(store: RunStore, experiment_id: str, work: Path, link) -> Optional[Section]:
    run = _latest_of_kind(store, experiment_id, "final")
    if run is None:
        return None
    tags, metrics = run.data.tags, run.data.metrics
    folder = work / "final"
    folder.mkdir()
    images = []
    path = _download(store, run.info.run_id, "confusion_matrix.png", folder)
    if path is not None:
        images.append(("Confusion matrix on the test split", path))
    csv = _download(store, run.info.run_id, "per_class.csv", folder)
    table = None
    if csv is not None:
        table = pd.read_csv(csv, index_col=0).round(2)
        table.index.name = None
        table["Support"] = table["Support"].map(lambda v: "" if pd.isna(v) else str(int(v)))
        table = table.fillna("")
    text = (
        f"Selected entry: {tags.get(Tag.ENTRY)} ({tags.get(Tag.SELECTED_BY, '')}; settings: "
        f"{tags.get(Tag.SETTINGS, '')}), tested once on the test split: "
        f"accuracy {metrics.get('test_accuracy', float('nan')):.4f}, "
        f"loss {metrics.get('test_loss', float('nan')):.4f}. "
        f"Registered as {tags.get(Tag.REGISTERED, '(not registered)')}."
    )
    source = tags.get(Tag.SOURCE_RUN, "")
    links = [("final run", link(run.info.run_id))] + ([("the run whose model it is", link(source))] if source else [])
    return Section("Final model", text, table, images, links)


def _write_markdown(title: str, sections: list[Section], out: Path) -> None:
    """The document and its images: the images built in a folder beside `out`, then put in
    place of the last report's (paths.replace_folder), then the document."""
    resolved = out.resolve()
    made = Path(tempfile.mkdtemp(prefix=f".{out.stem}_files.", dir=resolved.parent))
    try:
        text = _markdown(title, sections, resolved, made)
        paths.replace_folder(assets_folder(resolved), made)
    finally:
        shutil.rmtree(made, ignore_errors=True)
    paths.write_file(out, text)


def _markdown(title: str, sections: list[Section], out: Path, made: Path) -> str:
    """The Markdown text; its images copied into `made`, linked as `<stem>_files/...` (the
    link percent-encoded, so names with spaces, '#', '?' or '%' still resolve)."""
    assets = assets_folder(out)
    parts = [f"# {title}", ""]
    for number, section in enumerate(sections):
        parts += [f"## {section.title}", "", section.text, ""]
        if section.table is not None:
            parts += [tables.markdown_table(section.table), ""]
        for index, (caption, image) in enumerate(section.images):
            name = f"{number:02d}_{index:02d}_{image.name}"
            shutil.copyfile(image, made / name)
            link = urllib.parse.quote((assets / name).relative_to(out.parent).as_posix())
            parts += [f"![{caption}]({link})", f"*{caption}*", ""]
        if section.links:
            parts += ["Runs in MLflow: " + ", ".join(f"[{label}]({url})" for label, url in section.links), ""]
    return "\n".join(parts)


def _html(title: str, sections: list[Section]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2><p>{html.escape(section.text)}</p>")
        if section.table is not None:
            body.append(section.table.to_html(escape=True, index=not isinstance(section.table.index, pd.RangeIndex)))
        for caption, image in section.images:
            data = base64.b64encode(image.read_bytes()).decode()
            body.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        if section.links:
            anchors = ", ".join(
                f'<a href="{html.escape(url)}">{html.escape(label)}</a>' for label, url in section.links
            )
            body.append(f"<p class='runs'>Runs in MLflow: {anchors}</p>")
    return tables.html_document(title, "".join(body))
