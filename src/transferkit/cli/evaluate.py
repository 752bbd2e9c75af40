"""`transferkit evaluate BUNDLE DATA`: the task's metrics. Classification: accuracy, loss, per-class
precision/recall/F1 and the confusion matrix; regression: R², RMSE, MAE, Pearson and Spearman; multi-label: mAP,
micro/macro F1 and per-label precision/recall at the bundle's thresholds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from ..config import EvaluateOptions
from .options import command


@command("evaluate")
def evaluate(
    bundle: Path = typer.Argument(..., help="A run's best/ folder (or the run folder)."),
    data: Path = typer.Argument(..., help="Data to evaluate on (any layout train accepts)."),
    *,
    options: EvaluateOptions,
    overrides: dict,
    typed: set,
) -> None:
    """Evaluate a saved model on DATA."""
    from ..api import evaluate as run_evaluate

    tta = options.tta
    metrics = run_evaluate(
        bundle,
        data,
        split=options.split,
        tta=tta,
        precision=options.precision,
        **{k: v for k, v in overrides.items() if k in typed},  # else the run's own
    )
    if options.json:
        print(json.dumps(metrics, indent=2))
        return
    from ..bundle import read_meta
    from ..tasks import task_of

    meta = read_meta(bundle)
    title = f"{data} [{metrics['split']}{', TTA' if tta else ''}]"
    task_of(meta).print_metrics(metrics, meta["classes"], title=title)
    print(f"Scored {metrics['scored']}.")  # which split of whose, and how many: never a silent choice
    for warning in metrics["warnings"]:
        print(f"Warning: {warning}", file=sys.stderr)
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
