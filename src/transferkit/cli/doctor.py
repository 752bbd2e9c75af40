"""`transferkit doctor DATA`: counts, sizes, modes and every problem found, with the files and what to do.

    transferkit doctor data/hymenoptera               # summary on the terminal
    transferkit doctor data/hymenoptera --out doctor.json       # and the full report in doctor.json
    transferkit doctor labels.csv --path-column fname --label-column species --json
    transferkit doctor houses/labels.csv --task regression --target-column price
    transferkit doctor eurosat --split 0.7,0.15,0.15 --seed 0    # the parts `train --split ... --seed ...` makes

The report is written only with --out, and never over a file that is not a doctor report.

Exit status 1 when there are errors (files that cannot be used, labels that would be wrong), else 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..config import DoctorOptions
from .options import command

STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
WORD = {"error": "error", "warning": "warning", "info": "note"}
SHOWN = 5  # problems printed per code; doctor.json has them all


@command("doctor")
def doctor(
    data: Path = typer.Argument(..., help="Image folder (class sub-folders), pre-split folder, list file or HDF5."),
    *,
    options: DoctorOptions,
    overrides: dict,
    typed: set,
) -> None:
    """Check DATA before training: what is there, and what is wrong with it."""
    from rich.console import Console
    from rich.progress import Progress

    from ..data.doctor import doctor as run_doctor

    as_json, out = options.json, options.out
    # the data's own parts, unless --split or --seed asks for the parts `train` would make of it
    split_options = ("split", "seed") if {"split", "seed"} & typed else ()
    given = {k: v for k, v in overrides.items() if k not in ("split", "seed") or k in split_options}

    with Progress(console=Console(stderr=True), transient=True, disable=as_json) as bar:
        task = bar.add_task("Checking images", total=None)
        report = run_doctor(data, deep=not options.fast, progress=lambda n: bar.advance(task, n), **given)
    if out is not None:
        report.save(out)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        print_report(report, out)
    raise typer.Exit(1 if report.errors else 0)


def print_report(report, out: Path | None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False)
    if report.counts:
        console.print(escape(f"{report.root} ({report.layout} layout)"), style="bold")
        table = Table()
        table.add_column("class")
        for split in report.counts:
            table.add_column(split, justify="right")
        for name in report.classes:
            table.add_row(escape(name), *(str(c.get(name, 0)) for c in report.counts.values()))
        # images, not labels: a multi-label image counts under each of its labels above, once here
        table.add_row(
            "[bold]images", *(f"[bold]{report.images.get(s, sum(c.values()))}" for s, c in report.counts.items())
        )
        console.print(table)
    if report.sizes:
        w, h = report.sizes["width"], report.sizes["height"]
        console.print(
            f"Sizes: width {w['min']}-{w['max']} (median {w['median']:g}), height {h['min']}-{h['max']} "
            f"(median {h['median']:g}). Modes: {_counts(report.modes)}. Formats: {_counts(report.formats)}."
        )
    if report.imbalance:
        console.print(f"Imbalance (largest / smallest class): {report.imbalance:g}:1.")
    by_code: dict[str, list] = {}
    for p in report.problems:  # already errors first; grouped so that 300 duplicates do not bury the rest
        by_code.setdefault(p.code, []).append(p)
    for code, found in by_code.items():
        for p in found[:SHOWN]:
            console.print(f"[{STYLE[p.severity]}]{WORD[p.severity]}[/] [bold]{code}[/]: {escape(p.message)}")
        if len(found) > SHOWN:
            where = escape(str(out)) if out else "the report: give --out FILE or --json"
            console.print(f"    ... and {len(found) - SHOWN} more {code} problems (all in {where})")
        console.print(f"    [dim]-> {escape(found[0].action)}[/]")
    console.print(report.one_line() + (f" Full report: {escape(str(out))}" if out else " Full report: --out FILE."))


def _counts(c: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items(), key=lambda kv: -kv[1]))


def register(app: typer.Typer) -> None:
    app.command()(doctor)
