"""`transferkit report RUN_DIR`: (re)write the run's self-contained report.html and print its path."""

from __future__ import annotations

from pathlib import Path

import typer


def report(
    run_dir: Path = typer.Argument(..., help="A run directory (the folder `train` printed)."),
) -> None:
    """Write RUN_DIR/report.html: config, data, strategy, metrics, plots and misclassified images in one file."""
    from ..evaluation.report import build_report

    print(build_report(run_dir))


def register(app: typer.Typer) -> None:
    app.command()(report)
