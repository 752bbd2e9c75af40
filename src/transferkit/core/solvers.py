"""The solvers under `fit_head` (core/heads.py), on tensors: AdamW epochs, L-BFGS logistic regression, ridge in
closed form. Plain math: no task, no files; the tasks hand in their losses and scores.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

CACHED_HEAD_EPOCHS = 60  # AdamW epochs over cached features cost milliseconds; patience 10 ends most fits sooner


def train_head(
    head: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    label_smoothing: float,
    seed: int,
    batch_size: int = 32,
    patience: int = 10,
    class_weights: torch.Tensor | None = None,
    loss_fn=None,
    val_loss=None,
    score=None,
    rank=None,
) -> list[dict]:
    """Minibatch AdamW on cached features; keeps the best epoch by `rank(val_loss, val_score)` (smaller wins; by
    default the task's order for --select score: the higher score, ties the lower loss). Returns the history.

    loss_fn(logits, y), val_loss(logits, y) -> float and score(logits, y) -> float are the task's (tasks.py); by
    default cross-entropy (weighted, smoothed for training) and accuracy. `*_acc` in the rows holds the score."""
    loss_fn = loss_fn or (lambda z, y: F.cross_entropy(z, y, weight=class_weights, label_smoothing=label_smoothing))
    val_loss = val_loss or (lambda z, y: F.cross_entropy(z, y).item())
    score = score or (lambda z, y: (z.argmax(1) == y).float().mean().item())
    rank = rank or (lambda loss, s: (-s, loss))
    g = torch.Generator().manual_seed(seed)
    xs, ys = train
    xv, yv = val
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = max(1, -(-len(xs) // batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.1)
    best, best_state, bad, history = None, None, 0, []
    for _ in range(epochs):
        head.train()
        perm = torch.randperm(len(xs), generator=g)
        total = 0.0
        for i in range(0, len(xs), batch_size):
            idx = perm[i : i + batch_size]
            logits = head(xs[idx])
            loss = loss_fn(logits, ys[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        head.eval()
        with torch.no_grad():
            lv, lt = head(xv), head(xs)
            v_loss = float(val_loss(lv, yv)) if len(yv) else float("nan")
            val_acc = float(score(lv, yv)) if len(yv) else float("nan")
            train_acc = float(score(lt, ys))
        row = {"train_loss": total / len(xs), "train_acc": train_acc, "val_loss": v_loss, "val_acc": val_acc}
        key = rank(v_loss, val_acc)
        row["best"] = best is None or key < best
        if row["best"]:
            best, best_state, bad = key, copy.deepcopy(head.state_dict()), 0
        else:
            bad += 1
        history.append(row)
        if patience and bad >= patience:
            break
    if best_state is not None:
        head.load_state_dict(best_state)
    return history


# The path stops once val loss has risen for this many penalties in a row: weaker penalties cost the most iterations
# (4,000 EuroSAT tiles: most of the solve's time) and, past the minimum, only fit the training rows harder.
PATH_PATIENCE = 2
# Along the path each strength starts from the previous one's solution, so a few L-BFGS iterations get close; the
# chosen strength is then solved to convergence (max_iter) from there. 4,000 EuroSAT tiles at 32 px, one thread:
# 100 per strength 3.5 s, 15 per strength + the final solve 2.7 s, the same L2 (1e-4), val loss 0.8117 both times.
PATH_ITER = 15
L2_GRID = tuple(10.0 ** (-k / 2) for k in range(1, 11))  # 0.3 ... 1e-5: strongest first, each warm-starts the next


def _as_linear(head: nn.Module) -> nn.Linear | None:
    """The head's one Linear layer when the head is a logistic regression (Linear, with or without dropout)."""
    layers = [m for m in head.modules() if any(True for _ in m.parameters(recurse=False))]
    return layers[0] if len(layers) == 1 and isinstance(layers[0], nn.Linear) else None


def fit_logistic(
    head: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    *,
    l2_grid: tuple[float, ...] = L2_GRID,
    label_smoothing: float = 0.0,
    class_weights: torch.Tensor | None = None,
    max_iter: int = 100,
    loss=None,
    val_loss=None,
    score=None,
) -> dict | None:
    """Full-batch L-BFGS logistic regression for a linear head, its L2 strength picked on validation (lowest val loss).

    The objective is convex, so each strength is solved to convergence in a few dozen steps (milliseconds for a few
    thousand cached features) and the result does not depend on a learning rate or a seed. Returns the chosen
    strength with its val loss/accuracy and the whole path, or None when the head is not a single Linear layer.
    loss / val_loss / score: the task's (multi-label: binary cross-entropy per label and mAP); default softmax
    cross-entropy and accuracy.
    """
    loss = loss or (lambda z, y: F.cross_entropy(z, y, weight=class_weights, label_smoothing=label_smoothing))
    val_loss = val_loss or (lambda z, y: F.cross_entropy(z, y).item())
    score = score or (lambda z, y: (z.argmax(1) == y).float().mean().item())
    objective = loss
    linear = _as_linear(head)
    if linear is None:
        return None
    xs, ys = train
    xv, yv = val
    with torch.no_grad():  # start from zero: the solution of the strongest penalty is near it
        linear.weight.zero_()
        linear.bias.zero_()
    params = [linear.weight, linear.bias]

    def solve(l2: float, iterations: int) -> dict:
        """L-BFGS from the current weights at penalty l2; the row of train/val loss and score it reaches."""
        opt = torch.optim.LBFGS(
            params,
            lr=1,
            max_iter=iterations,
            history_size=20,
            tolerance_grad=1e-6,
            tolerance_change=1e-9,
            line_search_fn="strong_wolfe",
        )

        def closure():
            opt.zero_grad(set_to_none=True)
            value = objective(F.linear(xs, *params), ys)
            value = value + 0.5 * l2 * linear.weight.pow(2).sum()  # no penalty on the bias, as in scikit-learn
            value.backward()
            return value

        opt.step(closure)
        with torch.no_grad():
            lv, lt = F.linear(xv, *params), F.linear(xs, *params)
            return {
                "l2": l2,
                "val_loss": float(val_loss(lv, yv)),
                "val_acc": float(score(lv, yv)),
                "train_loss": float(val_loss(lt, ys)),
                "train_acc": float(score(lt, ys)),
            }

    path, best, rising = [], None, 0
    for l2 in sorted(l2_grid, reverse=True):
        if (
            rising >= PATH_PATIENCE
        ):  # val loss rose for two weaker penalties in a row: the weaker ones only overfit more
            break
        row = solve(l2, min(max_iter, PATH_ITER))
        path.append(row)
        rising = rising + 1 if len(path) > 1 and row["val_loss"] > path[-2]["val_loss"] else 0
        if best is None or row["val_loss"] < best[0]["val_loss"]:
            best = (row, [p.detach().clone() for p in params])
    with torch.no_grad():
        for p, v in zip(params, best[1]):
            p.copy_(v)
    chosen = solve(best[0]["l2"], max_iter)  # the chosen strength solved to convergence, from its path solution
    return {**chosen, "path": path}


# Ridge penalties as multiples of the mean eigenvalue of the centred features' Gram matrix (trace / F), so one grid
# suits features of any scale: 1e-3 (almost least squares) ... 1e2 (almost the mean), 3 steps a decade.
RIDGE_GRID = tuple(10.0 ** (k / 3) for k in range(-9, 7))


def ridge_path(x: torch.Tensor, y: torch.Tensor, alphas) -> list[tuple[float, torch.Tensor, torch.Tensor]]:
    """[(alpha, weight (F,), bias)] minimising ||y - x w - b||² + alpha ||w||² (scikit-learn's Ridge, intercept
    unpenalised), for every alpha from one eigendecomposition of the smaller Gram matrix of the centred features
    (an SVD of x costs 5-10x more): n <= F: w = xᵀ U diag(1 / (s + alpha)) Uᵀ y with x xᵀ = U diag(s) Uᵀ;
    n > F: w = V diag(1 / (s + alpha)) Vᵀ xᵀ y with xᵀ x = V diag(s) Vᵀ."""
    x, y = x.double(), y.double().reshape(-1)
    mx, my = x.mean(0), y.mean()
    xc, yc = x - mx, y - my
    small = len(x) <= x.shape[1]
    s, vecs = torch.linalg.eigh(xc @ xc.T if small else xc.T @ xc)
    s = s.clamp(min=0)  # rounding makes zero eigenvalues slightly negative
    proj = vecs.T @ (yc if small else xc.T @ yc)
    out = []
    for alpha in alphas:
        coef = vecs @ (proj / (s + alpha))
        w = xc.T @ coef if small else coef
        out.append((float(alpha), w, my - mx @ w))
    return out


def fit_ridge(
    head: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    *,
    grid: tuple[float, ...] = RIDGE_GRID,
) -> dict | None:
    """Ridge regression for a linear head with one output, in closed form, its penalty picked on validation (the
    lowest val MSE): the regression counterpart of `fit_logistic`. Targets as the head should output them (the task
    standardises them). Returns the chosen penalty (`l2`, absolute, as scikit-learn's alpha) with its train/val MSE
    and the path, or None when the head is not a single Linear layer with one output."""
    linear = _as_linear(head)
    if linear is None or linear.out_features != 1:
        return None
    xs, ys = train
    xv, yv = val
    xc = xs.double() - xs.double().mean(0)
    scale = float((xc**2).sum()) / max(1, xs.shape[1])  # trace(XcᵀXc) / F: the mean eigenvalue
    path, best = [], None
    for alpha, w, b in ridge_path(xs, ys, [r * scale for r in grid]):
        row = {
            "l2": alpha,
            "val_loss": float(((xv.double() @ w + b - yv.double().reshape(-1)) ** 2).mean()),
            "train_loss": float(((xs.double() @ w + b - ys.double().reshape(-1)) ** 2).mean()),
        }
        path.append(row)
        if best is None or row["val_loss"] < best[0]["val_loss"]:
            best = (row, w, b)
    row, w, b = best
    with torch.no_grad():
        linear.weight.copy_(w.reshape(1, -1).to(linear.weight.dtype))
        linear.bias.copy_(b.reshape(1).to(linear.bias.dtype))
    return {**row, "path": path}
