"""Frozen strategies at the cost of one forward pass: backbone features computed once (and cached on disk),
then the head trained on them in milliseconds per epoch.

The cache key covers the data fingerprint, the backbone, the preprocessing and the precision, so a second run on the
same data reuses the features and any change recomputes them.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..config import cache_home


def cache_root(cache_dir: str | None) -> Path:
    return cache_home(cache_dir) / "features"


def feature_key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


@torch.no_grad()
def extract(
    net: nn.Module, dataset, batch_size: int, device, autocast, memory_format, on_batch=lambda n=1: None
) -> torch.Tensor:
    """Pooled features (N, F) in float32 on the CPU, for every item of `dataset` in order.

    Each batch is written into its rows of one (N, F) matrix made at the first batch: a list of batches joined by
    torch.cat would hold the features twice at the end (50,000 x 1,280 floats = 256 MB, twice)."""
    net.eval()
    out, row = torch.empty(0), 0
    for x, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        with autocast:
            f = net(x).float().cpu()
        if row == 0:
            out = torch.empty((len(dataset), *f.shape[1:]), dtype=f.dtype)
        out[row : row + len(f)] = f
        row += len(f)
        on_batch(1)
    return out


def load_cached(path: Path) -> dict[str, torch.Tensor] | None:
    """A cache entry, or None when there is none or it cannot be trusted (cut short, damaged, not a (N, F) matrix of
    finite features): the caller recomputes it, silently, since the cache is only ever a shortcut."""
    if not path.is_file():
        return None
    from safetensors.torch import load_file

    try:
        entry = load_file(str(path))
    except Exception:  # noqa: BLE001 - SafetensorError, OSError, ...: recomputed, never fatal
        return None
    x = entry.get("features")
    if x is None or x.ndim != 2 or not x.is_floating_point() or not bool(torch.isfinite(x).all()):
        return None
    return entry


def save_cached(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Atomic and under a unique temporary name: two runs filling one cold cache each write their own file, and the
    last rename wins with a complete entry (both hold the same features)."""
    from safetensors.torch import save_file

    from ..faults import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, fault="features") as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))


def cached_features(
    net: nn.Module,
    dataset,
    *,
    key: dict,
    cache_dir: str | None,
    batch_size: int,
    device,
    precision: str,
    memory_format,
    reporter,
    label: str,
    seed: int | None = None,
) -> tuple[torch.Tensor, float | None]:
    """(pooled features of `dataset`, seconds per image or None): from the cache when these images were seen with
    this backbone, preprocessing and precision, else extracted once and cached. The one get-or-extract: `fit`
    (cached phases), `rank` and `advise` all come here, so each image's features are computed once.

    seed: for augmenting datasets (feature views), the crops and flips are drawn under it, so the same view is the
    same pixels in every run (with as many processes); the global RNG is left as it was.

    Launched on N processes (torchrun, accelerate launch) every process calls this together: each extracts its
    contiguous 1/N of the images, every process gets all the rows (in order), and only the main process writes
    the cache entry. One process without the entry (a node's own cache folder) makes all of them extract."""
    import time

    from torch.utils.data import Subset

    from .runtime import autocast_for, processes

    procs = processes()
    if seed is not None and procs.num_processes > 1:  # each share's draws start at its first image: not 1 process's
        key = {**key, "view_processes": procs.num_processes}
    path = cache_root(cache_dir) / f"{feature_key(precision=precision, **key)}.safetensors"
    cached = load_cached(path)
    if procs.all_true(cached is not None and cached["features"].shape[0] == len(dataset)):
        timed = cached.get("seconds_per_image")
        return cached["features"], float(timed[0]) if timed is not None else None
    lo, hi = procs.shard(len(dataset))
    share = dataset if (lo, hi) == (0, len(dataset)) else Subset(dataset, range(lo, hi))
    on = f", {procs.num_processes} processes" if procs.num_processes > 1 else ""
    shown = f"Features ({label}, {precision}{on})"
    start = time.perf_counter()
    with reporter.task(shown, len(dataset)) as advance, torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed + lo)
        out = extract(
            net,
            share,
            batch_size,
            device,
            autocast_for(precision, device.type),
            memory_format,
            on_batch=lambda n=1: advance(batch_size * procs.num_processes),  # the bar shows all processes' progress
        )
        per_image = (time.perf_counter() - start) / max(1, hi - lo)
        out = procs.gather_rows(out)  # all rows, in order, on every process
    if procs.is_main_process:
        try:
            save_cached(path, {"features": out, "seconds_per_image": torch.tensor([per_image])})
        except OSError as e:  # a read-only or full cache dir slows the next run, nothing more
            reporter.message(f"note: could not write the feature cache at {path}: {e}")
    return out, per_image


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
) -> list[dict]:
    """Minibatch AdamW on cached features; keeps the epoch with the best val loss (ties: accuracy). Returns the history.

    loss_fn(logits, y), val_loss(logits, y) -> float and score(logits, y) -> float are the task's (tasks.py); by
    default cross-entropy (weighted, smoothed for training) and accuracy. `*_acc` in the rows holds the score."""
    loss_fn = loss_fn or (lambda z, y: F.cross_entropy(z, y, weight=class_weights, label_smoothing=label_smoothing))
    val_loss = val_loss or (lambda z, y: F.cross_entropy(z, y).item())
    score = score or (lambda z, y: (z.argmax(1) == y).float().mean().item())
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
        key = (v_loss, -val_acc)
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
    path, best = [], None
    for l2 in sorted(l2_grid, reverse=True):
        opt = torch.optim.LBFGS(
            params,
            lr=1,
            max_iter=max_iter,
            history_size=20,
            tolerance_grad=1e-6,
            tolerance_change=1e-9,
            line_search_fn="strong_wolfe",
        )

        def closure(l2=l2, opt=opt):  # bound now: the loop rebinds both
            opt.zero_grad(set_to_none=True)
            value = objective(F.linear(xs, *params), ys)
            value = value + 0.5 * l2 * linear.weight.pow(2).sum()  # no penalty on the bias, as in scikit-learn
            value.backward()
            return value

        opt.step(closure)
        with torch.no_grad():
            lv = F.linear(xv, *params)
            row = {"l2": l2, "val_loss": float(val_loss(lv, yv)), "val_acc": float(score(lv, yv))}
            lt = F.linear(xs, *params)
            row["train_loss"] = float(val_loss(lt, ys))
            row["train_acc"] = float(score(lt, ys))
        path.append(row)
        if best is None or row["val_loss"] < best[0]["val_loss"]:
            best = (row, [p.detach().clone() for p in params])
    with torch.no_grad():
        for p, v in zip(params, best[1]):
            p.copy_(v)
    return {**best[0], "path": path}


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
