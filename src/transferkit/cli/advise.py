"""`transferkit advise DATA`: the strategy `--strategy auto` would pick, with the measurements behind it.

transferkit advise data/hymenoptera
transferkit advise data/digits --backbone efficientnet_lite2 --json
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..config import AdviseOptions
from .options import command


@command("advise")
def advise(
    data: Path = typer.Argument(..., help="Image folder (class sub-folders), pre-split folder, list file or HDF5."),
    *,
    options: AdviseOptions,
    overrides: dict,
    typed: set,
) -> None:
    """Measure DATA (size, shift from ImageNet, frozen-feature accuracy) and name the strategy for it."""
    from ..selection.advise import advise as run_advise
    from ..selection.advise import print_advice

    advice = run_advise(data, quiet=options.json, **overrides)
    if options.json:
        print(json.dumps(advice.to_dict(), indent=2))
        return
    print_advice(advice)


def register(app: typer.Typer) -> None:
    app.command()(advise)
