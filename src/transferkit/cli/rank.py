"""`transferkit rank DATA`: score candidate backbones for DATA from one forward pass each, best first.

    transferkit rank data/hymenoptera
    transferkit rank data/hymenoptera --candidates efficientnet_lite0,timm:resnet50 --json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def rank(
    data: Path = typer.Argument(..., help="Image folder (class sub-folders), pre-split folder, list file or HDF5."),
    candidates: Optional[str] = typer.Option(None, help="Comma-separated backbone names (default: every built-in one)."),
    image_size: Optional[int] = typer.Option(None, help="Input size in pixels (default: what train would use)."),
    split: str = typer.Option("0.7,0.15,0.15", help="train,val,test fractions for data that is not pre-split."),
    seed: int = typer.Option(0, help="Seed of the split and the probe (the same split train makes with it)."),
    layout: str = typer.Option("auto", help="auto | folders | presplit | list | hdf5."),
    batch_size: int = typer.Option(32, help="Images per forward pass."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON instead of the table."),
) -> None:
    """Rank backbones for DATA: LogME, LEEP, NCE, H-score, a linear probe, size, speed and the ImageNet prior."""
    from ..selection.rank import print_ranking
    from ..selection.rank import rank as run_rank

    rows = run_rank(data, candidates, image_size=image_size, split=split, seed=seed, layout=layout,
                    batch_size=batch_size, device=device, quiet=as_json)
    if as_json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    print_ranking(rows, title=f"Backbones for {data}")


def register(app: typer.Typer) -> None:
    app.command()(rank)
