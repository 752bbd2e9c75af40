"""`transferkit evaluate BUNDLE DATA`: the task's metrics. Classification: accuracy, loss, per-class
precision/recall/F1 and the confusion matrix; regression: R², RMSE, MAE, Pearson and Spearman; multi-label: mAP,
micro/macro F1 and per-label precision/recall at the bundle's thresholds."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .options import config_command, data_source


@config_command(data_source)
def evaluate(
    bundle: Path = typer.Argument(..., help="A run's best/ folder (or the run folder)."),
    data: Path = typer.Argument(..., help="Data to evaluate on (any layout train accepts)."),
    split: str = typer.Option(
        "auto", help="auto (the run's test split, else test/, val/, all) | test | val | train | all."
    ),
    as_json: bool = typer.Option(False, "--json", metavar="", help="Print one JSON object instead of tables."),
    tta: bool = typer.Option(
        False,
        "--tta",
        metavar="",
        help="Test-time augmentation: average 5 crops and their mirrors (10x the compute); prints what it changed.",
    ),
    precision: str = typer.Option(
        "auto",
        help="auto (fp32 on CPUs, where bf16 changes answers: see BENCHMARKS.md; bf16 on GPUs) | fp32 | bf16 | fp16.",
    ),
    *,
    overrides: dict,
    typed: set,
) -> None:
    """Evaluate a saved model on DATA."""
    from ..api import evaluate as run_evaluate

    metrics = run_evaluate(
        bundle, data, split=split, tta=tta, precision=precision, **{k: v for k, v in overrides.items() if k in typed}
    )  # else the run's own
    if as_json:
        print(json.dumps(metrics, indent=2))
        return
    from ..bundle import read_meta
    from ..tasks import get_task

    meta = read_meta(bundle)
    title = f"{data} [{metrics['split']}{', TTA' if tta else ''}]"
    get_task(meta.get("task", "classification"), meta).print_metrics(metrics, meta["classes"], title=title)
    if tta:
        from ..evaluation.tta import describe

        print(describe(metrics["tta"]))
    if metrics["skipped"]:
        print(
            f"Skipped {len(metrics['skipped'])} unreadable file(s): "
            + "; ".join(s["key"] for s in metrics["skipped"][:5])
        )


def register(app: typer.Typer) -> None:
    app.command()(evaluate)
