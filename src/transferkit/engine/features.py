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
    """Pooled features (N, F) in float32 on the CPU, for every item of `dataset` in order."""
    net.eval()
    out = []
    for x, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        with autocast:
            out.append(net(x).float().cpu())
        on_batch(1)
    return torch.cat(out) if out else torch.empty(0)


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
    same pixels in every run; the global RNG is left as it was."""
    import time

    from .runtime import autocast_for

    path = cache_root(cache_dir) / f"{feature_key(precision=precision, **key)}.safetensors"
    cached = load_cached(path)
    if cached is not None and cached["features"].shape[0] == len(dataset):
        timed = cached.get("seconds_per_image")
        return cached["features"], float(timed[0]) if timed is not None else None
    start = time.perf_counter()
    with reporter.task(f"Features ({label}, {precision})", len(dataset)) as advance, torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        out = extract(
            net,
            dataset,
            batch_size,
            device,
            autocast_for(precision, device.type),
            memory_format,
            on_batch=lambda n=1: advance(batch_size),
        )
    per_image = (time.perf_counter() - start) / max(1, len(dataset))
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
) -> list[dict]:
    """Minibatch AdamW on cached features; keeps the epoch with the best val loss (ties: accuracy). Returns the history."""
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
        total, correct = 0.0, 0
        for i in range(0, len(xs), batch_size):
            idx = perm[i : i + batch_size]
            logits = head(xs[idx])
            loss = F.cross_entropy(logits, ys[idx], weight=class_weights, label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            correct += (logits.argmax(1) == ys[idx]).sum().item()
        head.eval()
        with torch.no_grad():
            lv = head(xv)
            val_loss = F.cross_entropy(lv, yv).item() if len(yv) else float("nan")
            val_acc = (lv.argmax(1) == yv).float().mean().item() if len(yv) else float("nan")
        row = {"train_loss": total / len(xs), "train_acc": correct / len(xs), "val_loss": val_loss, "val_acc": val_acc}
        score = (val_loss, -val_acc)
        row["best"] = best is None or score < best
        if row["best"]:
            best, best_state, bad = score, copy.deepcopy(head.state_dict()), 0
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
) -> dict | None:
    """Full-batch L-BFGS logistic regression for a linear head, its L2 strength picked on validation (lowest val loss).

    The objective is convex, so each strength is solved to convergence in a few dozen steps (milliseconds for a few
    thousand cached features) and the result does not depend on a learning rate or a seed. Returns the chosen
    strength with its val loss/accuracy and the whole path, or None when the head is not a single Linear layer.
    """
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
            loss = F.cross_entropy(F.linear(xs, *params), ys, weight=class_weights, label_smoothing=label_smoothing)
            loss = loss + 0.5 * l2 * linear.weight.pow(2).sum()  # no penalty on the bias, as in scikit-learn
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            lv = F.linear(xv, *params)
            row = {
                "l2": l2,
                "val_loss": F.cross_entropy(lv, yv).item(),
                "val_acc": (lv.argmax(1) == yv).float().mean().item(),
            }
            lt = F.linear(xs, *params)
            row["train_loss"] = F.cross_entropy(lt, ys).item()
            row["train_acc"] = (lt.argmax(1) == ys).float().mean().item()
        path.append(row)
        if best is None or row["val_loss"] < best[0]["val_loss"]:
            best = (row, [p.detach().clone() for p in params])
    with torch.no_grad():
        for p, v in zip(params, best[1]):
            p.copy_(v)
    return {**best[0], "path": path}
