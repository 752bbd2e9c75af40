"""Tasks: what the head predicts and how it is judged, one object per task in one table (`TASKS`).

    task = get_task(meta["task"])                  # "classification"; regression and multi-label are rows to come
    task.num_outputs(classes)                      # the head's width
    task.loss(weights, label_smoothing)            # what training minimises
    task.score(logits, targets)                    # the epoch's headline number, higher is better (accuracy)
    task.sort_key(loss, score)                     # "is this epoch better": smaller keys win
    task.metrics(logits, targets, classes)         # what evaluate and report.json show
    task.calibrate(val_logits, val_targets, ...)   # post-hoc calibration, stored in the bundle
    task.answers(logits, meta, top_k)              # what predict returns per image

The trainer, the finishing steps, `evaluate` and `predict` ask the task; none of them tests which task it is. Torch is
imported inside the methods, so the table costs nothing to import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import unknown_choice


@dataclass(frozen=True)
class Classification:
    """One label per image out of K classes: softmax over K logits, cross-entropy, accuracy, temperature scaling."""

    name: str = "classification"
    score_name: str = "accuracy"  # the column `val_acc` of metrics.csv holds this

    def num_outputs(self, classes: list[str]) -> int:
        return len(classes)

    def loss_weights(self, targets: list[int], classes: list[str]):
        """--balance weights: each class weighs as much as the others in the loss (n / (K * count))."""
        import torch

        counts = torch.bincount(torch.tensor(targets), minlength=len(classes)).float().clamp(min=1)
        return counts.sum() / (len(classes) * counts)

    def loss(self, weights=None, label_smoothing: float = 0.0):
        from torch import nn

        return nn.CrossEntropyLoss(weight=weights, label_smoothing=label_smoothing)

    def val_loss(self, logits, targets) -> float:
        """Unweighted, unsmoothed: the number early stopping and checkpoint choice compare across epochs."""
        import torch.nn.functional as F

        return float(F.cross_entropy(logits, targets).item()) if len(targets) else float("nan")

    def score(self, logits, targets) -> float:
        return float((logits.argmax(1) == targets).float().mean().item()) if len(targets) else float("nan")

    def sort_key(self, loss: float, score: float) -> tuple[float, float]:
        """The better epoch has the lower val loss; equal losses: the higher accuracy."""
        return (loss, -score)

    def metrics(self, logits, targets, classes: list[str]) -> dict[str, Any]:
        from .evaluation.metrics import classification_metrics

        return classification_metrics(logits, targets, classes)

    def calibrate(self, val_logits, val_targets, eval_logits, eval_targets, measured_on: str):
        """Temperature scaling fitted on val, kept only where it can be trusted (evaluation/calibration.py)."""
        from .evaluation.calibration import calibrate

        return calibrate(val_logits, val_targets, eval_logits, eval_targets, measured_on=measured_on)

    def probabilities(self, logits, temperature: float = 1.0):
        import torch

        return torch.softmax(torch.as_tensor(logits, dtype=torch.float32) / temperature, dim=-1)

    def answers(self, probs, classes: list[str], top_k: int) -> list[dict]:
        """Per image: the label, its probability and the top k (label, probability), as `predict --json` prints.
        `probs` is (N, K), a tensor or an array: numpy only, so torch-free runners (ONNX Runtime) share it."""
        import numpy as np

        p = np.asarray(probs)
        k = max(1, min(top_k, len(classes)))
        out = []
        for row in p.reshape(len(p), -1) if len(p) else []:
            top = np.argsort(-row, kind="stable")[:k]
            out.append(
                {
                    "label": classes[int(top[0])],
                    "probability": float(row[top[0]]),
                    "top_k": [{"label": classes[int(i)], "probability": float(row[i])} for i in top],
                }
            )
        return out


TASKS: dict[str, Any] = {"classification": Classification()}


def get_task(name: str = "classification"):
    if name not in TASKS:
        raise unknown_choice(
            "task",
            name,
            TASKS,
            hint="This transferkit knows the tasks above; a bundle from a newer version may need a newer transferkit.",
        )
    return TASKS[name]
