"""A deterministic stratified split, saved with the run so that resume and evaluate reuse the very same one.

Stratified by class; regression targets by quantile bins (each part gets its share of cheap and dear houses);
multi-label sets are split at random (a set of labels has no single stratum).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from ..errors import ConfigError
from .base import label_text
from .sources import DataSource, Sample

TARGET_BINS = 10  # quantile bins of a regression target: deciles, fewer when the part taken is smaller


def parse_split(text: str | tuple | list) -> tuple[float, float, float]:
    """'0.7,0.2,0.1' or (0.7, 0.2, 0.1) -> fractions for train/val/test (test may be 0; two numbers: test is 0).

    Each refusal says the first thing wrong, in this order: not numbers, how many, negative, train or val 0, the sum.
    """
    example = "e.g. 0.7,0.15,0.15 (train,val,test) or 0.8,0.2 (no test split)"
    if isinstance(text, str):
        items = [p.strip() for p in text.split(",")]
    else:
        items = list(text) if isinstance(text, (list, tuple)) else [text]
    head = f"--split '{text if isinstance(text, str) else ','.join(map(str, items))}'"
    parts = []
    for item in items:
        try:
            value = float(item)
        except (TypeError, ValueError):
            value = float("nan")
        if not math.isfinite(value):
            raise ConfigError(f"{head}: {str(item)!r} is not a number. Give two or three fractions, {example}.")
        parts.append(value)
    if len(parts) not in (2, 3):
        raise ConfigError(
            f"{head} has {len(parts)} number{'s' if len(parts) != 1 else ''}; give two or three "
            f"fractions, train,val[,test], {example}."
        )
    if len(parts) == 2:
        parts.append(0.0)
    for name, value in zip(("train", "validation", "test"), parts):
        if value < 0:
            raise ConfigError(f"{head}: the {name} fraction is {value:g}; fractions cannot be negative, {example}.")
    if parts[0] == 0:
        raise ConfigError(
            f"{head}: the train fraction is 0, which leaves nothing to train on. Give it the largest share, {example}."
        )
    if parts[1] == 0:
        # Val's 0.2 taken from train, test kept: 1,0,0 -> 0.8,0.2,0; 0.9,0,0.1 -> 0.7,0.2,0.1.
        fits = parts[0] >= 0.5 and abs(sum(parts) - 1) <= 1e-6
        fix = f"{parts[0] - 0.2:g},0.2,{parts[2]:g}" if fits else "0.7,0.15,0.15"
        raise ConfigError(
            f"{head}: the validation fraction is 0, but a validation split is needed: it picks the "
            f"best epoch (early stopping), the head's regularisation and the calibration temperature. "
            f"Give it a share, e.g. {fix}."
        )
    total = sum(parts)
    if abs(total - 1) > 1e-6:
        # The same proportions scaled by 1/sum, to 2 decimals, rounding's remainder given to train so that the
        # suggestion itself adds up to 1: 0.9,0.3 -> 0.75,0.25; 0.33,0.33,0.33 -> 0.34,0.33,0.33.
        scaled = [round(p / total, 2) for p in parts[: len(items)]]
        scaled[0] = round(1 - sum(scaled[1:]), 2)
        fix = ",".join(f"{p:g}" for p in scaled) if min(scaled[:2]) > 0 else "0.7,0.15,0.15"
        raise ConfigError(
            f"{head}: the fractions add up to {total:.6g}, not 1. The same proportions adding up to 1: {fix}."
        )
    return parts[0], parts[1], parts[2]


def _stratified(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split off `fraction` of the samples, per class, reproducibly. Returns (rest, taken)."""
    if fraction <= 0 or not samples:
        return list(samples), []
    from sklearn.model_selection import train_test_split

    labels = _strata(samples, max(1, round(fraction * len(samples))))
    counts = {lab: labels.count(lab) for lab in set(labels)}
    n_taken = max(1, round(fraction * len(samples)))
    stratify = labels if min(counts.values()) >= 2 and n_taken >= len(counts) else None
    rest, taken = train_test_split(samples, test_size=n_taken, random_state=seed, stratify=stratify)
    return rest, taken


def _strata(samples: list[Sample], n_taken: int) -> list:
    """What the split keeps in proportion: the class; a regression target's quantile bin (ranks cut into equal
    parts: 100 targets and 10 bins put ranks 0-9 in bin 0); nothing for multi-label sets (one stratum)."""
    labels = [s.label for s in samples]
    if not labels or isinstance(labels[0], int):
        return labels
    if isinstance(labels[0], tuple):
        return [0] * len(labels)
    import numpy as np

    bins = max(1, min(TARGET_BINS, n_taken, len(labels) // 2))
    ranks = np.empty(len(labels), dtype=np.int64)
    ranks[np.argsort(np.asarray(labels, dtype=np.float64), kind="stable")] = np.arange(len(labels))
    return (ranks * bins // len(labels)).tolist()


def make_splits(src: DataSource, fractions: tuple[float, float, float], seed: int) -> dict[str, list[Sample]]:
    """train/val/test from whatever the source has: pre-split parts are kept, missing ones carved from train."""
    tr, va, te = fractions
    splits = dict(src.splits)
    if "all" in splits:
        pool = splits.pop("all")
        rest, test = _stratified(pool, te, seed)
        train, val = _stratified(rest, va / (tr + va), seed)
        return {"train": train, "val": val, "test": test}
    if "val" not in splits:  # e.g. HDF5 train + test: validation comes out of train, never out of test
        splits["train"], splits["val"] = _stratified(splits["train"], va / (tr + va), seed)
    return {k: splits[k] for k in ("train", "val", "test") if k in splits}


def save_splits(path: Path, splits: dict[str, list[Sample]], classes: list[str]) -> None:
    from ..faults import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["split", "key", "label", "class"])
        for split, samples in splits.items():
            for s in samples:
                label = list(s.label) if isinstance(s.label, tuple) else s.label
                w.writerow([split, s.key, json.dumps(label), label_text(s.label, classes)])


def _label(text: str):
    """split.csv's label column: a class index (3), a regression target (12.5) or a multi-label set ([0, 2])."""
    value = json.loads(text)
    if isinstance(value, list):
        return tuple(int(v) for v in value)
    if isinstance(value, float) or "." in text or "e" in text.lower():
        return float(value)
    if isinstance(value, int):
        return value
    raise ValueError(f"label {text!r} is not a class index, a number or a list of label indices")


def load_splits(path: Path) -> dict[str, list[Sample]]:
    splits: dict[str, list[Sample]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            splits.setdefault(row["split"], []).append(Sample(row["key"], _label(row["label"])))
    return splits
