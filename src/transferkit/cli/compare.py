"""`transferkit compare DATA`: train several strategies (and backbones) on repeated splits; table, chart, verdict.

    transferkit compare data/hymenoptera --strategies linear,freeze:2,two-phase,finetune,scratch --seeds 3
    transferkit compare data/digits --strategies auto,finetune --backbones efficientnet_lite0,efficientnet_lite2

Every `train` option applies to each run (from config.py), except those compare varies itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..config import CompareOptions
from .options import command


@command("compare")
def compare(
    data: Path = typer.Argument(..., help="Image folder (class sub-folders), pre-split folder, list file or HDF5."),
    *,
    options: CompareOptions,
    overrides: dict,
    typed: set,
) -> None:
    """Compare strategies on DATA: mean accuracy ± its 95% interval, time per run, and whether the winner's lead is
    more than noise."""
    from ..comparison import compare as run_compare
    from ..comparison import print_comparison

    result = run_compare(
        data,
        strategies=options.strategies,
        backbones=options.backbones,
        seeds=options.seeds,
        out=str(options.out),
        name=options.name,
        quiet=options.json,
        **overrides,
    )
    if options.json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    print_comparison(result)


def register(app: typer.Typer) -> None:
    app.command()(compare)
