"""`transferkit predict BUNDLE IMAGE_OR_FOLDER`: the model's answer for each image: the class and probabilities,
the predicted value (regression), or every label over its threshold (multi-label)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

RUNTIMES = ("torch", "onnx")


def predict(
    bundle: Path = typer.Argument(
        ...,
        help="A run's best/ folder (or the run folder); with --runtime onnx, an .onnx "
        "export or a folder holding model.onnx.",
    ),
    images: list[Path] = typer.Argument(..., help="Image files or folders."),
    top_k: int = typer.Option(3, "--top-k", "-k", help="How many classes to show per image."),
    as_json: bool = typer.Option(False, "--json", help="One JSON list: path, label, probability, top_k per image."),
    tta: bool = typer.Option(
        False,
        "--tta",
        help="Test-time augmentation: average 5 crops and their mirrors (10x the compute); "
        "shows where it changed the answer.",
    ),
    precision: str = typer.Option(
        "auto",
        help="auto (fp32 on CPUs, where bf16 changes answers: see BENCHMARKS.md; bf16 on GPUs) | fp32 | bf16 | fp16.",
    ),
    runtime: str = typer.Option(
        "torch", help="torch (the bundle) | onnx (its ONNX export, on ONNX Runtime; see `transferkit export`)."
    ),
) -> None:
    """Predict each image: its class, its value (regression) or its labels (multi-label)."""
    from ..api import load

    if runtime not in RUNTIMES:
        from ..errors import unknown_choice

        raise unknown_choice("--runtime", runtime, RUNTIMES)
    if runtime == "onnx":
        if tta:
            from ..errors import ConfigError

            raise ConfigError("--tta runs on the bundle: use it without --runtime onnx.")
        from ..export.runner import OnnxPredictor, find_onnx

        onnx = OnnxPredictor(find_onnx(bundle))
        results, task = onnx.predict([str(p) for p in images], top_k=top_k), onnx.task
    else:
        predictor = load(bundle, precision=precision)
        results, task = predictor.predict([str(p) for p in images], top_k=top_k, tta=tta), predictor.task
    if as_json:
        print(json.dumps(results, indent=2))
        _fail_if_none_read(results)
        return
    from rich.console import Console
    from rich.table import Table

    columns = task.answer_columns(top_k)  # classification: label, probability, top k; regression: the value; ...
    t = Table("image", *columns, *(["without TTA"] if tta else []))
    for r in results:
        if "error" in r:
            t.add_row(r["path"], "[red]unreadable[/red]", *[""] * (len(columns) - 2), r["error"])
            continue
        cells = [r["path"], *task.answer_cells(r)]
        if tta:
            plain = r["without_tta"]
            changed = plain["label"] != r["label"]
            cells.append(
                f"{'[yellow]' if changed else ''}{plain['label']} {plain['probability']:.3f}{'[/yellow]' if changed else ''}"
            )
        t.add_row(*cells)
    console = Console()
    console.print(t)
    if tta:
        done = [r for r in results if "error" not in r]
        changed = sum(r["without_tta"]["label"] != r["label"] for r in done)
        console.print(f"TTA changed the label of {changed} of {len(done)} image(s) (highlighted).", highlight=False)
    _fail_if_none_read(results)


def _fail_if_none_read(results: list[dict]) -> None:
    """Exit 2 (after printing what was found) when not a single image could be read: nothing was predicted."""
    if results and all("error" in r for r in results):
        from ..errors import TransferkitError

        raise TransferkitError(
            f"None of the {len(results)} image(s) could be read (first: '{results[0]['path']}': "
            f"{results[0]['error']}). Give JPEG, PNG, WebP, BMP, GIF or TIFF files."
        )


def register(app: typer.Typer) -> None:
    app.command()(predict)
