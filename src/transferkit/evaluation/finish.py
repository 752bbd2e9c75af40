"""What `fit` does once the best model is chosen: calibrate it, keep its predictions, draw the plots, write report.html.

    finish_run(run_dir, trainer, prepared, "test", splits["test"], skipped, (logits, labels), reporter)

Everything here reuses what training already has in memory (decoded images, test logits); the only new model work
is one pass over the validation split for the temperature, so a few hundred images add a few seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bundle import update_meta
from ..rundir import RunDir
from .report import build_report


def store_temperature(bundle: Path, temperature: float, fitted_on: str, n: int, note: str = "") -> None:
    """Write the temperature into the bundle's transferkit.json, where `Predictor` reads it.

    A temperature that was not fitted or not trusted is stored as 1 with the note saying why, so that a bundle read
    on its own tells "calibrated to T = 1" apart from "left alone".
    """
    calibration = {"method": "temperature", "temperature": temperature, "fitted_on": fitted_on, "n": n}
    update_meta(bundle, calibration={**calibration, **({"note": note} if note else {})})


def calibration_line(cal, eval_split: str) -> str:
    """The one line `fit` prints: which temperature is kept, why, and what it does on the evaluated split."""
    if cal.fitted:
        return (
            f"Calibration: temperature {cal.temperature:.3f} (fitted on {cal.fitted_n} val images; {cal.check}); "
            f"on {eval_split} ECE {cal.ece_before:.4f} -> {cal.ece_after:.4f}, "
            f"NLL {cal.nll_before:.4f} -> {cal.nll_after:.4f}"
        )
    return (
        f"Calibration: temperature 1 kept. {cal.note} On {eval_split}: ECE {cal.ece_before:.4f}, "
        f"NLL {cal.nll_before:.4f}."
    )


def validation_logits(trainer, data) -> tuple[np.ndarray, np.ndarray]:
    """The best model's logits on the validation split, for fitting the temperature.

    A backbone that stayed frozen (every phase trained on cached features: `linear`) still has its val features in
    the feature cache, so only the head runs: milliseconds instead of a forward pass of the backbone over val.
    """
    logits, labels = trainer.split_logits("val", data.val)
    return logits.numpy(), np.asarray(labels)


def finish_run(run_dir, trainer, data, eval_split: str, samples, skipped, eval_out, reporter) -> Path | None:
    """Calibrate, store the temperature, write predictions.csv, the plots and report.html. Returns report.html's path.

    `eval_out` is (logits, labels) of the best model on `eval_split`, as fit computed them for report.json. What is
    calibrated and what predictions.csv holds are the task's (tasks.py): regression and multi-label calibrate nothing.
    """
    run_dir = Path(run_dir)
    logits, labels = (np.asarray(t) for t in eval_out)
    temperature = 1.0
    val_logits, val_labels = (logits, labels) if eval_split == "val" else (None, None)
    cal = _calibrate(trainer, data, eval_split, logits, labels, val_logits, val_labels)
    if cal is not None:
        temperature = cal.temperature
        store_temperature(run_dir / "best", cal.temperature, "val", cal.fitted_n, cal.note)
        report = RunDir(run_dir).update_json(RunDir.REPORT, calibration=cal.to_dict())
        reporter.emit("calibration", **{k: v for k, v in report["calibration"].items() if not k.startswith("bins")})
        reporter.message(calibration_line(cal, eval_split))

    # The images evaluated, in the order of the logits (decoding dropped unreadable files, in order).
    bad = {k for split, k, _ in skipped if split == eval_split}
    keys = [s.key for s in samples if s.key not in bad]
    images = (data.test if eval_split == "test" else data.val).images
    try:
        trainer.task.write_outputs(run_dir, keys, images, logits, labels, data.classes, temperature)
        path = build_report(run_dir)
    except Exception as e:  # noqa: BLE001 - the model is trained and saved; a drawing problem must not lose the run
        reporter.message(
            f"note: the report could not be written ({type(e).__name__}: {e}); the model is saved. "
            f"Try again with: transferkit report {run_dir}"
        )
        return None
    reporter.emit("report", path=str(path))
    reporter.message(f"Report: {path}")
    return path


def _calibrate(trainer, data, eval_split: str, logits, labels, val_logits, val_labels):
    """The task's calibration (classification: temperature scaling fitted on val), or None for tasks without one,
    which then cost no pass over val."""
    if not trainer.task.calibrates:
        return None
    if val_logits is None:
        val_logits, val_labels = validation_logits(trainer, data)
    return trainer.task.calibrate(val_logits, val_labels, logits, labels, measured_on=eval_split)
