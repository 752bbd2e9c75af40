"""Regression: metrics, predictions.csv and the two plots, from predicted and true values (report.py draws the
page's sections from them).

    m = regression_metrics(predicted, true, train_mean)     # n, mae, rmse, r2, pearson, spearman, rmse_of_mean
    write_outputs(run_dir, keys, predicted, true, ["log_price"])
    redraw(run_dir)                                          # plots/predicted_vs_true.png, plots/residuals.png

Numpy and scipy.stats only (no sklearn.metrics import: 2 s). tests/test_regression.py checks them against sklearn.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

PREDICTIONS = "predictions.csv"
# (file in plots/, title, how to read it): the report embeds them in its results section
PLOTS = (
    (
        "predicted_vs_true.png",
        "Predicted against true",
        "Each dot an evaluated image; on the diagonal the prediction is exact. A cloud flatter than the diagonal: "
        "the model pulls towards the mean.",
    ),
    (
        "residuals.png",
        "Residuals",
        "Prediction minus truth against the prediction (left) and their histogram (right): a trend or a funnel says "
        "the errors depend on the value.",
    ),
)


def r2(predicted, true) -> float:
    """1 - SS_res / SS_tot: 0 for predicting the mean of `true`, 1 for exact predictions."""
    p, y = np.asarray(predicted, np.float64).reshape(-1), np.asarray(true, np.float64).reshape(-1)
    total = float(((y - y.mean()) ** 2).sum()) if len(y) else 0.0
    return 1.0 - float(((y - p) ** 2).sum()) / total if total > 0 else float("nan")


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1]) if len(a) > 1 and a.std() > 0 and b.std() > 0 else float("nan")


def regression_metrics(predicted, true, train_mean: float | None = None) -> dict[str, Any]:
    """MAE, RMSE, R², Pearson and Spearman correlation; rmse_of_mean: the RMSE of always answering the training
    targets' mean (the baseline R² 0 stands for, up to the mean's shift between splits)."""
    from scipy.stats import rankdata

    p, y = np.asarray(predicted, np.float64).reshape(-1), np.asarray(true, np.float64).reshape(-1)
    if not len(y):
        return {"n": 0, "mae": float("nan"), "rmse": float("nan"), "r2": float("nan")}
    err = p - y
    base = y.mean() if train_mean is None else train_mean
    return {
        "n": int(len(y)),
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "r2": r2(p, y),
        "pearson": _corr(p, y),
        "spearman": _corr(rankdata(p), rankdata(y)),
        "rmse_of_mean": float(np.sqrt(((y - base) ** 2).mean())),
        "target_mean": float(y.mean()),
        "target_std": float(y.std()),
    }


def write_outputs(run_dir, keys: list[str], predicted, true, classes: list[str]) -> None:
    """predictions.csv (key, true, predicted, residual, abs_error), then the plots from it."""
    from ..faults import atomic_path

    run_dir = Path(run_dir)
    p, y = np.asarray(predicted, np.float64).reshape(-1), np.asarray(true, np.float64).reshape(-1)
    with atomic_path(run_dir / PREDICTIONS) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["key", "true", "predicted", "residual", "abs_error"])
        for k, t, v in zip(keys, y, p):
            w.writerow([k, f"{t:.6g}", f"{v:.6g}", f"{v - t:.6g}", f"{abs(v - t):.6g}"])
    redraw(run_dir, classes[0] if classes else "target")


def read_predictions(run_dir: Path) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    path = Path(run_dir) / PREDICTIONS
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if "residual" in r]
    if not rows:
        return None
    return (
        [r["key"] for r in rows],
        np.array([float(r["true"]) for r in rows]),
        np.array([float(r["predicted"]) for r in rows]),
    )


def redraw(run_dir, target: str | None = None) -> list[Path]:
    """plots/predicted_vs_true.png and plots/residuals.png from predictions.csv."""
    import json

    from .plots import plot_predicted_vs_true, plot_residuals

    run_dir = Path(run_dir)
    found = read_predictions(run_dir)
    if found is None:
        return []
    if target is None:
        config = run_dir / "config.json"
        classes = json.loads(config.read_text()).get("classes") if config.is_file() else None
        target = (classes or ["target"])[0]
    _, y, p = found
    plots = run_dir / "plots"
    return [
        plot_predicted_vs_true(y, p, target, plots / "predicted_vs_true.png"),
        plot_residuals(y, p, target, plots / "residuals.png"),
    ]


def summary_line(m: dict, split: str) -> str:
    """'test R² 0.512 (RMSE 0.61, MAE 0.46; the mean's RMSE 0.87) on 81 images'."""
    return (
        f"{split} R² {m['r2']:.4f} (RMSE {m['rmse']:.4g}, MAE {m['mae']:.4g}; the mean's RMSE "
        f"{m.get('rmse_of_mean', float('nan')):.4g}; Pearson {m.get('pearson', float('nan')):.3f}, Spearman "
        f"{m.get('spearman', float('nan')):.3f}) on {m['n']} images"
    )


def print_metrics(metrics: dict, target: str, title: str = "Evaluation", console=None) -> None:
    from rich.console import Console

    console = console or Console()
    console.print(f"[bold]{title}[/bold]: {target}: {summary_line(metrics, metrics.get('split', ''))}", highlight=False)
