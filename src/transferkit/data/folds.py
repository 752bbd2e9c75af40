"""Folds: which rows each of K folds holds out, for every part of the package that folds (--cv, out-of-fold
scores, `tune`, `auto`'s probe, the calibration check), so that one seed means the same folds everywhere."""

from __future__ import annotations

import numpy as np


def fold_indices(labels: np.ndarray, k: int, seed: int = 0, *, strata=None, strict: bool = True) -> np.ndarray:
    """(N,) fold of each row, the one fold maker of the package (--cv, out-of-fold scores, `tune`, `auto`'s probe,
    the calibration check): stratified by `strata` (one value per row; default the class for 1-D integer labels) in
    seeded shuffled folds, plain shuffled K-fold where there is nothing to stratify by.

    strict: refuse (ValueError) fewer than k rows or a class with fewer than k rows, where every fold must hold each
    class out. Otherwise a stratum smaller than k is spread over as many folds as it has rows, and fewer than k rows
    make as many folds as rows (a probe on a tiny sample still gets folds)."""
    import warnings

    from sklearn.model_selection import KFold, StratifiedKFold

    labels = np.asarray(labels)
    n = len(labels)
    if strata is None and labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer):
        strata = labels
    if strict:
        if n < k:
            raise ValueError(f"{k} folds need at least {k} labelled images; there are {n}.")
        if strata is not None:
            counts = np.unique(np.asarray(strata), return_counts=True)[1]
            if counts.min() < k:
                raise ValueError(
                    f"{k} folds need at least {k} images of every class; the rarest class has {counts.min()}."
                )
    k = max(1, min(k, n))
    fold = np.zeros(n, dtype=np.int64)
    if k < 2:
        return fold
    strata = None if strata is None else np.asarray(strata)
    if strata is not None and np.unique(strata, return_counts=True)[1].max() >= k:
        with warnings.catch_warnings():  # "the least populated class has only m members": spread, as said above
            warnings.simplefilter("ignore", UserWarning)
            split = StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(n), strata)
            parts = [held for _, held in split]
    else:
        parts = [held for _, held in KFold(k, shuffle=True, random_state=seed).split(np.zeros(n))]
    for i, held in enumerate(parts):
        fold[held] = i
    return fold
