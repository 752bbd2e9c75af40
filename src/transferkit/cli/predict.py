"""`transferkit predict BUNDLE IMAGE_OR_FOLDER`: the model's answer for each image: the class and probabilities,
the predicted value (regression), or every label over its threshold (multi-label)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..config import PredictOptions
from .options import command


@command("predict")
def predict(
    bundle: Path = typer.Argument(
        ...,
        help="A run's best/ folder (or the run folder); with --runtime onnx, an .onnx "
        "export or a folder holding model.onnx.",
    ),
    images: list[Path] = typer.Argument(..., help="Image files or folders."),
    *,
    options: PredictOptions,
) -> None:
    """Predict each image: its class, its value (regression) or its labels (multi-label)."""
    from ..api import load

    top_k, as_json, tta, runtime = options.top_k, options.json, options.tta, options.runtime
    if runtime == "onnx":
        if tta:
            from ..errors import ConfigError

            raise ConfigError("--tta runs on the bundle: use it without --runtime onnx.")
        from ..export.runner import OnnxPredictor, find_onnx

        onnx = OnnxPredictor(find_onnx(bundle))
        results, task = onnx.predict([str(p) for p in images], top_k=top_k), onnx.task
    else:
        predictor = load(bundle, precision=options.precision)
        results, task = predictor.predict([str(p) for p in images], top_k=top_k, tta=tta), predictor.task
    if as_json:
        print(json.dumps(results, indent=2))
        _fail_if_none_read(results)
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    columns = task.answer_columns(top_k)  # classification: label, probability, top k; regression: the value; ...
    t = Table("image", *columns, *(["without TTA"] if tta else []))
    for r in results:
        if "error" in r:
            t.add_row(escape(r["path"]), "[red]unreadable[/red]", *[""] * (len(columns) - 2), escape(r["error"]))
            continue
        cells = [escape(c) for c in (r["path"], *task.answer_cells(r))]  # file and class names are text
        if tta:  # the plain answer (label, value or labels), highlighted where TTA changed it
            plain = r["without_tta"]
            changed = task.answer_key(plain) != task.answer_key(r)
            text = escape(task.answer_text(plain))
            cells.append(f"[yellow]{text}[/yellow]" if changed else text)
        t.add_row(*cells)
    console = Console()
    console.print(t)
    for r in results:  # per image, under the table: the answer above is still given, with this caveat
        if r.get("warning"):
            console.print(f"[yellow]warning[/yellow] {escape(r['path'])}: {escape(r['warning'])}.", highlight=False)
    done = [r for r in results if "error" not in r]
    if tta and done and task.answer_key(done[0]) is not None:  # a value has no answer to change, only to move
        changed = sum(task.answer_key(r["without_tta"]) != task.answer_key(r) for r in done)
        console.print(f"TTA changed the answer of {changed} of {len(done)} image(s) (highlighted).", highlight=False)
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
