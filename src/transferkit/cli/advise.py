"""`transferkit advise DATA`: the strategy `--strategy auto` would pick, with the measurements behind it.

    transferkit advise data/hymenoptera
    transferkit advise data/digits --backbone efficientnet_lite2 --json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def advise(
    data: Path = typer.Argument(..., help="Image folder (class sub-folders), pre-split folder, list file or HDF5."),
    backbone: str = typer.Option("efficientnet_lite0", help="The backbone you will train (it does the measuring)."),
    image_size: Optional[int] = typer.Option(None, help="Input size in pixels (default: what train would use)."),
    split: str = typer.Option("0.7,0.15,0.15", help="train,val,test fractions for data that is not pre-split."),
    seed: int = typer.Option(0, help="Seed of the split and the probe (the same split train makes with it)."),
    layout: str = typer.Option("auto", help="auto | folders | presplit | list | hdf5."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
    as_json: bool = typer.Option(False, "--json", help="Print the advice as JSON."),
) -> None:
    """Measure DATA (size, shift from ImageNet, frozen-feature accuracy) and name the strategy for it."""
    from ..selection.advise import advise as run_advise
    from ..selection.advise import print_advice

    advice = run_advise(data, backbone=backbone, image_size=image_size, split=split, seed=seed, layout=layout,
                        device=device, quiet=as_json)
    if as_json:
        print(json.dumps(advice.to_dict(), indent=2))
        return
    print_advice(advice)


def register(app: typer.Typer) -> None:
    app.command()(advise)
