"""Classification metrics from logits, with scikit-learn doing the counting."""

from __future__ import annotations

from typing import Any

import numpy as np


def classification_metrics(logits, labels, classes: list[str]) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    logits = torch.as_tensor(logits, dtype=torch.float32)
    labels = torch.as_tensor(labels, dtype=torch.long)
    if len(labels) == 0:
        return {"n": 0, "accuracy": float("nan"), "loss": float("nan"), "per_class": {}, "confusion_matrix": []}
    pred = logits.argmax(1).numpy()
    y = labels.numpy()
    idx = list(range(len(classes)))
    p, r, f1, support = precision_recall_fscore_support(y, pred, labels=idx, zero_division=0)
    return {
        "n": int(len(y)),
        "accuracy": float((pred == y).mean()),
        "loss": float(F.cross_entropy(logits, labels).item()),
        "macro_precision": float(np.mean(p)),
        "macro_recall": float(np.mean(r)),
        "macro_f1": float(np.mean(f1)),
        "per_class": {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i, c in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(y, pred, labels=idx).tolist(),  # rows: true class, columns: predicted
    }


def print_metrics(metrics: dict[str, Any], classes: list[str], title: str = "Evaluation", console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    console.print(
        f"[bold]{title}[/bold]: {metrics['n']} images, accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}, "
        f"macro F1 {metrics.get('macro_f1', float('nan')):.4f}"
    )
    t = Table("class", "precision", "recall", "f1", "support")
    for c in classes:
        m = metrics["per_class"][c]
        t.add_row(c, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
    console.print(t)
    cm = Table("true \\ predicted", *classes, title="Confusion matrix")
    for c, row in zip(classes, metrics["confusion_matrix"]):
        cm.add_row(c, *[str(v) for v in row])
    console.print(cm)
