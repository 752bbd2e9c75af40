"""`transferkit predict BUNDLE IMAGE_OR_FOLDER`: class and probabilities for each image."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def predict(
    bundle: Path = typer.Argument(..., help="A run's best/ folder (or the run folder)."),
    images: list[Path] = typer.Argument(..., help="Image files or folders."),
    top_k: int = typer.Option(3, "--top-k", "-k", help="How many classes to show per image."),
    as_json: bool = typer.Option(False, "--json", help="One JSON list: path, label, probability, top_k per image."),
) -> None:
    """Predict the class of each image."""
    from ..api import load

    results = load(bundle).predict([str(p) for p in images], top_k=top_k)
    if as_json:
        print(json.dumps(results, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table("image", "label", "probability", f"top {top_k}")
    for r in results:
        if "error" in r:
            t.add_row(r["path"], "[red]unreadable[/red]", "", r["error"])
        else:
            t.add_row(r["path"], r["label"], f"{r['probability']:.3f}",
                      ", ".join(f"{x['label']} {x['probability']:.3f}" for x in r["top_k"]))
    Console().print(t)


def register(app: typer.Typer) -> None:
    app.command()(predict)
