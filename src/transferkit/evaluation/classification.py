"""What a classification run leaves beside its metrics: predictions.csv (calibrated probabilities, each image's
loss) and the per-image plots of the evaluated split (the prediction gallery, the top losses). The numbers are in
metrics.py; regression.py and multilabel.py are the same parts for their tasks.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..faults import atomic_path
from .calibration import softmax
from .html import PLOTS_DIR

PREDICTIONS = "predictions.csv"  # one row per evaluated image: what report.html lists as misclassified


def write_predictions(
    path: Path, keys: list[str], labels: np.ndarray, probs: np.ndarray, classes: list[str]
) -> np.ndarray:
    """predictions.csv (calibrated probabilities); returns each image's loss, -log p(true class)."""
    pred = probs.argmax(1)
    p_true = probs[np.arange(len(labels)), labels]
    losses = -np.log(np.clip(p_true, 1e-12, 1.0))
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["key", "true", "predicted", "probability", "p_true", "loss", "correct"])
        for k, y, p, pt, loss, row in zip(keys, labels, pred, p_true, losses, probs):
            w.writerow([k, classes[y], classes[p], f"{row[p]:.6f}", f"{pt:.6f}", f"{loss:.6f}", int(p == y)])
    return losses


def write_outputs(run_dir, keys, images, logits, labels, classes, temperature: float) -> None:
    """predictions.csv (calibrated probabilities), the prediction gallery and the top losses."""
    from .plots import plot_gallery, plot_top_losses

    run_dir = Path(run_dir)
    probs = softmax(logits, temperature)
    losses = write_predictions(run_dir / PREDICTIONS, keys, labels, probs, classes)
    plots = run_dir / PLOTS_DIR
    plot_gallery(images, labels, probs, classes, plots / "gallery.png")
    plot_top_losses(images, labels, probs, losses, classes, plots / "top_losses.png")
