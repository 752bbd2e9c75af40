"""Multi-label: any number of K labels per image."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..data.targets import SETS
from .base import Task


@dataclass(frozen=True)
class Multilabel(Task):
    """Any number of K labels per image: K sigmoid outputs, binary cross-entropy, judged by mean average precision;
    after training each label gets the threshold that maximises its F1 on val."""

    thresholds: tuple[float, ...] = ()  # per label; empty: 0.5 each

    name = "multilabel"
    labels = SETS  # the class indices an image has, possibly none
    title = "Multi-label image classification"
    score_name = "map"
    score_label = "mAP"
    score_column = "map"
    headline = ("map", "micro_f1", "macro_f1", "loss")
    probe = "label_sets"
    data_needs = (
        "a list file or CSV with several labels per image ('a|b' in one column, or one 0/1 column per "
        "label), an HDF5 file with a 0/1 row per image, or from_arrays(x, y, task='multilabel')"
    )
    data_kind = "multilabel targets"
    state_keys = ("thresholds",)
    export_contract = (
        "'probabilities': float32 (N, K) = sigmoid(logits), labels in metadata order; a label is present when its "
        "probability is at least its threshold (metadata 'thresholds')"
    )
    agreement_words = "label-set agreement"
    difference_words = "max |Δp|"

    # ---- state -------------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"thresholds": list(self.thresholds)} if self.thresholds else {}

    def from_meta(self, meta):
        return dataclasses.replace(self, thresholds=tuple(float(t) for t in meta.get("thresholds") or ()))

    def cut(self, k: int):
        import numpy as np

        return np.asarray(self.thresholds if len(self.thresholds) == k else [0.5] * k, dtype=np.float64)

    def restricted(self, keep: list[int]):
        """Scoring labels `keep` of the model's alone: each keeps its own threshold."""
        return (
            dataclasses.replace(self, thresholds=tuple(self.thresholds[i] for i in keep)) if self.thresholds else self
        )

    def tune(self, val_logits, val_targets):
        from ..evaluation.multilabel import tune_thresholds

        return dataclasses.replace(self, thresholds=tuple(tune_thresholds(self.probabilities(val_logits), val_targets)))

    # ---- labels, head, loss ------------------------------------------------------------------------------------
    def strata(self, y):
        """Each row's first label (0/1 rows): folds hold their share of every label that leads a row."""
        import numpy as np

        return np.asarray(y).argmax(1)

    def targets(self, labels, classes: list[str]):
        """Label sets (tuples of indices) -> (N, K) multi-hot float32 rows."""
        import numpy as np

        out = np.zeros((len(labels), len(classes)), dtype=np.float32)
        for i, lab in enumerate(labels):
            out[i, list(lab)] = 1.0
        return out

    def relabel(self, label, remap):
        known = [remap.get(i) for i in label]
        return None if None in known else tuple(sorted(known))

    def loss_weights(self, targets, classes: list[str]):
        """--balance weights: each label's positives weigh (negatives / positives), BCE's pos_weight."""
        import torch

        y = torch.as_tensor(targets, dtype=torch.float32)
        pos = y.sum(0).clamp(min=1)
        return (len(y) - pos).clamp(min=1) / pos

    def loss(self, weights=None, label_smoothing: float = 0.0):
        import torch.nn.functional as F

        def loss(logits, targets):
            y = targets.to(logits.dtype)
            y = y * (1 - label_smoothing) + 0.5 * label_smoothing
            return F.binary_cross_entropy_with_logits(logits, y, pos_weight=weights)

        return loss

    def val_loss(self, logits, targets) -> float:
        import torch
        import torch.nn.functional as F

        if not len(targets):
            return float("nan")
        logits = torch.as_tensor(logits, dtype=torch.float32)
        return float(F.binary_cross_entropy_with_logits(logits, torch.as_tensor(targets, dtype=torch.float32)))

    def fit_head(self, head, train, val, *, label_smoothing: float = 0.0, class_weights=None):
        """('lbfgs', result): one logistic regression per label (L-BFGS), the L2 picked on val."""
        from ..core.solvers import fit_logistic

        res = fit_logistic(
            head, train, val, loss=self.loss(class_weights, label_smoothing), val_loss=self.val_loss, score=self.score
        )
        return None if res is None else ("lbfgs", res)

    # ---- judging -----------------------------------------------------------------------------------------------
    def probabilities(self, logits, temperature: float = 1.0):
        import numpy as np

        z = np.asarray(logits, dtype=np.float64)
        return 1.0 / (1.0 + np.exp(-z))

    def output_score(self, outputs, targets) -> float:
        from ..evaluation.multilabel import mean_average_precision

        return mean_average_precision(outputs, targets)

    def metrics(self, logits, targets, classes: list[str]) -> dict[str, Any]:
        from ..evaluation.multilabel import multilabel_metrics

        probs = self.probabilities(logits)
        return {
            **multilabel_metrics(probs, targets, self.cut(len(classes)), classes),
            "loss": self.val_loss(logits, targets),
        }

    def summary(self, m: dict, split: str, interval: str = "") -> str:
        from ..evaluation.multilabel import summary_line

        return "[bold]" + summary_line(m, split) + "[/bold]"

    def print_metrics(self, metrics: dict, classes: list[str], title: str) -> None:
        from ..evaluation.multilabel import print_metrics

        print_metrics(metrics, classes, title=title)

    def write_outputs(self, run_dir, keys, images, logits, labels, classes, temperature: float = 1.0) -> None:
        from ..evaluation.multilabel import write_outputs

        write_outputs(run_dir, keys, self.probabilities(logits), labels, self.cut(len(classes)), classes)

    def describe_outputs(self, classes: list[str]) -> str:
        shown = ", ".join(classes[:12]) + (", …" if len(classes) > 12 else "")
        return f"{len(classes)} labels, any of them per image: {shown}"

    # ---- test-time augmentation and answers -----------------------------------------------------------------
    def tta_logits(self, view_logits):
        """The logit of the views' mean probability per label: logits whose sigmoid is the TTA prediction."""
        import numpy as np
        import torch

        p = np.clip(self.average_views(view_logits), 1e-12, 1 - 1e-12)
        return torch.from_numpy(np.log(p) - np.log1p(-p)).float()

    def decisions(self, outputs):
        """The label set per image as a 0/1 row: each label at or over its threshold."""
        import numpy as np

        p = np.asarray(outputs, dtype=np.float64)
        return p >= self.cut(p.shape[-1]) if p.ndim == 2 else np.zeros((0, 0), bool)

    def answers(self, probs, classes: list[str], top_k: int = 5) -> list[dict]:
        """Per image: every label over its threshold with its probability (most probable first), and the top k."""
        import numpy as np

        p = np.asarray(probs, dtype=np.float64).reshape(len(probs), -1) if len(probs) else np.zeros((0, len(classes)))
        cut = self.cut(len(classes))
        k = max(1, min(top_k, len(classes)))
        out = []
        for row in p:
            order = np.argsort(-row, kind="stable")
            out.append(
                {
                    "labels": [{"label": classes[i], "probability": float(row[i])} for i in order if row[i] >= cut[i]],
                    "top_k": [
                        {"label": classes[i], "probability": float(row[i]), "threshold": float(cut[i])}
                        for i in order[:k]
                    ],
                }
            )
        return out

    def answer_columns(self, top_k: int) -> list[str]:
        return ["labels", f"top {top_k}"]  # labels: every one over its threshold

    def answer_cells(self, answer: dict) -> list[str]:
        said = ", ".join(f"{x['label']} {x['probability']:.3f}" for x in answer["labels"]) or "(none)"
        return [said, ", ".join(f"{x['label']} {x['probability']:.3f}" for x in answer["top_k"])]

    def short_answer(self, answer: dict) -> dict:
        return {"labels": answer["labels"]}

    def answer_key(self, answer: dict):
        return tuple(sorted(x["label"] for x in answer["labels"]))

    def answer_text(self, answer: dict) -> str:
        return ", ".join(x["label"] for x in answer["labels"]) or "(none)"

    # ---- export and report -------------------------------------------------------------------------------------
    def export_head(self, logits, temperature: float = 1.0):
        import torch

        return torch.sigmoid(logits)

    def export_state(self, classes: list[str]) -> dict[str, Any]:
        """The thresholds the bundle answers with (0.5 each when none were tuned), one per label."""
        return {"thresholds": [float(t) for t in self.cut(len(classes))]}

    def report_sections(self) -> dict:
        from ..evaluation import sections

        return sections.MULTILABEL
