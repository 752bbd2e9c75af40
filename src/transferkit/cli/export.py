"""`transferkit export BUNDLE --format onnx|torchscript [--int8]`: a file that predicts what the bundle predicts.

transferkit export runs/ants-linear/best                 # -> best/model.onnx, checked on the run's test images
transferkit export runs/ants-linear/best --int8          # -> best/model.int8.onnx, refused if accuracy strays
transferkit export model/ --check photos/ --out m.onnx   # a bundle without its run folder: check on photos/
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..config import ExportOptions
from .options import command


@command("export")
def export(
    bundle: Path = typer.Argument(..., help="A run's best/ folder (or the run folder)."),
    *,
    options: ExportOptions,
) -> None:
    """Export a model (ONNX or TorchScript) that takes uint8 images and answers as the bundle does (class or label
    probabilities, or values)."""
    from ..export import export as run_export

    report = run_export(
        bundle,
        options.format,
        int8=options.int8,
        out=options.out,
        check=list(options.check) or None,
        force=options.force,
        limit=options.check_limit,
        say=(lambda _: None) if options.json else print,
    )
    if options.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"Wrote {report['export']}"
        + (" (forced: outside the bound)" if report["forced"] else "")
        + f"; parity report: {report['report']}"
    )


def register(app: typer.Typer) -> None:
    app.command()(export)
