"""`transferkit compare DATA`: train several strategies (and backbones) on one split over seeds; table, chart, verdict.

    transferkit compare data/hymenoptera --strategies linear,freeze:2,two-phase,finetune,scratch --seeds 3
    transferkit compare data/digits --strategies auto,finetune --backbones efficientnet_lite0,efficientnet_lite2
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def compare(
    data: Path = typer.Argument(..., help="Image folder (class sub-folders), pre-split folder, list file or HDF5."),
    strategies: str = typer.Option("linear,two-phase,finetune", help="Comma-separated strategies (auto allowed)."),
    backbones: Optional[str] = typer.Option(None, help="Comma-separated backbones (default: efficientnet_lite0)."),
    seeds: int = typer.Option(3, help="Runs per combination (seeds 0..N-1), paired across combinations."),
    epochs: int = typer.Option(10, help="Maximum epochs per run (early stopping usually ends sooner)."),
    image_size: Optional[int] = typer.Option(None, help="Input size in pixels (default: follow the data)."),
    split: str = typer.Option("0.7,0.15,0.15", help="train,val,test fractions for data that is not pre-split."),
    layout: str = typer.Option("auto", help="auto | folders | presplit | list | hdf5."),
    out: Path = typer.Option(Path("runs"), help="Folder for the comparison's folder (runs, compare.json, compare.png)."),
    name: Optional[str] = typer.Option(None, help="Name of the comparison's folder (default compare-<data>)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON instead of the table."),
) -> None:
    """Compare strategies on DATA: mean ± std accuracy, time per run, and whether the winner's lead is significant."""
    from ..selection.compare import compare as run_compare
    from ..selection.compare import print_comparison

    result = run_compare(data, strategies=strategies, backbones=backbones, seeds=seeds, out=str(out), name=name,
                         epochs=epochs, image_size=image_size, split=split, layout=layout, device=device,
                         quiet=as_json)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    print_comparison(result)


def register(app: typer.Typer) -> None:
    app.command()(compare)
