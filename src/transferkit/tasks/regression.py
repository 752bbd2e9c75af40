"""Regression: one number per image."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..data.targets import VALUES
from .base import Task

# evaluate warns when the data's median target is this many training standard deviations from the training mean:
# a normal target puts 6e-7 of its values that far out, so a median there is another column or unit, not bad luck
FAR = 5.0


@dataclass(frozen=True)
class Regression(Task):
    """One number per image: one output, trained on the target standardised by the training targets' mean and std
    (so one learning rate and one L2 grid suit prices and temperatures alike), MSE or Huber, judged by R²."""

    mean: float = 0.0  # of the training targets: the head predicts (y - mean) / std
    std: float = 1.0
    kind: str = "mse"  # --loss: mse | huber

    name = "regression"
    labels = VALUES  # one finite number per image
    title = "Image regression"
    score_name = "r2"
    score_label = "R²"
    score_column = "r2"
    headline = ("r2", "rmse", "mae", "loss")
    probe = "values"
    data_needs = (
        "a list file or CSV with a number per image (path,value; --target-column NAME), an HDF5 file "
        "(--h5-y KEY) or from_arrays(x, y, task='regression')"
    )
    data_kind = "regression targets"
    labels_are_classes = False  # `classes` is the target's name, which other data may call otherwise
    state_keys = ("target_stats",)
    export_output = "values"
    export_contract = "'values': float32 (N, 1) = logits * target std + target mean, in the target's units"
    agreement_words = "agreement within 0.01 target std"
    difference_words = "max |Δ| in target std"

    # ---- state -------------------------------------------------------------------------------------------------
    def prepare(self, targets, loss: str = "mse"):
        import numpy as np

        y = np.asarray(targets, dtype=np.float64)
        std = float(y.std()) if len(y) else 1.0
        return dataclasses.replace(self, mean=float(y.mean()) if len(y) else 0.0, std=std or 1.0, kind=loss)

    def state(self) -> dict[str, Any]:
        return {"target_stats": {"mean": self.mean, "std": self.std, "loss": self.kind}}

    def from_meta(self, meta):
        stats = meta.get("target_stats") or {}
        return dataclasses.replace(
            self,
            mean=float(stats.get("mean", 0.0)),
            std=float(stats.get("std", 1.0)),
            kind=str(stats.get("loss", "mse")),
        )

    def target_warnings(self, targets, column: str, trained_on: str) -> list[str]:
        """Targets whose median lies over FAR training standard deviations from the training mean: another column
        (`price` scored by a `log_price` model: 800,000 against 13.0 +- 0.6), another unit, or other data; the
        scores would mean nothing, and an R² of -10 would not say why."""
        import numpy as np

        y = np.asarray(targets, dtype=np.float64)
        if not len(y) or abs(float(np.median(y)) - self.mean) <= FAR * self.std:
            return []
        named = f"'{column}'" + (f" (the model learned '{trained_on}')" if column != trained_on else "")
        return [
            f"The targets scored against, {named}, have median {np.median(y):.4g}; the model was trained on values "
            f"of mean {self.mean:.4g} +- {self.std:.4g}. Is --target-column the column (and unit) it learned?"
        ]

    # ---- labels, head, loss ------------------------------------------------------------------------------------
    def strata(self, y):
        """The target's decile: each fold holds its share of cheap and dear houses alike."""
        import numpy as np

        y = np.asarray(y, dtype=np.float64)
        return np.searchsorted(np.quantile(y, np.linspace(0, 1, 11)[1:-1]), y)

    def targets(self, labels, classes: list[str]):
        import numpy as np

        return np.asarray(labels, dtype=np.float32)  # the DataLoader collates (B,) float32 targets

    def relabel(self, label, remap):
        return label  # a value is a value, whatever the data calls its column

    def num_outputs(self, classes: list[str]) -> int:
        return 1

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
        import torch

        return float(self.loss()(torch.as_tensor(logits), targets).item()) if len(targets) else float("nan")

    def fit_head(self, head, train, val, *, label_smoothing: float = 0.0, class_weights=None):
        """('ridge', result): ridge regression in closed form, its penalty picked on val (core/solvers.py)."""
        from ..core.solvers import fit_ridge

        xs, ys = train
        xv, yv = val
        res = fit_ridge(head, (xs, self.standardise(ys)), (xv, self.standardise(yv)))
        if res is None:
            return None
        with_scores = {"train_acc": self.score(head(xs).detach(), ys), "val_acc": self.score(head(xv).detach(), yv)}
        return "ridge", {**res, **with_scores}

    # ---- judging -----------------------------------------------------------------------------------------------
    def values(self, logits):
        """Head outputs -> targets in their own units (numpy, for torch-free runners too)."""
        import numpy as np

        return np.asarray(logits, dtype=np.float64).reshape(-1) * self.std + self.mean

    def probabilities(self, logits, temperature: float = 1.0):
        """The predicted values (the name is the runners' common step: what answers() reads)."""
        return self.values(logits)

    def output_score(self, outputs, targets) -> float:
        """R² of values in the target's units (the same on the standardised scale)."""
        from ..evaluation.regression import r2

        return r2(outputs, targets)

    def metrics(self, logits, targets, classes: list[str]) -> dict[str, Any]:
        from ..evaluation.regression import regression_metrics

        return {**regression_metrics(self.values(logits), targets, self.mean), "loss": self.val_loss(logits, targets)}

    def summary(self, m: dict, split: str, interval: str = "") -> str:
        from ..evaluation.regression import summary_line

        return "[bold]" + summary_line(m, split) + "[/bold]"

    def print_metrics(self, metrics: dict, classes: list[str], title: str) -> None:
        from ..evaluation.regression import print_metrics

        # the data's column (evaluate --target-column price), else the one the model learnt
        print_metrics(metrics, metrics.get("target") or (classes[0] if classes else "target"), title=title)

    def write_outputs(self, run_dir, keys, images, logits, labels, classes, temperature: float = 1.0) -> None:
        from ..evaluation.regression import write_outputs

        write_outputs(run_dir, keys, self.values(logits), labels, classes)

    def describe_outputs(self, classes: list[str]) -> str:
        return f"a value: {classes[0] if classes else 'target'}"

    # ---- test-time augmentation and answers -----------------------------------------------------------------
    def average_views(self, view_logits, temperature: float = 1.0):
        """The mean prediction over the views (values are affine in the logits: the mean of the views' values)."""
        import numpy as np

        return self.values(np.asarray(view_logits, dtype=np.float64).mean(axis=1))

    def tta_logits(self, view_logits):
        import torch

        return torch.as_tensor(view_logits, dtype=torch.float32).mean(dim=1)

    def answers(self, values, classes: list[str], top_k: int = 1) -> list[dict]:
        """Per image: {'value': 12.81, 'target': 'log_price'}."""
        import numpy as np

        return [
            {"value": float(v), "target": classes[0] if classes else "target"} for v in np.asarray(values).reshape(-1)
        ]

    def answer_columns(self, top_k: int) -> list[str]:
        return ["value"]

    def answer_cells(self, answer: dict) -> list[str]:
        return [f"{answer['value']:.6g}"]

    def short_answer(self, answer: dict) -> dict:
        return {"value": answer["value"]}

    # ---- export and report -------------------------------------------------------------------------------------
    def export_head(self, logits, temperature: float = 1.0):
        """De-standardised in the graph: the export answers in the target's units, as `predict` does."""
        return logits.float() * self.std + self.mean

    def parity_units(self, outputs):
        """Values in target standard deviations: a bound of 1e-4 means the same on prices and on temperatures."""
        import numpy as np

        return ((np.asarray(outputs, dtype=np.float64) - self.mean) / self.std).reshape(len(outputs), -1)

    def agree(self, reference, exported):
        """The same answer: within a hundredth of the target's standard deviation (a value has no exact decision)."""
        import numpy as np

        d = np.abs(self.parity_units(reference) - self.parity_units(exported))
        return (d <= 0.01).all(axis=1)

    def report_sections(self) -> dict:
        from ..evaluation import sections

        return sections.REGRESSION
