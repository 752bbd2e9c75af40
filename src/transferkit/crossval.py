"""`--cv K`: a K-fold estimate for data too small for one test split to say much.

    run = transferkit.fit("data/eurosat", cv=5)
    run.cv["metrics"]["accuracy"]          # {"mean": 0.912, "low": 0.889, "high": 0.935}: over the 5 folds
    run.cv["pooled"]                       # every held-out image once: {"accuracy", "low", "high"} (Wilson)
    transferkit train data/eurosat --cv 5  # the same; the summary line and report.html show it

What is folded: train + val, pooled (every image when the data has no test split). The test split is never touched:
the normal run still evaluates on it, and its bundle is the one kept. Fold i holds out one K-th of the pool (stratified
by class) as its test split; from the rest a val split of the usual share (--split's val / (train + val)) is carved
for early stopping and the head solver, so no fold ever picks its model on the images it is scored on. Each fold
runs the same settings as the normal run, `auto` included (it decides again on each fold's train/val, so the
estimate covers its choice too). With 150 test images one accuracy is ±5 points; five folds over 850 images score
every one of them once.

The fold runs land in RUN/cv/fold-1 .. fold-K (report.json, predictions.csv, report.html each); their models are
deleted (the run's model is the normal run's best/; K more copies would cost K x the bundle's size).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import shutil
from collections import Counter
from pathlib import Path

from .errors import DataError

CV_DIR = "cv"


def make_folds(src, splits: dict, k: int, fractions: tuple[float, float, float], seed: int) -> list[dict]:
    """K dicts of train/val/test: test is fold i of train+val (stratified for class labels), val carved from the
    rest as `make_splits` carves it. Refused, before any training, when a class has fewer than K images."""
    import numpy as np

    from .data.folds import fold_indices
    from .data.split import make_splits

    pool = list(splits.get("train", [])) + list(splits.get("val", []))
    labels = [s.label for s in pool]
    classes = all(isinstance(y, (int, np.integer)) for y in labels)  # regression / multi-label: plain folds
    counts = Counter(labels) if classes else {}
    if len(pool) < 2 * k or (classes and min(counts.values()) < k):
        rarest = min(counts, key=counts.get) if counts else None
        fewest = f"class {src.classes[rarest]!r} has {counts[rarest]} image(s)" if counts else f"{len(pool)} images"
        raise DataError(
            f"--cv {k}: every fold needs an image of each class to hold out, but in train+val {fewest}. "
            f"Give --cv {max(2, min(counts.values()) if counts else len(pool) // 2)} or fewer, or add images."
        )
    # stratified by class; plain folds for values and label sets (their rows stand in as zeros)
    which = fold_indices(np.asarray(labels) if classes else np.zeros(len(pool)), k, seed, strict=False)
    folds = []
    for f in range(k):
        rest, held = np.flatnonzero(which != f), np.flatnonzero(which == f)
        inner = dataclasses.replace(src, splits={"train": [pool[i] for i in rest]})
        fold = make_splits(inner, fractions, seed)  # no val in it: carved from train at --split's share
        fold["test"] = [pool[i] for i in held]
        folds.append(fold)
    return folds


def cross_validate(run_path: Path, src, folds: list[dict], cfg, reporter, fit, folded: str = "train+val") -> dict:
    """Train one run per fold in RUN/cv/ with `fit` (api.fit, handed in: the api calls this module, not the other
    way round); `folded` says what was pooled, for people. Returns what report.json keeps under "cv": each fold, and
    the mean with its 95% interval for every number the folds' metrics share."""
    from .tasks import get_task

    task = get_task(cfg.train.task)
    k = len(folds)
    out = Path(run_path) / CV_DIR
    done = []
    for i, fold in enumerate(folds, 1):
        fold_cfg = copy.deepcopy(cfg)
        fold_cfg.train.cv = 0
        run = fit(dataclasses.replace(src, splits=fold), config=fold_cfg, out=str(out), name=f"fold-{i}", quiet=True)
        shutil.rmtree(run.best, ignore_errors=True)  # the run's model is the normal run's
        (run.path / "last.ckpt").unlink(missing_ok=True)
        m = run.test_metrics
        numbers = {key: v for key, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        done.append({"fold": i, "strategy": run.strategy, "path": f"{CV_DIR}/{run.path.name}", **numbers})
        shown = fold_score(task, m, len(fold["test"]))
        reporter.message(f"Cross-validation fold {i}/{k}: {shown} on {m.get('n', 0)} held-out images ({run.strategy})")
    return summarise(done, k, folded)


def summarise(done: list[dict], k: int, folded: str) -> dict:
    """What report.json keeps under "cv": each fold, and the mean with its 95% interval for every number the folds'
    metrics share (and, for accuracy, the pooled proportion over every held-out image)."""
    from .evaluation.intervals import mean_interval, wilson

    shared = [
        key for key in done[0] if key not in ("fold", "strategy", "solver", "path", "n") and all(key in d for d in done)
    ]
    summary = {}
    for key in shared:
        mean, low, high = mean_interval([d[key] for d in done])
        summary[key] = {"mean": mean, "low": low, "high": high}
    n = sum(int(d.get("n", 0)) for d in done)
    result = {
        "k": k,
        "folded": folded,
        "n": n,
        "folds": done,
        "metrics": summary,
        "strategies": dict(Counter(d["strategy"] for d in done)),
    }
    if "accuracy" in summary:  # every held-out image scored once: the pooled proportion's interval too
        right = sum(round(d["accuracy"] * d["n"]) for d in done)
        low, high = wilson(right, n)
        result["pooled"] = {"accuracy": right / n, "low": low, "high": high}
    return result


def cross_validate_heads(run_path: Path, folds: list[dict], trainer, prepared, classes, reporter, folded: str) -> dict:
    """--cv K for a strategy that trains only a head on cached features (`linear`): the run's features of train+val
    (from the feature store: nothing is extracted again), and per fold one `fit_head` on its train rows, its L2 and
    solver picked on its val rows, scored on its held-out rows. RUN/cv/fold-i keeps split.csv and report.json.
    --aug-views: the folds train on the plain view (the views are drawn for the run's train split only)."""

    import torch

    from .core.heads import fit_head
    from .data.split import save_splits
    from .rundir import RunDir

    x = torch.cat([trainer.features("train", prepared.train_plain), trainer.features("val", prepared.val)])
    y = torch.cat([torch.as_tensor(prepared.train_plain.labels), torch.as_tensor(prepared.val.labels)])
    row = {key: i for i, key in enumerate(prepared.keys["train"] + prepared.keys["val"])}
    weighted = trainer.class_weights is not None
    done = []
    for i, fold in enumerate(folds, 1):
        part = {s: torch.tensor([row[r.key] for r in fold[s] if r.key in row], dtype=torch.long) for s in fold}
        tr, va, te = part["train"], part["val"], part["test"]
        weights = trainer.task.loss_weights(y[tr].tolist(), classes) if weighted else None
        fitted = fit_head(
            x[tr], y[tr], trainer.task, val=(x[va], y[va]), settings=trainer.head_settings(1, class_weights=weights)
        )
        m = trainer.task.metrics(fitted.logits(x[te]), y[te], classes)
        folder = Path(run_path) / CV_DIR / f"fold-{i}"
        folder.mkdir(parents=True, exist_ok=True)
        save_splits(folder / "split.csv", fold, classes)
        RunDir(folder).write_json(RunDir.REPORT, {"task": trainer.task.name, "split": "test", "metrics": m})
        numbers = {key: v for key, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        done.append({"fold": i, "strategy": "linear", "solver": fitted.solver, "path": f"{CV_DIR}/fold-{i}", **numbers})
        shown = fold_score(trainer.task, m, len(te))
        reporter.message(f"Cross-validation fold {i}/{len(folds)}: {shown} on {m.get('n', len(te))} held-out images")
    return summarise(done, len(folds), folded)


def fold_score(task, m: dict, n: int) -> str:
    """A fold's line: 'accuracy 0.9120' (R², mAP: the task's score), or its image count where the metrics lack it."""
    return f"{task.score_label} {m[task.score_name]:.4f}" if task.score_name in m else f"{n} images"


def cv_text(cv: dict, task=None) -> str:
    """'5-fold CV on train+val: accuracy 0.9120 ± 0.023 (95% interval over folds); pooled over 850 held-out images
    0.9118 (95% CI 0.891-0.929)'. The pooled interval counts every held-out image once; folds that all score 100%
    have no spread, the pooled interval still says how sure 100% on that many images is. `task` (tasks/): whose
    score to say (R², mAP; default accuracy)."""
    name, label = (task.score_name, task.score_label) if task is not None else ("accuracy", "accuracy")
    acc = cv["metrics"].get(name)
    if acc is None:
        return f"{cv['k']}-fold CV on {cv['folded']}: see report.json"
    half = (acc["high"] - acc["low"]) / 2
    spread = f" ± {half:.3f} (95% interval over folds)" if math.isfinite(half) else ""
    pooled = cv.get("pooled")
    tail = (
        f"; pooled over {cv['n']} held-out images {pooled['accuracy']:.4f} (95% CI {pooled['low']:.3f}-"
        f"{pooled['high']:.3f})"
        if pooled
        else f" on {cv['n']} held-out images"
    )
    return f"{cv['k']}-fold CV on {cv['folded']}: {label} {acc['mean']:.4f}{spread}{tail}"
