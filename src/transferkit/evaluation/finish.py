"""What `fit` does once the best model is chosen: calibrate it, keep its predictions, draw the plots, write report.html.

    finish_run(run_dir, trainer, prepared, "test", splits["test"], skipped, (logits, labels), reporter)

Everything here reuses what training already has in memory (decoded images, test logits); the only new model work
is one pass over the validation split for the temperature, so a few hundred images add a few seconds.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from .calibration import calibrate, softmax
from .plots import plot_gallery, plot_top_losses
from .report import PLOTS_DIR, build_report

PREDICTIONS = "predictions.csv"  # one row per evaluated image: what report.html lists as misclassified


def store_temperature(bundle: Path, temperature: float, fitted_on: str, n: int) -> None:
    """Write the temperature into the bundle's transferkit.json, where `Predictor` reads it."""
    meta_path = bundle / "transferkit.json"
    meta = json.loads(meta_path.read_text())
    meta["calibration"] = {"method": "temperature", "temperature": temperature, "fitted_on": fitted_on, "n": n}
    meta_path.write_text(json.dumps(meta, indent=2))


def write_predictions(path: Path, keys: list[str], labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> np.ndarray:
    """predictions.csv (calibrated probabilities); returns each image's loss, -log p(true class)."""
    pred = probs.argmax(1)
    p_true = probs[np.arange(len(labels)), labels]
    losses = -np.log(np.clip(p_true, 1e-12, 1.0))
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["key", "true", "predicted", "probability", "p_true", "loss", "correct"])
        for k, y, p, pt, loss, row in zip(keys, labels, pred, p_true, losses, probs):
            w.writerow([k, classes[y], classes[p], f"{row[p]:.6f}", f"{pt:.6f}", f"{loss:.6f}", int(p == y)])
    return losses


def validation_logits(trainer, data) -> tuple[np.ndarray, np.ndarray]:
    """The best model's logits on the validation split, for fitting the temperature.

    A backbone that stayed frozen (every phase trained on cached features: `linear`) still has its val features in
    the feature cache, so only the head runs: milliseconds instead of a forward pass of the backbone over val.
    """
    logits, labels = trainer.split_logits("val", data.val)
    return logits.numpy(), np.asarray(labels)


def finish_run(run_dir, trainer, data, eval_split: str, samples, skipped, eval_out, reporter) -> Path | None:
    """Calibrate, store the temperature, write predictions.csv, the plots and report.html. Returns report.html's path.

    `eval_out` is (logits, labels) of the best model on `eval_split`, as fit computed them for report.json.
    """
    run_dir = Path(run_dir)
    logits, labels = (np.asarray(t) for t in eval_out)
    val_logits, val_labels = (logits, labels) if eval_split == "val" else validation_logits(trainer, data)
    cal = calibrate(val_logits, val_labels, logits, labels, measured_on=eval_split)
    store_temperature(run_dir / "best", cal.temperature, "val", cal.fitted_n)
    report_path = run_dir / "report.json"
    report = json.loads(report_path.read_text())
    report["calibration"] = cal.to_dict()
    report_path.write_text(json.dumps(report, indent=2))
    reporter.emit("calibration", **{k: v for k, v in report["calibration"].items() if not k.startswith("bins")})
    reporter.message(
        f"Calibration: {cal.note}" if cal.note else
        f"Calibration: temperature {cal.temperature:.3f} (fitted on val); on {eval_split} ECE "
        f"{cal.ece_before:.4f} -> {cal.ece_after:.4f}, NLL {cal.nll_before:.4f} -> {cal.nll_after:.4f}"
    )

    # The images evaluated, in the order of the logits (decoding dropped unreadable files, in order).
    bad = {k for split, k, _ in skipped if split == eval_split}
    keys = [s.key for s in samples if s.key not in bad]
    images = (data.test if eval_split == "test" else data.val).images
    probs = softmax(logits, cal.temperature)
    losses = write_predictions(run_dir / PREDICTIONS, keys, labels, probs, data.classes)
    try:
        plots = run_dir / PLOTS_DIR
        plot_gallery(images, labels, probs, data.classes, plots / "gallery.png")
        plot_top_losses(images, labels, probs, losses, data.classes, plots / "top_losses.png")
        path = build_report(run_dir)
    except Exception as e:  # noqa: BLE001 - the model is trained and saved; a drawing problem must not lose the run
        reporter.message(f"note: the report could not be written ({type(e).__name__}: {e}); the model is saved. "
                         f"Try again with: transferkit report {run_dir}")
        return None
    reporter.emit("report", path=str(path))
    reporter.message(f"Report: {path}")
    return path
