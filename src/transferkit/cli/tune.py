"""`transferkit tune DATA`: search the options that carry a range (config.py) with Optuna; the best settings land in
best.json, which `train --config` reads.

    transferkit tune data/eurosat --trials 20 --budget 10                 # lr, weight decay, smoothing, head
    transferkit tune houses/labels.csv --task regression --target-column log_price   # no smoothing: nothing to smooth
    transferkit tune data/eurosat --space lr,weight_decay,image_size --trials 30
    transferkit train data/eurosat --config runs/tune-eurosat/best.json
"""

from __future__ import annotations

from pathlib import Path

import typer

from ..config import TuneOptions
from .options import command


@command("tune")
def tune(
    data: Path = typer.Argument(..., help="Image folder (class sub-folders), pre-split folder, list file or HDF5."),
    *,
    options: TuneOptions,
    overrides: dict,
    typed: set,
) -> None:
    """Tune the run's options on DATA: a resumable Optuna study, its trials as a table, the best settings saved."""
    import time

    from rich.console import Console

    from ..progress import make_reporter
    from ..tune import tune as run_tune

    started = time.perf_counter()
    console = Console(stderr=True, highlight=False)
    result = run_tune(
        data,
        trials=options.trials,
        budget=options.budget,
        space=options.space if "space" in typed else None,  # not given: the task's default (tune.default_space)
        folds=options.folds,
        repeats=options.repeats,
        out=options.out,
        name=options.name,
        reporter=make_reporter(False, False),
        **overrides,
    )
    print_trials(result, console)
    console.print(
        f"Best {result.best_value:.4f} (trial {_best_number(result)}): {result.objective}; stopped after "
        f"{result.stopped}; {time.perf_counter() - started:.0f} s.\n"
        f"Settings: {result.files['best']}  (transferkit train {data} --config {result.files['best']})\n"
        f"Report: {result.files['report']}"
    )
    print(result.path)


def _best_number(result) -> int:
    return next(r["number"] for r in result.trials if r["value"] == result.best_value and r["state"] == "complete")


def print_trials(result, console) -> None:
    from rich.table import Table

    names = list(dict.fromkeys(k for r in result.trials for k in r["params"]))
    table = Table()
    for col in ("#", "state", "value", *names, "s"):
        table.add_column(col, justify="right" if col not in ("state", "head") else "left")
    best = _best_number(result)
    for r in result.trials:
        cells = [_cell(r["params"].get(n)) for n in names]
        value = "" if r["value"] is None else f"{r['value']:.4f}"
        style = "bold green" if r["number"] == best else None
        seconds = "" if r["seconds"] is None else f"{r['seconds']:.1f}"
        table.add_row(str(r["number"]), r["state"], value, *cells, seconds, style=style)
    console.print(table)


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return "" if v is None else str(v)


def register(app: typer.Typer) -> None:
    app.command()(tune)
