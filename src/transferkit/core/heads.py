"""Heads on cached features: one table of heads, one of solvers, and `fit_head`, the one way a head is fitted on
features (a run's `linear` phase, `--cv`, `oof_predict`, the data tools).

    fitted = fit_head(x_train, y_train, task="classification", val=(x_val, y_val))
    fitted.solver, fitted.results            # 'lbfgs', {'lbfgs': {...val_acc, val_loss, l2}, 'adamw': {...}}
    probs = fitted.predict(x_test)           # what the task answers with: probabilities, values

Solvers: `lbfgs` is the task's convex solve (full-batch L-BFGS logistic regression for classes and label sets,
ridge in closed form for numbers; the L2 picked on val), `adamw` minibatch AdamW with early stopping (any head,
mlp too). Every "which is better" is the task's one order (`Task.sort_key` / `Task.best`) with a stated key: the
solvers' results by --select (default the higher val score, equal scores the lower loss); the epochs along one AdamW
curve and the penalties along the L2 path by val loss, which moves smoothly where the score of 150 val images jumps
(EuroSAT, 3 splits: picking AdamW's epoch by score instead cost 1-4 points of test accuracy on each).

The `prototypes` head (nearest class mean by cosine) is fitted in closed form: the class means of the L2-normalised
features, times the temperature with the lowest val loss. A plain `fit_head(x, y)` (no settings, no module) measures
it beside the linear head's solvers and keeps the better on val: with 1-5 images per class it often wins.

Small tensor ops on 2 OpenMP threads stall when another process is busy (4,000 x 1,280 features: 6.7 s quiet,
~120 s beside another job, measured): fitting runs on one thread, where the same solve takes about as long
quiet and does not stall.
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .solvers import CACHED_HEAD_EPOCHS, train_head


@contextlib.contextmanager
def one_thread():
    """Run small tensor ops on one thread (see the top), restoring the caller's setting after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class HeadSettings:
    """How a head is fitted on features; the run's options by the same names (config.TrainConfig)."""

    head: str = "linear"  # linear | mlp:<hidden> | prototypes  (backbones/heads.py: HEADS)
    solver: str = "auto"  # auto | lbfgs | adamw | prototypes  (SOLVERS; a prototypes head has only its own)
    dropout: float = 0.0
    lr: float = 1e-3
    weight_decay: float = 0.01
    label_smoothing: float = 0.0
    epochs: int = CACHED_HEAD_EPOCHS
    batch_size: int = 32
    patience: int = 10
    seed: int = 0
    select: str = "score"  # which result is better: "score" (ties: loss) or "loss" (ties: score)
    class_weights: Any = None  # --balance weights: the task's loss weights, or None
    # each feature to mean 0, std 1 on the training rows before the solve, folded into the head's first Linear after
    # (predict, export and serve run the plain head). On for `--features stages`, whose 744 pooled features differ
    # in scale by stage and channel: digits 98.2 -> 98.9, EuroSAT 93.9 -> 94.3 at 128 px (5 splits; BENCHMARKS.md)
    standardise: bool = False


def run_settings(cfg, epochs: int = CACHED_HEAD_EPOCHS, class_weights=None) -> HeadSettings:
    """A run's head options (a RunConfig: --head, --head-solver, --lr, ...) as HeadSettings: how `train`'s linear
    phase, `compare`'s linear rows and `tune`'s folds fit the same head."""
    from ..backbones.depth import standardises

    t = cfg.train
    return HeadSettings(
        head=cfg.model.head,
        solver=t.head_solver,
        dropout=cfg.model.dropout,
        lr=t.lr,
        weight_decay=t.weight_decay,
        label_smoothing=t.label_smoothing,
        epochs=epochs,
        batch_size=cfg.data.batch_size,
        seed=t.seed,
        select=t.select,
        class_weights=class_weights,
        standardise=standardises(cfg.model.features),
    )


def _convex(head, train, val, task, s: HeadSettings) -> dict | None:
    """The task's convex solve (logistic regression or ridge), its L2 picked on val; None: not a linear head."""
    if _is_prototypes(head):
        return None
    solved = task.fit_head(head, train, val, label_smoothing=s.label_smoothing, class_weights=s.class_weights)
    if solved is None:
        return None
    name, res = solved  # the task's name for its solve: "lbfgs" (logistic regression) or "ridge"
    return {**{k: res[k] for k in ("train_loss", "train_acc", "val_loss", "val_acc")}, "l2": res["l2"], "as": name}


# AdamW's steps per pass over cached features, at most: batches grow past --batch-size only on large sets (4,000
# rows: 125 of 32 -> 32 of 125), so 60 passes cost 1,920 small steps, not 7,500. Up to 1,024 rows (32 x 32) nothing
# changes (a cap of 16 moved EuroSAT's 700 to batches of 44 and its solver choice with them, on one split of three).
MAX_STEPS_PER_PASS = 32


def _adamw(head, train, val, task, s: HeadSettings) -> dict | None:
    if _is_prototypes(head):  # fitted in closed form (_prototypes), never by gradient steps
        return None
    batch = max(s.batch_size, -(-len(train[0]) // MAX_STEPS_PER_PASS))
    rows = train_head(
        head,
        train,
        val,
        epochs=max(CACHED_HEAD_EPOCHS, s.epochs),
        lr=s.lr,
        weight_decay=s.weight_decay,
        label_smoothing=s.label_smoothing,
        seed=s.seed,
        batch_size=batch,
        patience=s.patience,
        class_weights=s.class_weights,
        loss_fn=task.loss(s.class_weights, s.label_smoothing),
        val_loss=task.val_loss,
        score=task.score,
        rank=lambda loss, score: task.sort_key(loss, score, by="loss"),
    )
    best = task.best(rows, by="loss")
    return {**{k: best[k] for k in ("train_loss", "train_acc", "val_loss", "val_acc")}, "passes": len(rows)}


def _classes(task) -> bool:
    """One class among K (softmax logits): what a nearest-class-mean head predicts."""
    return bool(getattr(task, "class_logits", False))


def _is_prototypes(head) -> bool:
    from ..backbones.modules import Prototypes

    return isinstance(head, Prototypes)


# The prototypes head's temperature (cosine logits x T) is picked on val loss from 1 to 100 (cosines lie in [-1, 1],
# so T ~ 10-30 gives confident softmaxes; 31 values, a millisecond each).
TEMPERATURES = tuple(float(t) for t in np.geomspace(1.0, 100.0, 31))


def _prototypes(head, train, val, task, s: HeadSettings) -> dict | None:
    """Nearest class mean by cosine: each class's row = its L2-normalised mean of L2-normalised train features,
    times the temperature with the lowest val loss (train loss where val is empty). None: not a prototypes head."""
    if not _is_prototypes(head) or not _classes(task):
        return None
    linear = head[1]
    (x, y), (xv, yv) = train, val
    k = linear.out_features
    xn = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    means = torch.zeros(k, x.shape[1]).index_add_(0, y.long(), xn)  # a class with no row keeps a zero row: cos 0
    means = means / means.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos_t, cos_v = xn @ means.T, head[0](xv) @ means.T
    pick_x, pick_y = (cos_v, yv) if len(yv) else (cos_t, y)
    best = min(TEMPERATURES, key=lambda t: task.val_loss(pick_x * t, pick_y))
    with torch.no_grad():
        linear.weight.copy_(means * best)
        linear.bias.zero_()
    return {
        "train_loss": task.val_loss(cos_t * best, y),
        "train_acc": task.score(cos_t * best, y),
        "val_loss": task.val_loss(cos_v * best, yv),
        "val_acc": task.score(cos_v * best, yv),
        "temperature": best,
    }


# name -> (head, (x, y) train, (x, y) val, task, settings) -> the val result, or None where it does not apply
SOLVERS = {"lbfgs": _convex, "adamw": _adamw, "prototypes": _prototypes}
SOLVER_CHOICES = ("auto", *SOLVERS)  # auto: every solver that applies, the better on val kept


@dataclass
class FittedHead:
    """A head fitted on features: `module` maps (N, F) features to the task's outputs (logits, standardised
    values); `task` is prepared on the training targets (a regression's mean and std)."""

    module: nn.Module
    task: Any
    solver: str
    results: dict[str, dict] = field(default_factory=dict)  # each solver's val result; "kept" marks the one used

    @torch.no_grad()
    def logits(self, features) -> torch.Tensor:
        self.module.eval()
        with one_thread():
            return self.module(torch.as_tensor(np.asarray(features), dtype=torch.float32)).float()

    def predict(self, features) -> np.ndarray:
        """Probabilities (classes, label sets) or values (regression), as the task answers."""
        return np.asarray(self.task.probabilities(self.logits(features)))


def fit_head(
    features,
    labels,
    task="classification",
    *,
    val=None,
    settings: HeadSettings | None = None,
    module: nn.Module | None = None,
    **options,
) -> FittedHead:
    """Fit a head on `features` (N, F) for `labels` (the task's targets: class indices, values, 0/1 rows).

    val: (features, labels) that choose the L2, the epoch and the solver; None carves a seeded 15% of the rows
    (stratified by class where the task has one). settings (or keyword options of HeadSettings): head, solver,
    lr, ... module: a head to fit in place (a run's own); by default one is built from settings.head.
    """
    from ..backbones.heads import build_head
    from ..errors import DataError, unknown_choice
    from ..tasks import get_task

    s = settings or HeadSettings()
    if options:
        import dataclasses

        s = dataclasses.replace(s, **options)
    if s.solver not in SOLVER_CHOICES:
        raise unknown_choice("--head-solver", s.solver, SOLVER_CHOICES)
    for what, (fx, fy) in (("features", (features, labels)), ("val", val or (None, None))):
        if fx is not None and (np.ndim(fx) != 2 or len(fx) != len(fy)):
            raise DataError(
                f"fit_head: {what} {np.shape(fx)} and their labels ({len(fy)}) do not match: give one row of "
                "features (N, F) per label (class indices 0..K-1, values, or 0/1 rows)."
            )
    if np.asarray(labels).dtype.kind not in "biuf":
        raise DataError(
            f"fit_head: labels of dtype {np.asarray(labels).dtype} ({labels[0]!r}, ...): give class indices 0..K-1 "
            "(e.g. np.unique(names, return_inverse=True)[1]), values, or 0/1 rows."
        )
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(labels))
    # the head's width from every label given (one image of a class may be all held out for val)
    outputs = int(y.shape[1]) if y.ndim == 2 else (1 if y.is_floating_point() else int(y.max()) + 1)
    if val is None:
        tr, va = holdout(np.asarray(labels), 0.15, s.seed)
        x, y, val = x[tr], y[tr], (x[va], y[va])
    xv = torch.as_tensor(np.asarray(val[0]), dtype=torch.float32)
    yv = torch.as_tensor(np.asarray(val[1]))
    if isinstance(task, str):  # a Task object comes prepared (a run's: its regression loss and target statistics)
        task = get_task(task).prepare(y.numpy())
    head = module
    if head is None:
        torch.manual_seed(s.seed)
        head = build_head(s.head, x.shape[1], outputs, s.dropout)
    head = head.cpu()
    scaling = None
    if s.standardise and not _is_prototypes(head):  # a cosine head normalises rows itself
        scaling = feature_scaling(x)
        x, xv = (x - scaling[0]) / scaling[1], (xv - scaling[0]) / scaling[1]
    names = tuple(SOLVERS) if s.solver == "auto" else (s.solver,)
    built: dict[str, nn.Module] = {}  # a solver's own head, where it differs from `head`
    if _is_prototypes(head):  # a prototypes head has one fit: class means and a temperature
        names = ("prototypes",)
    elif (
        settings is None
        and module is None
        and s.solver == "auto"
        and s.head == "linear"
        and _classes(task)
        and scaling is None
    ):
        # auto also measures the prototypes head beside the linear one (it wins with a handful of images per class);
        # only in a plain call: a run's head (module=...) and the runs' --cv folds and oof_predict (settings=...)
        # keep the kind their --head names, so that a run and its cross-validation measure the same head
        from ..backbones.modules import Prototypes

        names = (*names, "prototypes")
        built["prototypes"] = Prototypes(x.shape[1], head[-1].out_features)
    fitted: dict[str, tuple[nn.Module, dict]] = {}
    with one_thread():
        for name in names:
            h, t0 = copy.deepcopy(built.get(name, head)), time.perf_counter()
            res = SOLVERS[name](h, (x, y), (xv, yv), task, s)
            if res is not None:  # seconds: shown in the run's report, never compared
                fitted[res.pop("as", name)] = (h, {**res, "seconds": time.perf_counter() - t0})
        if not fitted:  # the convex solve alone was asked for, and the head is not linear: AdamW trains it
            h, t0 = copy.deepcopy(head), time.perf_counter()
            fitted["adamw"] = (h, {**_adamw(h, (x, y), (xv, yv), task, s), "seconds": time.perf_counter() - t0})
    kept = next(k for k, (_, r) in fitted.items() if r is task.best([r for _, r in fitted.values()], by=s.select))
    if type(fitted[kept][0]) is type(head):
        head.load_state_dict(fitted[kept][0].state_dict())
    else:  # auto kept the prototypes head over the linear one it built
        head = fitted[kept][0]
    if scaling is not None and not _is_prototypes(head):
        fold_scaling(head, *scaling)
    results = {k: {**v, "kept": k == kept} for k, (_, v) in fitted.items()}
    return FittedHead(head.eval(), task, kept, results)


def feature_scaling(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) per feature of the training rows; a constant feature keeps std 1 (it then stays 0, not inf)."""
    mean, std = x.mean(0), x.std(0, unbiased=False)
    return mean, torch.where(std > 1e-6, std, torch.ones_like(std))


@torch.no_grad()
def fold_scaling(head: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Make a head fitted on (x - mean) / std answer the same on x: its first Linear's W -> W / std, b -> b - W·mean
    / std. Exact (float64 for the fold), so the saved head is the plain module and nothing else has to be saved."""
    first = next(m for m in head.modules() if isinstance(m, nn.Linear))
    w = first.weight.double() / std.double()
    first.bias.copy_((first.bias.double() - w @ mean.double()).to(first.bias.dtype))
    first.weight.copy_(w.to(first.weight.dtype))


def holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, val rows): a seeded `fraction` held out, stratified by class for class labels (each class with
    at least 2 rows gives at least one), at least one row either side."""
    n = len(labels)
    rng = np.random.default_rng(seed)
    if labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer):
        held = []
        for c in np.unique(labels):
            rows = rng.permutation(np.flatnonzero(labels == c))
            take = int(round(fraction * len(rows))) or (1 if len(rows) >= 2 else 0)
            held.extend(rows[:take].tolist())
        held = np.sort(np.array(held, dtype=np.int64))
    else:
        held = np.sort(rng.permutation(n)[: max(1, int(round(fraction * n)))])
    if len(held) == 0 or len(held) == n:
        held = np.array([n - 1]) if n > 1 else np.array([], dtype=np.int64)
    mask = np.zeros(n, dtype=bool)
    mask[held] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)
