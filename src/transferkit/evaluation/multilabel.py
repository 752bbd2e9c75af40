"""Multi-label: thresholds, metrics, predictions.csv and the per-label plot (report.py draws the page's sections).

    t = tune_thresholds(val_probs, val_targets)             # per label: the threshold with the best F1 on val
    m = multilabel_metrics(probs, targets, t, classes)      # n, map, micro/macro F1, per-label precision/recall/AP
    write_outputs(run_dir, keys, probs, targets, t, classes)

Numpy only (sklearn.metrics costs 2 s to import); tests/test_multilabel.py checks mAP against scikit-learn.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

PREDICTIONS = "predictions.csv"
PLOTS = (
    (
        "per_label.png",
        "Per-label precision, recall and F1",
        "At each label's own threshold (tuned on val). Low recall: the label is missed; low precision: it is "
        "given to images that do not have it.",
    ),
)


def average_precision(scores, positives) -> float:
    """Area under one label's precision-recall curve as scikit-learn's `average_precision_score` sums it:
    sum over thresholds of (recall step) x precision; NaN for a label with no positive."""
    s, y = np.asarray(scores, np.float64), np.asarray(positives, bool)
    if not y.any():
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last index of each group of tied scores
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(probs, targets) -> float:
    """Mean of the per-label APs over labels with a positive (macro mAP)."""
    p, y = np.asarray(probs, np.float64), np.asarray(targets) > 0.5
    if p.ndim != 2 or not len(p):
        return float("nan")
    aps = [average_precision(p[:, j], y[:, j]) for j in range(p.shape[1]) if y[:, j].any()]
    return float(np.mean(aps)) if aps else float("nan")


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    den = 2 * tp + fp + fn
    return np.divide(2 * tp, den, out=np.zeros(np.shape(tp), dtype=np.float64), where=den > 0)


def tune_thresholds(probs, targets, default: float = 0.5) -> list[float]:
    """Per label, the threshold (p >= t means "has it") with the highest F1 on these images; candidates are the
    probabilities of the label's positives, so each keeps at least one positive. Of equal F1s the lowest is taken,
    and the threshold set halfway down to the next lower probability: val images score 0.97 (yes) and 0.20 (no)
    give 0.585, not 0.97, which would miss a test positive at 0.9. A label with no positive here keeps `default`."""
    p, y = np.asarray(probs, np.float64), np.asarray(targets) > 0.5
    out = []
    for j in range(p.shape[1] if p.ndim == 2 else 0):
        if not y[:, j].any():
            out.append(default)
            continue
        candidates = np.unique(p[y[:, j], j])
        said = p[:, j][None, :] >= candidates[:, None]  # (candidates, images)
        tp = (said & y[:, j]).sum(1)
        fp = (said & ~y[:, j]).sum(1)
        fn = y[:, j].sum() - tp
        f1 = _f1(tp, fp, fn)
        t = candidates[np.flatnonzero(f1 == f1.max())[0]]
        below = p[:, j][p[:, j] < t]
        out.append(float((t + below.max()) / 2) if len(below) else float(t))
    return out


def multilabel_metrics(probs, targets, thresholds, classes: list[str]) -> dict[str, Any]:
    """mAP, micro and macro F1 (and precision/recall) at the thresholds, exact-set accuracy, per-label numbers."""
    p, y = np.asarray(probs, np.float64), np.asarray(targets) > 0.5
    if not len(p):
        return {"n": 0, "map": float("nan"), "micro_f1": float("nan"), "macro_f1": float("nan"), "per_label": {}}
    said = p >= np.asarray(thresholds)[None, :]
    tp, fp, fn = (said & y).sum(0), (said & ~y).sum(0), (~said & y).sum(0)
    precision = np.divide(tp, tp + fp, out=np.zeros(len(tp)), where=(tp + fp) > 0)
    recall = np.divide(tp, tp + fn, out=np.zeros(len(tp)), where=(tp + fn) > 0)
    f1 = _f1(tp, fp, fn)
    ap = [average_precision(p[:, j], y[:, j]) for j in range(len(classes))]
    present = y.any(0)
    micro = float(_f1(np.array(tp.sum()), np.array(fp.sum()), np.array(fn.sum())))
    return {
        "n": int(len(p)),
        "map": mean_average_precision(p, y),
        "micro_f1": micro,
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "micro_precision": float(tp.sum() / max(1, tp.sum() + fp.sum())),
        "micro_recall": float(tp.sum() / max(1, tp.sum() + fn.sum())),
        "exact_match": float((said == y).all(1).mean()),
        "per_label": {
            c: {
                "precision": float(precision[j]),
                "recall": float(recall[j]),
                "f1": float(f1[j]),
                "ap": ap[j],
                "support": int(y[:, j].sum()),
                "threshold": float(thresholds[j]),
            }
            for j, c in enumerate(classes)
        },
    }


def write_outputs(run_dir, keys: list[str], probs, targets, thresholds, classes: list[str]) -> None:
    """predictions.csv (key, true, predicted, the number of wrong labels, each label's probability), then the plot."""
    from ..faults import atomic_path

    run_dir = Path(run_dir)
    p, y = np.asarray(probs, np.float64), np.asarray(targets) > 0.5
    said = p >= np.asarray(thresholds)[None, :]
    with atomic_path(run_dir / PREDICTIONS) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["key", "true", "predicted", "wrong_labels", *[f"p_{c}" for c in classes]])
        for k, row, truth, pred in zip(keys, p, y, said):
            names = lambda mask: "|".join(c for c, m in zip(classes, mask) if m)  # noqa: E731
            w.writerow([k, names(truth), names(pred), int((truth != pred).sum()), *[f"{v:.6f}" for v in row]])
    redraw(run_dir)


def redraw(run_dir) -> list[Path]:
    """plots/per_label.png from report.json's per-label numbers."""
    import json

    from .plots import plot_per_class

    run_dir = Path(run_dir)
    report = run_dir / "report.json"
    per_label = ((json.loads(report.read_text()) if report.is_file() else {}).get("metrics") or {}).get("per_label")
    if not per_label:
        return []
    return [plot_per_class(per_label, list(per_label), run_dir / "plots" / "per_label.png")]


def summary_line(m: dict, split: str) -> str:
    return (
        f"{split} mAP {m['map']:.4f} (micro F1 {m['micro_f1']:.4f}, macro F1 {m['macro_f1']:.4f}, exact set "
        f"{m.get('exact_match', float('nan')):.4f}) on {m['n']} images"
    )


def print_metrics(metrics: dict, classes: list[str], title: str = "Evaluation", console=None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    console.print(f"[bold]{title}[/bold]: {summary_line(metrics, metrics.get('split', ''))}", highlight=False)
    t = Table("label", "threshold", "precision", "recall", "f1", "AP", "support")
    for c in [c for c in classes if c in metrics["per_label"]]:  # the labels scored (evaluate: those the data names)
        v = metrics["per_label"][c]
        t.add_row(
            escape(c),
            f"{v['threshold']:.3f}",
            f"{v['precision']:.3f}",
            f"{v['recall']:.3f}",
            f"{v['f1']:.3f}",
            f"{v['ap']:.3f}",
            str(v["support"]),
        )
    console.print(t)
