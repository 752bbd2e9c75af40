"""`oof_predict`: out-of-fold scores for every labelled image, from K heads on cached features, in seconds.

    oof = oof_predict(features, labels, k=5)      # classification: labels are class indices
    oof.scores.shape                              # (N, K) probabilities; each row from the head that never saw it
    oof.fold[:5]                                  # which fold held each image out
    oof.metrics                                   # the task's metrics over all N held-out predictions

What label-error detection (confident learning), `--cv` and the probes need: a prediction for every image that was
made without its own label. Folds are stratified by class for classification, plain K-fold otherwise. Each fold's
head is `fit_head` on the other K-1 folds (its L2 picked on a seeded 15% of them); the default solver is the convex
one alone (`lbfgs`: one solve per L2 on the path), so 5 folds on 80% of the rows each cost about what one
`fit_head` with both solvers costs on all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data.folds import fold_indices
from .heads import HeadSettings, fit_head


@dataclass
class OutOfFold:
    scores: np.ndarray  # (N, K) probabilities, (N,) values or (N, K) label-set probabilities: the task's answer
    logits: np.ndarray  # the heads' raw outputs, same rows
    fold: np.ndarray  # (N,) the fold (0..k-1) that held each row out
    metrics: dict = field(default_factory=dict)  # the task's metrics over every held-out row
    solvers: list[str] = field(default_factory=list)  # the solver each fold's head kept


def oof_predict(
    features,
    labels,
    task="classification",
    k: int = 5,
    *,
    seed: int = 0,
    settings: HeadSettings | None = None,
    classes: list[str] | None = None,
) -> OutOfFold:
    """Out-of-fold predictions for every row of `features` (N, F) with `labels` (the task's targets)."""
    import dataclasses

    import torch

    from ..tasks import get_task

    x = np.asarray(features, dtype=np.float32)
    y = np.asarray(labels)
    s = settings or HeadSettings(solver="lbfgs", seed=seed)
    fold = fold_indices(y, k, seed)
    # One task for every fold: a regression's outputs are standardised by the same mean and std in each, so the
    # folds' outputs are on one scale (the target statistics are not labels of any row; the penalty grid follows them)
    t = get_task(task).prepare(y) if isinstance(task, str) else task
    logits, solvers = None, []
    for i in range(k):
        train, held = np.flatnonzero(fold != i), np.flatnonzero(fold == i)
        fitted = fit_head(x[train], y[train], t, settings=dataclasses.replace(s, seed=s.seed + i))
        out = fitted.logits(x[held]).numpy()
        if y.ndim == 1 and np.issubdtype(y.dtype, np.integer) and out.shape[1] < int(y.max()) + 1:
            out = _pad_classes(out, int(y.max()) + 1)  # a fold whose train rows lack the top class
        if logits is None:
            logits = np.zeros((len(y), *out.shape[1:]), dtype=np.float32)
        logits[held] = out
        solvers.append(fitted.solver)
    scores = np.asarray(t.probabilities(torch.from_numpy(logits)))
    names = classes or [str(c) for c in range(logits.shape[1] if logits.ndim == 2 else 1)]
    metrics = t.metrics(torch.from_numpy(logits), torch.as_tensor(y), names)
    return OutOfFold(scores, logits, fold, metrics, solvers)


def _pad_classes(logits: np.ndarray, k: int) -> np.ndarray:
    out = np.full((len(logits), k), -1e4, dtype=np.float32)
    out[:, : logits.shape[1]] = logits
    return out
