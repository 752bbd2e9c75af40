"""`transferkit demo`: train on scikit-learn's bundled handwritten digits (no download) and report test accuracy."""

from __future__ import annotations

import typer

from ..config import DemoOptions
from .options import command


@command("demo")
def demo(*, options: DemoOptions) -> None:
    """Train the default backbone and strategy on 1,797 real 8x8 digit scans; prints test accuracy and paths."""
    from ..demo import run_demo
    from .train import summarize

    run = run_demo(out=str(options.out), epochs=options.epochs, seed=options.seed, quiet=options.quiet)
    summarize(run, options.quiet)


def register(app: typer.Typer) -> None:
    app.command()(demo)
