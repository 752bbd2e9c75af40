"""Classification metrics from logits.

Counted with numpy from the confusion matrix rather than scikit-learn: importing `sklearn.metrics` costs about 2 s on a
2-core laptop, a tenth of a whole `linear` run. tests/test_metrics.py checks every number against scikit-learn.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(K, K) counts; rows: true class, columns: predicted."""
    return np.bincount(y * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(len(num)), where=den > 0)  # 0 where undefined (sklearn's zero_division=0)


def classification_metrics(logits, labels, classes: list[str]) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    logits = torch.as_tensor(logits, dtype=torch.float32)
    labels = torch.as_tensor(labels, dtype=torch.long)
    if len(labels) == 0:
        return {"n": 0, "accuracy": float("nan"), "loss": float("nan"), "per_class": {}, "confusion_matrix": []}
    pred = logits.argmax(1).numpy()
    y = labels.numpy()
    cm = confusion_matrix(y, pred, len(classes))
    tp, support, predicted = np.diag(cm).astype(float), cm.sum(1), cm.sum(0)
    p, r = _ratio(tp, predicted), _ratio(tp, support)
    f1 = _ratio(2 * p * r, p + r)
    # Macro means over the classes the split has or the model answered (scikit-learn's labels by default): a class
    # with no image here and never predicted has no F1 to measure, not an F1 of 0 (a 1-image class whose image went
    # to train made 0.75 + 0.75 read 0.50). The multi-label metrics leave such labels out alike.
    seen = (support > 0) | (predicted > 0)
    return {
        "n": int(len(y)),
        "accuracy": float((pred == y).mean()),
        "loss": float(F.cross_entropy(logits, labels).item()),
        "macro_precision": float(np.mean(p[seen])),
        "macro_recall": float(np.mean(r[seen])),
        "macro_f1": float(np.mean(f1[seen])),
        "per_class": {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i, c in enumerate(classes)
        },
        "confusion_matrix": cm.tolist(),
    }


def print_metrics(metrics: dict[str, Any], classes: list[str], title: str = "Evaluation", console=None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    console.print(
        f"[bold]{title}[/bold]: {metrics['n']} images, accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}, "
        f"macro F1 {metrics.get('macro_f1', float('nan')):.4f}"
    )
    t = Table("class", "precision", "recall", "f1", "support")
    for c in classes:
        m = metrics["per_class"][c]
        t.add_row(escape(c), f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
    console.print(t)
    cm = Table("true \\ predicted", *map(escape, classes), title="Confusion matrix")  # class names are text
    for c, row in zip(classes, metrics["confusion_matrix"]):
        cm.add_row(escape(c), *[str(v) for v in row])
    console.print(cm)
