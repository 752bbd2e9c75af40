"""Tasks: what the head predicts and how it is judged, one object per task in one table (`TASKS`).

    task = get_task(meta["task"], meta)            # classification | regression | multilabel, with the bundle's state
    task = task.prepare(train_targets, loss="mse") # fitted to the training targets (regression: their mean and std)
    task.num_outputs(classes)                      # the head's width
    task.loss(weights, label_smoothing)            # what training minimises
    task.fit_head(head, train, val, ...)           # the head on cached features in one convex solve (L-BFGS, ridge)
    task.score(logits, targets)                    # the epoch's headline number, higher is better (accuracy, R²)
    task.sort_key(loss, score)                     # "is this epoch better": smaller keys win
    task.tune(val_logits, val_targets)             # after training: multi-label thresholds picked on val
    task.metrics(logits, targets, classes)         # what evaluate and report.json show
    task.calibrate(val_logits, val_targets, ...)   # post-hoc calibration, stored in the bundle (None: none)
    task.state()                                   # what the bundle stores for `get_task(name, meta)` to rebuild it
    task.answers(task.probabilities(logits), classes, top_k)   # what predict returns per image

The trainer, the finishing steps, `evaluate` and `predict` ask the task; none of them tests which task it is. Torch is
imported inside the methods, so the table costs nothing to import.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import unknown_choice


@dataclass(frozen=True)
class Classification:
    """One label per image out of K classes: softmax over K logits, cross-entropy, accuracy, temperature scaling."""

    name: str = "classification"
    calibrates: bool = True  # temperature scaling after training (finish.py skips the val pass without it)
    tta: bool = True  # evaluate/predict --tta (averaging class probabilities over crops)
    score_name: str = "accuracy"  # the column `val_acc` of metrics.csv holds this
    headline: tuple[str, ...] = ("accuracy", "loss", "macro_f1")  # the metrics a run's summary line and bundle show

    def prepare(self, targets, loss: str = "mse"):
        return self

    def state(self) -> dict[str, Any]:
        return {}

    def from_meta(self, meta: dict):
        return self

    def tune(self, val_logits, val_targets):
        return self

    def targets(self, labels, classes: list[str]):
        """Sample labels -> what the DataLoader collates: class indices as they are."""
        return list(labels)

    def num_outputs(self, classes: list[str]) -> int:
        return len(classes)

    def fit_head(self, head, train, val, *, label_smoothing: float = 0.0, class_weights=None):
        """('lbfgs', result): L-BFGS logistic regression, its L2 picked on val (engine/features.py); None: not a
        linear head."""
        from .engine.features import fit_logistic

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
        import torch.nn.functional as F

        return float(F.cross_entropy(logits, targets).item()) if len(targets) else float("nan")

    def score(self, logits, targets) -> float:
        return float((logits.argmax(1) == targets).float().mean().item()) if len(targets) else float("nan")

    def sort_key(self, loss: float, score: float, by: str = "loss") -> tuple[float, float]:
        """The better epoch has the lower val loss, equal losses: the higher accuracy; by="score" (--select score):
        the higher accuracy, equal accuracies: the lower loss."""
        return (loss, -score) if by == "loss" else (-score, loss)

    def metrics(self, logits, targets, classes: list[str]) -> dict[str, Any]:
        from .evaluation.metrics import classification_metrics

        return classification_metrics(logits, targets, classes)

    def answer_columns(self, top_k: int) -> list[str]:
        """`predict`'s table: the columns after the image's path."""
        return ["label", "probability", f"top {top_k}"]

    def answer_cells(self, answer: dict) -> list[str]:
        top = ", ".join(f"{x['label']} {x['probability']:.3f}" for x in answer["top_k"])
        return [answer["label"], f"{answer['probability']:.3f}", top]

    def summary(self, m: dict, split: str, interval: str = "") -> str:
        """The line `train` prints: 'test accuracy 0.9133 (interval) (loss 0.25, macro F1 0.91) on 150 images'."""
        return (
            f"[bold]{split} accuracy {m['accuracy']:.4f}[/bold]{interval} (loss {m['loss']:.4f}, macro F1 "
            f"{m['macro_f1']:.4f}) on {m['n']} images"
        )

    def print_metrics(self, metrics: dict, classes: list[str], title: str) -> None:
        from .evaluation.metrics import print_metrics

        print_metrics(metrics, classes, title=title)

    def calibrate(self, val_logits, val_targets, eval_logits, eval_targets, measured_on: str):
        """Temperature scaling fitted on val, kept only where it can be trusted (evaluation/calibration.py)."""
        from .evaluation.calibration import calibrate

        return calibrate(val_logits, val_targets, eval_logits, eval_targets, measured_on=measured_on)

    def write_outputs(self, run_dir, keys, images, logits, labels, classes, temperature: float = 1.0) -> None:
        """predictions.csv and the per-image plots (gallery, top losses) of the evaluated split."""
        from .evaluation.finish import classification_outputs

        classification_outputs(run_dir, keys, images, logits, labels, classes, temperature)

    def average_views(self, view_logits, temperature: float = 1.0):
        """(N, V, K) logits of TTA views -> (N, K) probabilities: the mean of the views' softmaxes."""
        from .evaluation.tta import average_views

        return average_views(view_logits, temperature)

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


@dataclass(frozen=True)
class Regression:
    """One number per image: one output, trained on the target standardised by the training targets' mean and std
    (so one learning rate and one L2 grid suit prices and temperatures alike), MSE or Huber, judged by R²."""

    mean: float = 0.0  # of the training targets: the head predicts (y - mean) / std
    std: float = 1.0
    kind: str = "mse"  # --loss: mse | huber
    name: str = "regression"
    calibrates: bool = False  # temperature scaling after training (finish.py skips the val pass without it)
    tta: bool = False  # evaluate/predict --tta (averaging class probabilities over crops)
    score_name: str = "r2"
    headline: tuple[str, ...] = ("r2", "rmse", "mae", "loss")

    def prepare(self, targets, loss: str = "mse"):
        import numpy as np

        y = np.asarray(targets, dtype=np.float64)
        std = float(y.std()) if len(y) else 1.0
        return dataclasses.replace(self, mean=float(y.mean()) if len(y) else 0.0, std=std or 1.0, kind=loss)

    def state(self) -> dict[str, Any]:
        return {"target_stats": {"mean": self.mean, "std": self.std, "loss": self.kind}}

    def from_meta(self, meta: dict):
        stats = meta.get("target_stats") or {}
        return dataclasses.replace(
            self,
            mean=float(stats.get("mean", 0.0)),
            std=float(stats.get("std", 1.0)),
            kind=str(stats.get("loss", "mse")),
        )

    def tune(self, val_logits, val_targets):
        return self

    def targets(self, labels, classes: list[str]):
        import numpy as np

        return np.asarray(labels, dtype=np.float32)  # the DataLoader collates (B,) float32 targets

    def num_outputs(self, classes: list[str]) -> int:
        return 1

    def loss_weights(self, targets, classes: list[str]):
        return None  # --balance is refused for regression (options.py)

    def standardise(self, targets):
        import torch

        return (torch.as_tensor(targets, dtype=torch.float32) - self.mean) / self.std

    def loss(self, weights=None, label_smoothing: float = 0.0):
        import torch.nn.functional as F

        criterion = F.huber_loss if self.kind == "huber" else F.mse_loss  # huber's delta 1 = one target std

        def loss(logits, targets):
            return criterion(logits.reshape(-1).float(), self.standardise(targets).to(logits.device))

        return loss

    def val_loss(self, logits, targets) -> float:
        return float(self.loss()(logits, targets).item()) if len(targets) else float("nan")

    def score(self, logits, targets) -> float:
        """R² (the same on the standardised and the original scale)."""
        from .evaluation.regression import r2

        return r2(self.values(logits), targets)

    def sort_key(self, loss: float, score: float, by: str = "loss") -> tuple[float, float]:
        return (loss, -score) if by == "loss" else (-score, loss)

    def values(self, logits):
        """Head outputs -> targets in their own units (numpy, for torch-free runners too)."""
        import numpy as np

        return np.asarray(logits, dtype=np.float64).reshape(-1) * self.std + self.mean

    def fit_head(self, head, train, val, *, label_smoothing: float = 0.0, class_weights=None):
        """('ridge', result): ridge regression in closed form, its penalty picked on val (engine/features.py)."""
        from .engine.features import fit_ridge

        xs, ys = train
        xv, yv = val
        res = fit_ridge(head, (xs, self.standardise(ys)), (xv, self.standardise(yv)))
        if res is None:
            return None
        with_scores = {"train_acc": self.score(head(xs).detach(), ys), "val_acc": self.score(head(xv).detach(), yv)}
        return "ridge", {**res, **with_scores}

    def metrics(self, logits, targets, classes: list[str]) -> dict[str, Any]:
        from .evaluation.regression import regression_metrics

        return {**regression_metrics(self.values(logits), targets, self.mean), "loss": self.val_loss(logits, targets)}

    def answer_columns(self, top_k: int) -> list[str]:
        return ["value"]

    def answer_cells(self, answer: dict) -> list[str]:
        return [f"{answer['value']:.6g}"]

    def summary(self, m: dict, split: str, interval: str = "") -> str:
        from .evaluation.regression import summary_line

        return "[bold]" + summary_line(m, split) + "[/bold]"

    def print_metrics(self, metrics: dict, classes: list[str], title: str) -> None:
        from .evaluation.regression import print_metrics

        print_metrics(metrics, classes[0] if classes else "target", title=title)

    def calibrate(self, *args, **kwargs):
        return None  # no probabilities to calibrate

    def write_outputs(self, run_dir, keys, images, logits, labels, classes, temperature: float = 1.0) -> None:
        from .evaluation.regression import write_outputs

        write_outputs(run_dir, keys, self.values(logits), labels, classes)

    def probabilities(self, logits, temperature: float = 1.0):
        """The predicted values (the name is the runners' common step: what answers() reads)."""
        return self.values(logits)

    def average_views(self, view_logits, temperature: float = 1.0):
        import numpy as np

        return self.values(np.asarray(view_logits).mean(axis=1))  # the mean prediction over the views

    def answers(self, values, classes: list[str], top_k: int = 1) -> list[dict]:
        """Per image: {'value': 12.81, 'target': 'log_price'}."""
        import numpy as np

        return [
            {"value": float(v), "target": classes[0] if classes else "target"} for v in np.asarray(values).reshape(-1)
        ]


@dataclass(frozen=True)
class Multilabel:
    """Any number of K labels per image: K sigmoid outputs, binary cross-entropy, judged by mean average precision;
    after training each label gets the threshold that maximises its F1 on val."""

    thresholds: tuple[float, ...] = ()  # per label; empty: 0.5 each
    name: str = "multilabel"
    calibrates: bool = False  # temperature scaling after training (finish.py skips the val pass without it)
    tta: bool = False  # evaluate/predict --tta (averaging class probabilities over crops)
    score_name: str = "map"
    headline: tuple[str, ...] = ("map", "micro_f1", "macro_f1", "loss")

    def prepare(self, targets, loss: str = "mse"):
        return self

    def state(self) -> dict[str, Any]:
        return {"thresholds": list(self.thresholds)} if self.thresholds else {}

    def from_meta(self, meta: dict):
        return dataclasses.replace(self, thresholds=tuple(float(t) for t in meta.get("thresholds") or ()))

    def cut(self, k: int):
        import numpy as np

        return np.asarray(self.thresholds if len(self.thresholds) == k else [0.5] * k, dtype=np.float64)

    def tune(self, val_logits, val_targets):
        from .evaluation.multilabel import tune_thresholds

        return dataclasses.replace(self, thresholds=tuple(tune_thresholds(self.probabilities(val_logits), val_targets)))

    def targets(self, labels, classes: list[str]):
        """Label sets (tuples of indices) -> (N, K) multi-hot float32 rows."""
        import numpy as np

        out = np.zeros((len(labels), len(classes)), dtype=np.float32)
        for i, lab in enumerate(labels):
            out[i, list(lab)] = 1.0
        return out

    def num_outputs(self, classes: list[str]) -> int:
        return len(classes)

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

    def score(self, logits, targets) -> float:
        from .evaluation.multilabel import mean_average_precision

        return mean_average_precision(self.probabilities(logits), targets)

    def sort_key(self, loss: float, score: float, by: str = "loss") -> tuple[float, float]:
        return (loss, -score) if by == "loss" else (-score, loss)

    def fit_head(self, head, train, val, *, label_smoothing: float = 0.0, class_weights=None):
        """('lbfgs', result): one logistic regression per label (L-BFGS), the L2 picked on val."""
        from .engine.features import fit_logistic

        res = fit_logistic(
            head, train, val, loss=self.loss(class_weights, label_smoothing), val_loss=self.val_loss, score=self.score
        )
        return None if res is None else ("lbfgs", res)

    def metrics(self, logits, targets, classes: list[str]) -> dict[str, Any]:
        from .evaluation.multilabel import multilabel_metrics

        probs = self.probabilities(logits)
        return {
            **multilabel_metrics(probs, targets, self.cut(len(classes)), classes),
            "loss": self.val_loss(logits, targets),
        }

    def answer_columns(self, top_k: int) -> list[str]:
        return ["labels", f"top {top_k}"]  # labels: every one over its threshold

    def answer_cells(self, answer: dict) -> list[str]:
        said = ", ".join(f"{x['label']} {x['probability']:.3f}" for x in answer["labels"]) or "(none)"
        return [said, ", ".join(f"{x['label']} {x['probability']:.3f}" for x in answer["top_k"])]

    def summary(self, m: dict, split: str, interval: str = "") -> str:
        from .evaluation.multilabel import summary_line

        return "[bold]" + summary_line(m, split) + "[/bold]"

    def print_metrics(self, metrics: dict, classes: list[str], title: str) -> None:
        from .evaluation.multilabel import print_metrics

        print_metrics(metrics, classes, title=title)

    def calibrate(self, *args, **kwargs):
        return None  # the thresholds (tune) play the temperature's part

    def write_outputs(self, run_dir, keys, images, logits, labels, classes, temperature: float = 1.0) -> None:
        from .evaluation.multilabel import write_outputs

        write_outputs(run_dir, keys, self.probabilities(logits), labels, self.cut(len(classes)), classes)

    def probabilities(self, logits, temperature: float = 1.0):
        import numpy as np

        z = np.asarray(logits, dtype=np.float64)
        return 1.0 / (1.0 + np.exp(-z))

    def average_views(self, view_logits, temperature: float = 1.0):
        return self.probabilities(view_logits).mean(axis=1)

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


TASKS: dict[str, Any] = {"classification": Classification(), "regression": Regression(), "multilabel": Multilabel()}


def get_task(name: str = "classification", meta: dict | None = None):
    """The task `name`; with a bundle's `meta`, as the bundle stored it (target statistics, thresholds)."""
    if name not in TASKS:
        raise unknown_choice(
            "task",
            name,
            TASKS,
            hint="This transferkit knows the tasks above; a bundle from a newer version may need a newer transferkit.",
        )
    return TASKS[name].from_meta(meta) if meta is not None else TASKS[name]
