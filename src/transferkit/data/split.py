"""A deterministic stratified split, saved with the run so that resume and evaluate reuse the very same one."""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import ConfigError
from .sources import DataSource, Sample


def parse_split(text: str | tuple | list) -> tuple[float, float, float]:
    """'0.7,0.2,0.1' or (0.7, 0.2, 0.1) -> fractions for train/val/test (test may be 0)."""
    try:
        parts = [float(p) for p in (text.split(",") if isinstance(text, str) else text)]
    except ValueError:
        parts = []
    if len(parts) == 2:
        parts.append(0.0)
    if len(parts) != 3 or any(p < 0 for p in parts) or parts[0] <= 0 or parts[1] <= 0 or abs(sum(parts) - 1) > 1e-6:
        raise ConfigError(
            f"--split '{text}' must be two or three fractions for train,val[,test] that add up to 1, e.g. 0.7,0.2,0.1."
        )
    return parts[0], parts[1], parts[2]


def _stratified(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split off `fraction` of the samples, per class, reproducibly. Returns (rest, taken)."""
    if fraction <= 0 or not samples:
        return list(samples), []
    from sklearn.model_selection import train_test_split

    labels = [s.label for s in samples]
    counts = {lab: labels.count(lab) for lab in set(labels)}
    n_taken = max(1, round(fraction * len(samples)))
    stratify = labels if min(counts.values()) >= 2 and n_taken >= len(counts) else None
    rest, taken = train_test_split(samples, test_size=n_taken, random_state=seed, stratify=stratify)
    return rest, taken


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
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["split", "key", "label", "class"])
        for split, samples in splits.items():
            for s in samples:
                w.writerow([split, s.key, s.label, classes[s.label]])


def load_splits(path: Path) -> dict[str, list[Sample]]:
    splits: dict[str, list[Sample]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            splits.setdefault(row["split"], []).append(Sample(row["key"], int(row["label"])))
    return splits
