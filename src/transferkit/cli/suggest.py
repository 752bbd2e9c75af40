"""`transferkit suggest POOL`: which images to label next, as a list to fill in that `train` reads.

    transferkit suggest unlabelled/ -n 20                              # a cold start: typical images first
    transferkit suggest unlabelled/ --labelled labels.csv -n 20         # auto: typical while labels are few, then margin
    transferkit suggest unlabelled/ --model runs/x-linear/best --strategy margin
    transferkit suggest tiles/ --features last                          # auto: stages below 100 px, else last

Writes suggest.csv (path, label, score, why) with the label column empty: fill it in, then
`transferkit train suggest.csv` (or append the rows to labels.csv). Rows left without a label are skipped by `train`
with a notice (most of them empty: refused, saying so).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from ..config import SuggestOptions
from .options import command


@command("suggest")
def suggest(
    pool: Path = typer.Argument(..., help="Images to choose from: a folder (any layout) or a list file."),
    *,
    options: SuggestOptions,
    overrides: dict,
) -> None:
    """Rank unlabelled images for labelling and write the list to fill in."""
    from rich.console import Console
    from rich.markup import escape

    from ..core.suggest import suggest_images
    from ..faults import atomic_path
    from ..progress import make_reporter

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    check_out(options.out)  # before any image is read
    picks = suggest_images(
        pool,
        options.labelled,
        model=options.model,
        strategy=options.strategy,
        n=options.number,
        backbone=overrides["backbone"],
        image_size=overrides["image_size"],
        features=options.features,
        device=overrides["device"],
        cache_dir=overrides["cache_dir"],
        seed=overrides["seed"],
        reporter=make_reporter(quiet=options.json),
    )
    out = options.out
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        write_csv(tmp, out, picks)
    if options.json:
        print(json.dumps({**picks.__dict__, "out": str(out)}, indent=2, ensure_ascii=False))
        return
    if picks.left_out:
        console.print(f"{picks.left_out} of {picks.pool} pool images are labelled already (in --labelled): left out.")
    for key, why in picks.skipped[:5]:
        console.print(f"[yellow]unreadable, left out:[/yellow] {escape(key)} ({escape(why)})")
    console.print(f"features {picks.features} at {picks.image_size} px (--features {options.features})")
    console.print(f"strategy {picks.strategy}" + (f" ({picks.note})" if picks.note else ""))
    for key, score, why in zip(picks.keys[:10], picks.scores, picks.why):
        console.print(f"  {score:7.3f}  {escape(Path(key).name)}  {escape(why)}")
    classes = f" ({', '.join(picks.classes[:10])})" if picks.classes else ""
    print(f"Wrote {len(picks.keys)} images to label to {out}: fill in the label column{classes}, then `transferkit "
          f"train {out}` (or add the rows to your labelled list).")  # fmt: skip


HEADER = ["path", "label", "score", "why"]


def check_out(out: Path) -> None:
    """--out may replace a list `suggest` wrote whose label column is still empty; anything else there is the
    user's (their labels file, a list they began to fill in): ConfigError, nothing written."""
    import csv

    from ..errors import ConfigError

    if out.is_dir():
        raise ConfigError(f"--out '{out}' is a folder: give a file name, e.g. {out / 'suggest.csv'}.")
    if not out.exists():
        return
    try:
        with open(out, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error):
        rows = []
    if rows[:1] != [HEADER]:
        raise ConfigError(
            f"--out '{out}' exists and is not a list suggest wrote (header {','.join(HEADER)}), so it was not "
            "overwritten. Give --out a new file name."
        )
    filled = sum(len(r) > 1 and bool(r[1].strip()) for r in rows[1:])
    if filled:
        raise ConfigError(
            f"--out '{out}' holds {filled} label(s) filled in, so it was not overwritten. Give --out a new file name "
            f"(--labelled {out} leaves those images out of the pool and learns from their labels)."
        )


def write_csv(tmp: Path, out: Path, picks) -> None:
    """path (relative to the CSV, as list files read them), label (empty), score, why."""
    import csv

    base = out.resolve().parent
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for key, score, why in zip(picks.keys, picks.scores, picks.why):
            w.writerow([os.path.relpath(key, base), "", f"{score:.4f}", why])


def register(app: typer.Typer) -> None:
    app.command()(suggest)
