"""`transferkit similar DATA IMAGE`: the images of DATA most like IMAGE, by the cosine of backbone features.

transferkit similar data/hymenoptera query.jpg -k 5
transferkit similar data/hymenoptera data/hymenoptera/train/ants/0013035.jpg --backbone bundle:runs/x/best --json
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..config import DEFAULT_BACKBONE, SimilarOptions
from .options import command


@command("similar")
def similar(
    data: Path = typer.Argument(..., help="Image folder (labelled or not), list file or HDF5 to search."),
    image: Path = typer.Argument(..., help="The query: an image file (inside DATA or not)."),
    *,
    options: SimilarOptions,
    overrides: dict,
    typed: set,
) -> None:
    """List the --top images of DATA most similar to IMAGE (cosine similarity of features; 1 = the same)."""
    from ..core.similar import similar as run_similar
    from ..progress import make_reporter

    hits = run_similar(
        data,
        str(image.resolve()) if image.exists() else str(image),
        options.top,
        backbone=overrides.get("backbone") or DEFAULT_BACKBONE,
        image_size=overrides.get("image_size"),
        cache_dir=overrides.get("cache_dir"),
        reporter=make_reporter(options.json),
    )
    if options.json:
        print(json.dumps([h.to_dict() for h in hits], ensure_ascii=False))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"Most similar to {escape(str(image))}", title_justify="left")
    for col in ("#", "similarity", "label", "image"):
        table.add_column(col)
    for n, h in enumerate(hits, 1):
        table.add_row(str(n), f"{h.similarity:.3f}", escape(h.label or ""), escape(h.key))
    Console(highlight=False).print(table)


def register(app: typer.Typer) -> None:
    app.command()(similar)
