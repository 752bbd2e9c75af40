"""`transferkit compare DATA`: train several strategies (and backbones) on repeated splits; table, chart, verdict.

    transferkit compare data/hymenoptera --strategies linear,freeze:2,two-phase,finetune,scratch --seeds 3
    transferkit compare data/digits --strategies auto,finetune --backbones efficientnet_lite0,efficientnet_lite2

Every `train` option applies to each run (from config.py), except those compare varies itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .options import config_command


@config_command(exclude=("strategy", "backbone", "backbones", "seed", "out", "name", "quiet"))
def compare(
    data: Path = typer.Argument(..., help="Image folder (class sub-folders), pre-split folder, list file or HDF5."),
    strategies: str = typer.Option("linear,two-phase,finetune", help="Comma-separated strategies (auto allowed)."),
    backbones: str | None = typer.Option(None, help="Comma-separated backbones (default: efficientnet_lite0)."),
    seeds: int = typer.Option(
        3,
        help="Repeats per combination (seeds 0..N-1): data that is not pre-split is split anew for each seed, "
        "pre-split data retrains with each seed; repeat i of every combination shares one split (paired).",
    ),
    out: Path = typer.Option(
        Path("runs"), help="Folder for the comparison's folder (runs, compare.json, compare.png)."
    ),
    name: str | None = typer.Option(None, help="Name of the comparison's folder (default compare-<data>)."),
    as_json: bool = typer.Option(False, "--json", metavar="", help="Print the result as JSON instead of the table."),
    *,
    overrides: dict,
    typed: set,
) -> None:
    """Compare strategies on DATA: mean accuracy ± its 95% interval, time per run, and whether the winner's lead is
    more than noise."""
    from ..comparison import compare as run_compare
    from ..comparison import print_comparison

    result = run_compare(
        data,
        strategies=strategies,
        backbones=backbones,
        seeds=seeds,
        out=str(out),
        name=name,
        quiet=as_json,
        **overrides,
    )
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    print_comparison(result)


def register(app: typer.Typer) -> None:
    app.command()(compare)
