"""The study as one document (Markdown or HTML): the history table and chart, learning
curves, tuning summaries, and the final model's confusion matrix and per-class table, each
with the runs it came from."""

from __future__ import annotations

import html
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd

from . import tables
from .compare import Scope, chart, compare_table, experiment_for
from .context import Context
from .errors import HarnessError
from .tracking import TAG


@dataclass
class Section:
    title: str
    text: str = ""
    table: Optional[pd.DataFrame] = None
    images: list[tuple[str, Path]] = field(default_factory=list)  # (caption, file in the assets folder)


REPORT_FORMATS = ("md", "html")


def check_format(fmt: str) -> None:
    if fmt not in REPORT_FORMATS:
        raise HarnessError(f"--format {fmt!r}: use md or html")


def build_report(ctx: Context, scope: Scope, out: Path, fmt: str = "md") -> Path:
    """Write the report to `out`, its images to `<out stem>_files/` beside it."""
    check_format(fmt)
    store = ctx.reading_store()
    experiment_id = experiment_for(store, scope.source, scope.subset)
    table, evidence = compare_table(ctx, scope)
    if table.empty:
        raise HarnessError(f"no finished runs on {scope.source!r} to report")
    assets = out.parent / f"{out.stem}_files"
    if assets.exists():
        shutil.rmtree(assets)
    assets.mkdir(parents=True)
    sections = [_history(table, scope.metric, assets)]
    sections.append(_curves(store, table, assets))
    tuning = _tuning(store, experiment_id)
    if tuning is not None:
        sections.append(tuning)
    final = _final(store, experiment_id, assets)
    if final is not None:
        sections.append(final)
    title = f"Ablation study on {scope.source}" + (f" (subset {scope.subset})" if scope.subset else "")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_markdown(title, sections, out) if fmt == "md" else _html(title, sections, out))
    return out


def _history(table: pd.DataFrame, metric: str, assets: Path) -> Section:
    image = chart(table, metric, assets / "history.png")
    runs = "; ".join(f"{row.entry}: {row.runs}" for row in table.itertuples())
    text = (
        "One row per entry, in history order: the metric as mean +/- std over seeds (n), its difference "
        "to the parent entry, Welch's t-test p-value where both have two or more seeds, and the "
        f"report's own figure. Runs used (latest finished per entry): {runs}."
    )
    return Section(
        "History", text, tables.comparison(table, table.columns[2]), [("The history (report's claims in red)", image)]
    )


def _curves(store, table: pd.DataFrame, assets: Path) -> Section:
    images = []
    for row in table.itertuples():
        run_id = row.runs.split(",")[0]
        try:
            path = store.client.download_artifacts(run_id, "learning_curves.png", str(assets))
        except Exception:  # noqa: BLE001 - a run without curves is shown without them
            continue
        target = assets / f"curves_{row.entry}.png"
        Path(path).replace(target)
        images.append((f"{row.entry} (run {run_id})", target))
    return Section("Learning curves", "Loss and accuracy per epoch, train and validation.", None, images)


def _tuning(store, experiment_id: str) -> Optional[Section]:
    studies = store.runs([experiment_id], f"tags.`{TAG}kind` = 'study'")
    if not studies:
        return None
    rows = []
    for run in studies:
        tags, metrics = run.data.tags, run.data.metrics
        best = {k[len(f"{TAG}best.") :]: v for k, v in tags.items() if k.startswith(f"{TAG}best.")}
        rows.append(
            {
                "study": tags.get(f"{TAG}study", run.info.run_name),
                "trials": int(metrics.get("trials", 0)),
                "pruned": int(metrics.get("trials_pruned", 0)),
                "epochs spent": int(metrics.get("epochs_spent", 0)),
                "best value": f"{metrics['best_value']:.4f}" if "best_value" in metrics else "",
                "best params": ", ".join(f"{k}={v}" for k, v in best.items()),
                "run": run.info.run_id,
            }
        )
    return Section(
        "Tuning", "Optuna studies on this dataset (trial 0 of each is the entry itself).", pd.DataFrame(rows)
    )


def _final(store, experiment_id: str, assets: Path) -> Optional[Section]:
    finals = store.runs(
        [experiment_id], f"attributes.status = 'FINISHED' and tags.`{TAG}kind` = 'final'", max_results=1
    )
    if not finals:
        return None
    run = finals[0]
    tags = run.data.tags
    folder = assets / "final"
    folder.mkdir(exist_ok=True)
    images = []
    try:
        path = store.client.download_artifacts(run.info.run_id, "confusion_matrix.png", str(folder))
        images.append(("Confusion matrix on the test split", Path(path)))
        csv = store.client.download_artifacts(run.info.run_id, "per_class.csv", str(folder))
        table = pd.read_csv(csv, index_col=0).round(2)
        table.index.name = None
        table["Support"] = table["Support"].map(lambda v: "" if pd.isna(v) else str(int(v)))
        table = table.fillna("")
    except Exception:  # noqa: BLE001
        table = None
    metrics = run.data.metrics
    text = (
        f"Selected entry: {tags.get(f'{TAG}entry')} ({tags.get(f'{TAG}selected_by', '')}), model of run "
        f"{tags.get(f'{TAG}source_run')}, tested once on the test split in run {run.info.run_id}: "
        f"accuracy {metrics.get('test_accuracy', float('nan')):.4f}, "
        f"loss {metrics.get('test_loss', float('nan')):.4f}. "
        f"Registered as {tags.get(f'{TAG}registered', '(not registered)')}."
    )
    return Section("Final model", text, table, images)


def _markdown(title: str, sections: list[Section], out: Path) -> str:
    parts = [f"# {title}", ""]
    for section in sections:
        parts += [f"## {section.title}", "", section.text, ""]
        if section.table is not None:
            parts += [tables.markdown_table(section.table), ""]
        for caption, image in section.images:
            parts += [f"![{caption}]({image.relative_to(out.parent).as_posix()})", f"*{caption}*", ""]
    return "\n".join(parts)


def _html(title: str, sections: list[Section], out: Path) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2><p>{html.escape(section.text)}</p>")
        if section.table is not None:
            body.append(section.table.to_html(escape=True, index=not isinstance(section.table.index, pd.RangeIndex)))
        for caption, image in section.images:
            src = html.escape(image.relative_to(out.parent).as_posix())
            body.append(
                f'<figure><img src="{src}" alt="{html.escape(caption)}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px}img{max-width:100%}"
    )
    head = f"<meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style>"
    return f"<!doctype html><html><head>{head}</head><body>{''.join(body)}</body></html>"
