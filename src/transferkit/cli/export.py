"""`transferkit export BUNDLE --format onnx|torchscript [--int8]`: a file that predicts what the bundle predicts.

transferkit export runs/ants-linear/best                 # -> best/model.onnx, checked on the run's test images
transferkit export runs/ants-linear/best --int8          # -> best/model.int8.onnx, refused if accuracy strays
transferkit export model/ --check photos/ --out m.onnx   # a bundle without its run folder: check on photos/
"""

from __future__ import annotations

import json
from pathlib import Path

import typer


def export(
    bundle: Path = typer.Argument(..., help="A run's best/ folder (or the run folder)."),
    format: str = typer.Option(
        "onnx", "--format", "-f", help="onnx | torchscript (a zip of code: load only files you trust)."
    ),
    int8: bool = typer.Option(
        False,
        "--int8",
        metavar="",
        help="Quantize to int8 (onnx): ~3.5x smaller; refused, unless "
        "--force, if accuracy drops over 2 points (or, unlabelled, top-1 agreement is under 95%).",
    ),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Where to write it (default: beside the bundle: model.onnx, model.int8.onnx, model.torchscript.pt).",
    ),
    check: list[Path] = typer.Option(
        None,
        "--check",
        metavar="<path>",
        help="Images (files or folders) to check parity on; default: the run's own test (or val) images. Repeatable.",
    ),
    limit: int = typer.Option(500, "--check-limit", help="At most this many check images (evenly spaced)."),
    force: bool = typer.Option(
        False, "--force", metavar="", help="Write the export even when it fails the parity bound."
    ),
    as_json: bool = typer.Option(False, "--json", metavar="", help="Print the parity report as JSON."),
) -> None:
    """Export a model (ONNX or TorchScript) that takes uint8 images and returns the bundle's probabilities."""
    from ..export import export as run_export

    if limit < 1:
        from ..errors import ConfigError

        raise ConfigError(f"--check-limit {limit}: check on at least 1 image (500 is the default).")

    report = run_export(
        bundle,
        format,
        int8=int8,
        out=out,
        check=check or None,
        force=force,
        limit=limit,
        say=(lambda _: None) if as_json else print,
    )
    if as_json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"Wrote {report['export']}"
        + (" (forced: outside the bound)" if report["forced"] else "")
        + f"; parity report: {report['report']}"
    )


def register(app: typer.Typer) -> None:
    app.command()(export)
