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
    tta: bool = typer.Option(False, "--tta", help="Test-time augmentation: average 5 crops and their mirrors (10x the compute); "
                             "shows where it changed the answer."),
    precision: str = typer.Option("auto", help="auto (fp32 on CPUs, where bf16 changes answers: see BENCHMARKS.md; bf16 "
                                  "on GPUs) | fp32 | bf16 | fp16."),
) -> None:
    """Predict the class of each image."""
    from ..api import load

    results = load(bundle, precision=precision).predict([str(p) for p in images], top_k=top_k, tta=tta)
    if as_json:
        print(json.dumps(results, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table("image", "label", "probability", f"top {top_k}", *(["without TTA"] if tta else []))
    for r in results:
        if "error" in r:
            t.add_row(r["path"], "[red]unreadable[/red]", "", r["error"])
            continue
        cells = [r["path"], r["label"], f"{r['probability']:.3f}",
                 ", ".join(f"{x['label']} {x['probability']:.3f}" for x in r["top_k"])]
        if tta:
            plain = r["without_tta"]
            changed = plain["label"] != r["label"]
            cells.append(f"{'[yellow]' if changed else ''}{plain['label']} {plain['probability']:.3f}{'[/yellow]' if changed else ''}")
        t.add_row(*cells)
    console = Console()
    console.print(t)
    if tta:
        done = [r for r in results if "error" not in r]
        changed = sum(r["without_tta"]["label"] != r["label"] for r in done)
        console.print(f"TTA changed the label of {changed} of {len(done)} image(s) (highlighted).", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(predict)
