"""The verbs that read results: compare, select, report, and the MLflow UI."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from harness.cli.common import (
    AnySettingsOption,
    CompareEpochsOption,
    CompareSetOption,
    FormatOption,
    MetricOption,
    RopeOption,
    SourceOption,
    SubsetOption,
    TrackingOption,
    app,
    context,
    echo,
    note,
    scope,
)

# --------------------------------------------------------------------------- comparing


@app.command()
def compare(
    names: Optional[list[str]] = typer.Argument(None, help="Entries to compare (default: all with runs)."),
    chain: Optional[str] = typer.Option(None, "--chain", help="Compare the whole history of this entry."),
    dataset: str = SourceOption,
    subset: Optional[int] = SubsetOption,
    metric: str = MetricOption,
    sets: Optional[list[str]] = CompareSetOption,
    epochs: Optional[int] = CompareEpochsOption,
    any_settings: bool = AnySettingsOption,
    fmt: str = FormatOption,
    out_file: Optional[Path] = typer.Option(None, "--out", help="Write the table to FILE."),
    chart_file: Optional[Path] = typer.Option(
        None, "--chart", help="Write the waterfall of the history (.png, .svg or .pdf)."
    ),
    rope: float = RopeOption,
    tracking_uri: Optional[str] = TrackingOption,
) -> None:
    """The history as a table: each step's verdict against its parent, its change with a 95%
    interval, p corrected across the table (Holm). Runs made with one set of settings: those
    given, else those of the latest run (notes on stderr)."""
    from harness.results import compare as comparing

    ctx = context(tracking_uri)
    output = comparing.Output(fmt, out_file, chart_file)
    result = comparing.compare_command(
        ctx,
        scope(dataset, subset, metric, sets=sets, epochs=epochs, any_settings=any_settings, rope=rope),
        names,
        chain,
        output,
    )
    if out_file:
        note(f"wrote {out_file}")
    else:
        echo(result.text)
        if result.rendered.note():
            note(result.rendered.note())
    for line in result.comparison.notes:
        note(line)
    used = sum(len(str(r.runs).split(",")) for r in result.comparison.frame.itertuples() if r.runs)
    note(f"runs used: {used}, each entry's latest with these settings (ids: --format csv)")
    note(f"runs table: {result.comparison.runs_table}")
    if result.chart:
        note(f"chart: {result.chart}")


@app.command("select")
def select_final(
    names: Optional[list[str]] = typer.Argument(None, help="Candidate entries (default: all with runs)."),
    metric: str = MetricOption,
    dataset: str = SourceOption,
    subset: Optional[int] = SubsetOption,
    sets: Optional[list[str]] = CompareSetOption,
    epochs: Optional[int] = CompareEpochsOption,
    allow_small: bool = typer.Option(
        False, "--allow-small", help="Crown a pick compared over fewer than 3 seeds @champion (said in the output)."
    ),
    tracking_uri: Optional[str] = TrackingOption,
) -> None:
    """Pick the best entry on validation, test its model once, register it: @champion when
    picked among the entries as written, on the whole data, over 3+ seeds each; else
    @candidate. Candidates are the runs of the entries as written, unless --set/--epochs
    name others."""
    from harness.runs.final import select

    chosen = scope(dataset, subset, metric, sets=sets, epochs=epochs)
    select(context(tracking_uri), chosen, names, allow_small=allow_small)


@app.command()
def report(
    fmt: str = typer.Option("md", "--format", help="md | html."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Default: mlruns/reports/report.md|html."),
    dataset: str = SourceOption,
    subset: Optional[int] = SubsetOption,
    metric: str = MetricOption,
    sets: Optional[list[str]] = CompareSetOption,
    epochs: Optional[int] = CompareEpochsOption,
    tracking_uri: Optional[str] = TrackingOption,
) -> None:
    """The study as one Markdown or HTML document: history, curves, tuning, final model."""
    from harness.paths import reports
    from harness.results.report import build_report, check_format

    check_format(fmt)
    ctx = context(tracking_uri)
    target = out_file or reports(ctx.root) / f"report.{fmt}"
    echo(f"wrote {build_report(ctx, scope(dataset, subset, metric, sets=sets, epochs=epochs), target, fmt)}")


@app.command()
def ui(
    port: int = typer.Option(5000, "--port"),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address; 127.0.0.1 keeps it on this machine."),
    verbose: bool = typer.Option(False, "--verbose", help="Show the server's own output (else: mlruns/ui.log)."),
    tracking_uri: Optional[str] = TrackingOption,
) -> None:
    """The MLflow UI over this store, on 127.0.0.1, in its model-training view."""
    from harness.cli.servers import run_ui

    raise typer.Exit(run_ui(context(tracking_uri), host=host, port=port, verbose=verbose))
