"""A deterministic stratified split, saved with the run so that resume and evaluate reuse the very same one.

Stratified by class; regression targets by quantile bins (each part gets its share of cheap and dear houses);
multi-label sets are split at random (a set of labels has no single stratum).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
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
    return _keep_one_each(rest, taken)


def _keep_one_each(rest: list[Sample], taken: list[Sample]) -> tuple[list[Sample], list[Sample]]:
    """Every class of the pool keeps at least one sample in `rest` (what training is carved from). Without a
    stratified split (more classes than images taken: 100 classes x 3 images, 45 taken), a class can lose every image
    to val/test, and the model could never learn it. Such a class gets one back; in exchange `taken` gets a sample of
    the class with the most left in `rest`, so the parts keep their sizes. Class labels only (ints): a regression
    target or a label set has no class to lose."""
    if not rest or not isinstance(rest[0].label, int):
        return rest, taken
    rest, taken = list(rest), list(taken)
    left: dict[int, int] = {}
    for s in rest:
        left[s.label] = left.get(s.label, 0) + 1
    for i, s in enumerate(list(taken)):
        if s.label in left:
            continue
        donor = max(left, key=left.get)  # ties: the first listed; deterministic for a given split
        rest.append(s)
        left[s.label] = 1
        if left[donor] > 1:  # swap one back so that val/test keep their size; else val/test shrink by one
            j = next(k for k in range(len(rest) - 1, -1, -1) if rest[k].label == donor)
            taken[i] = rest.pop(j)
            left[donor] -= 1
        else:
            taken[i] = None  # type: ignore[call-overload]
    return rest, [s for s in taken if s is not None]


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
    """train/val/test from whatever the source has: pre-split parts are kept, missing ones carved from train (a
    training part alone is split as unsplit data is)."""
    tr, va, te = fractions
    splits = dict(src.splits)
    if set(splits) == {"train"}:
        # a training part alone (an HDF5 file of train_set_* only, a folder with train/ alone) is split as unsplit
        # data: carving val alone dropped --split's test share, and the score printed was val's, which chose the model
        splits = {"all": splits["train"]}
    if "all" in splits:
        pool = splits.pop("all")
        rest, test = _stratified(pool, te, seed)
        train, val = _stratified(rest, va / (tr + va), seed)
        return {"train": train, "val": val, "test": test}
    if "val" not in splits:  # e.g. HDF5 train + test: validation comes out of train, never out of test
        splits["train"], splits["val"] = _stratified(splits["train"], va / (tr + va), seed)
    return {k: splits[k] for k in ("train", "val", "test") if k in splits}


def save_splits(
    path: Path, splits: dict[str, list[Sample]], classes: list[str], identity: Callable[[str], str] | None = None
) -> None:
    """split.csv: split, key, label, class (its columns are what scripts read: unchanged). With `identity`
    (DataSource.identity) each image's identity goes beside it, in split.identities.csv (key, identity): it lets
    `evaluate` find the run's images in data spelled another way (absolute or relative, another working folder)."""
    from ..faults import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["split", "key", "label", "class"])
        for split, samples in splits.items():
            for s in samples:
                label = list(s.label) if isinstance(s.label, tuple) else s.label
                w.writerow([split, s.key, json.dumps(label), label_text(s.label, classes)])
    if identity is None:
        return
    with atomic_path(identities_path(path)) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["key", "identity"])
        w.writerows([s.key, identity(s.key)] for samples in splits.values() for s in samples)


def identities_path(split_csv: Path) -> Path:
    """split.csv -> split.identities.csv, beside it."""
    return Path(split_csv).with_name(Path(split_csv).stem + ".identities.csv")


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


def load_identities(path: Path) -> dict[str, str]:
    """split.csv's key -> image identity, from split.identities.csv (runs written before it existed, or a file
    that cannot be read: empty, and keys are matched by their path inside the data folder)."""
    try:
        with open(identities_path(path), newline="", encoding="utf-8") as f:
            return {row["key"]: row["identity"] for row in csv.DictReader(f) if row.get("identity")}
    except (OSError, UnicodeDecodeError, KeyError, csv.Error):
        return {}


def _within(key: str, root: str) -> str:
    """A key as a path inside its data folder ('red/a.png'), whatever spelled the folder: keys are the folder's path
    joined with the file's (sources.py), so the same folder given as 'data/x', './data/x' or '/abs/data/x' gives the
    same answer. Array keys ('<source>#train[3]') keep their part after '#'."""
    if "#" in key and key.endswith("]"):
        return "#" + key.rpartition("#")[2]
    return os.path.normpath(os.path.relpath(os.path.abspath(key), os.path.abspath(root)))


@dataclass
class MatchedSplits:
    splits: dict[str, list[Sample]]  # the run's parts over the data's keys and labels
    found: int  # rows of split.csv found in the data
    rows: int  # rows of split.csv
    by_identity: int  # of those found, how many by image identity (the rest by their path inside the data folder)


def match_splits(run_split: Path, saved_root: str | None, src: DataSource) -> MatchedSplits:
    """The run's split (split.csv) over `src`: each row found in the data by its image identity (file: resolved
    path, size and mtime; array: its pixels), else by its path inside the data folder (the run's `saved_root`, from
    config.json, against `src.root`). Keys are never compared as written: a folder given as a relative path in
    training and an absolute one now (or from another working folder) is the same data. The data's own labels are
    kept (a label corrected since training counts as corrected)."""
    saved = load_splits(run_split)
    ids = load_identities(run_split)
    current = {s.key: s for v in src.splits.values() for s in v}
    by_id = {src.identity(k): k for k in current} if ids else {}
    root = str(src.root)
    by_path = {_within(k, root): k for k in current}
    splits: dict[str, list[Sample]] = {}
    found = rows = via_id = 0
    for split, samples in saved.items():
        part = splits.setdefault(split, [])
        for s in samples:
            rows += 1
            key = by_id.get(ids.get(s.key, ""))
            via_id += key is not None
            if key is None and saved_root is not None:
                key = by_path.get(_within(s.key, saved_root))
            if key is not None:
                found += 1
                part.append(current[key])
    return MatchedSplits(splits, found, rows, via_id)
