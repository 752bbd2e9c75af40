"""`transferkit rank DATA`: score candidate backbones for DATA from one forward pass each, best first.

transferkit rank data/hymenoptera
transferkit rank data/hymenoptera --candidates efficientnet_lite0,timm:resnet50 --json
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..config import RankOptions
from .options import command


@command("rank")
def rank(
    data: Path = typer.Argument(..., help="Image folder (class sub-folders), pre-split folder, list file or HDF5."),
    *,
    options: RankOptions,
    overrides: dict,
    typed: set,
) -> None:
    """Rank backbones for DATA: LogME, LEEP, NCE, H-score, a linear probe, size, speed and the ImageNet prior."""
    from ..selection.rank import print_ranking
    from ..selection.rank import rank as run_rank

    rows = run_rank(data, options.candidates, quiet=options.json, **overrides)
    if options.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    print_ranking(rows, title=f"Backbones for {data}", task=overrides.get("task", "classification"))


def register(app: typer.Typer) -> None:
    app.command()(rank)
