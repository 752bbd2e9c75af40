"""Classification: one label per image out of K classes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..data.targets import CLASSES
from .base import Task


@dataclass(frozen=True)
class Classification(Task):
    """One label per image out of K classes: softmax over K logits, cross-entropy, accuracy, temperature scaling."""

    name = "classification"
    labels = CLASSES  # one class index per image
    title = "Image classification"
    calibrates = True
    score_name = "accuracy"
    score_label = "accuracy"
    score_column = "acc"  # metrics.csv's val_acc, as ever
    proportion = True
    headline = ("accuracy", "loss", "macro_f1")
    probe = "classes"
    data_needs = "class folders, a list file, HDF5 or from_arrays with one class per image"
    data_kind = "classes"
    class_logits = True
    folder_labels = True
    export_contract = "'probabilities': float32 (N, K) = softmax(logits / temperature), classes in metadata order"
    agreement_words = "top-1 agreement"
    difference_words = "max |Δp|"
    parity_aliases = {"agreement": "top1_agreement", "max_abs_diff": "max_abs_dp", "mean_abs_diff": "mean_abs_dp"}

    def fit_head(self, head, train, val, *, label_smoothing: float = 0.0, class_weights=None):
        """('lbfgs', result): L-BFGS logistic regression, its L2 picked on val (core/solvers.py); None: not a
        linear head."""
        from ..core.solvers import fit_logistic

        res = fit_logistic(head, train, val, label_smoothing=label_smoothing, class_weights=class_weights)
        return None if res is None else ("lbfgs", res)

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
        import torch
        import torch.nn.functional as F

        if not len(targets):
            return float("nan")
        return float(F.cross_entropy(torch.as_tensor(logits).float(), torch.as_tensor(targets).long()).item())

    def score(self, logits, targets) -> float:
        """Accuracy, on the logits as they are (every epoch: no softmax needed for the argmax)."""
        import torch

        if not len(targets):
            return float("nan")
        return float((torch.as_tensor(logits).argmax(-1) == torch.as_tensor(targets)).float().mean().item())

    def output_score(self, outputs, targets) -> float:
        import numpy as np

        p, y = np.asarray(outputs), np.asarray(targets)
        return float((p.argmax(-1) == y).mean()) if len(y) else float("nan")

    def metrics(self, logits, targets, classes: list[str]) -> dict[str, Any]:
        from ..evaluation.metrics import classification_metrics

        return classification_metrics(logits, targets, classes)

    def summary(self, m: dict, split: str, interval: str = "") -> str:
        """The line `train` prints: 'test accuracy 0.9133 (interval) (loss 0.25, macro F1 0.91) on 150 images'."""
        return (
            f"[bold]{split} accuracy {m['accuracy']:.4f}[/bold]{interval} (loss {m['loss']:.4f}, macro F1 "
            f"{m['macro_f1']:.4f}) on {m['n']} images"
        )

    def print_metrics(self, metrics: dict, classes: list[str], title: str) -> None:
        from ..evaluation.metrics import print_metrics

        print_metrics(metrics, classes, title=title)

    def calibrate(self, val_logits, val_targets, eval_logits, eval_targets, measured_on: str):
        """Temperature scaling fitted on val, kept only where it can be trusted (evaluation/calibration.py)."""
        from ..evaluation.calibration import calibrate

        return calibrate(val_logits, val_targets, eval_logits, eval_targets, measured_on=measured_on)

    def write_outputs(self, run_dir, keys, images, logits, labels, classes, temperature: float = 1.0) -> None:
        """predictions.csv and the per-image plots (gallery, top losses) of the evaluated split."""
        from ..evaluation.classification import write_outputs

        write_outputs(run_dir, keys, images, logits, labels, classes, temperature)

    # ---- outputs and answers --------------------------------------------------------------------------------
    def probabilities(self, logits, temperature: float = 1.0):
        import torch

        return torch.softmax(torch.as_tensor(logits, dtype=torch.float32) / temperature, dim=-1)

    def average_views(self, view_logits, temperature: float = 1.0):
        """(N, V, K) logits of TTA views -> (N, K) probabilities: the mean of the views' softmaxes."""
        from ..evaluation.tta import average_views

        return average_views(view_logits, temperature)

    def tta_logits(self, view_logits):
        """The log of the views' mean probabilities: logits whose softmax is the TTA prediction."""
        from ..evaluation.tta import averaged_logits

        return averaged_logits(view_logits)

    def tta_summary(self, view_logits, targets) -> dict:
        """Accuracy and loss without and with TTA, and the answers it changed, fixed and broke."""
        from ..evaluation.tta import tta_summary

        return {"score": self.score_name, **tta_summary(view_logits, targets)}

    def decisions(self, outputs):
        import numpy as np

        return np.asarray(outputs).argmax(-1)

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

    def answer_columns(self, top_k: int) -> list[str]:
        """`predict`'s table: the columns after the image's path."""
        return ["label", "probability", f"top {top_k}"]

    def answer_cells(self, answer: dict) -> list[str]:
        top = ", ".join(f"{x['label']} {x['probability']:.3f}" for x in answer["top_k"])
        return [answer["label"], f"{answer['probability']:.3f}", top]

    def short_answer(self, answer: dict) -> dict:
        return {"label": answer["label"], "probability": answer["probability"]}

    def answer_key(self, answer: dict):
        return answer["label"]

    def answer_text(self, answer: dict) -> str:
        return f"{answer['label']} {answer['probability']:.3f}"

    # ---- export and report -------------------------------------------------------------------------------------
    def export_head(self, logits, temperature: float = 1.0):
        import torch

        return torch.softmax(logits / temperature, dim=1)

    def report_sections(self) -> dict:
        from ..evaluation import sections

        return sections.CLASSIFICATION
