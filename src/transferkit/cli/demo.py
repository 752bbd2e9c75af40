"""`transferkit demo`: train on scikit-learn's bundled handwritten digits (no download) and report test accuracy."""

from __future__ import annotations

from pathlib import Path

import typer


def demo(
    out: Path = typer.Option(Path("runs"), help="Folder for the demo data and run."),
    epochs: int = typer.Option(4, help="Maximum epochs."),
    seed: int = typer.Option(0, help="Seed."),
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar="", help="Print only the run's path."),
) -> None:
    """Train the default backbone and strategy on 1,797 real 8x8 digit scans; prints test accuracy and paths."""
    from ..demo import run_demo
    from .train import summarize

    run = run_demo(out=str(out), epochs=epochs, seed=seed, quiet=quiet)
    summarize(run, quiet)


def register(app: typer.Typer) -> None:
    app.command()(demo)
