"""Label issues from out-of-fold scores: confident learning (Northcutt, Jiang & Chuang, JAIR 2021), written here on
plain arrays, with its multi-label and regression counterparts. How the scores were made is the caller's business
(`oof_predict`, or a trained bundle's).

    found = label_issues(labels, probs)              # classification: (N,) class indices, (N, K) probabilities
    found.flagged, found.score[found.flagged]        # the issues, and how suspect each is (higher: more)
    found.suggested                                  # (N,) the class the scores prefer
    multilabel_flips(label_sets, probs)              # (N, K) 0/1 and per-label probabilities -> per-label flips
    residual_outliers(targets, predictions)          # regression: the standardised out-of-fold residuals
    target_outliers(targets)                         # regression: values far out in the targets' own distribution

Confident learning, step by step: a class's threshold is the mean probability the scores give that class over the
images labelled with it (its "self-confidence"); an image counts as confidently of class j when its probability of
j reaches j's threshold (its top class overall when several do); the confident joint C[given, true] counts those,
calibrated so each row sums to the given class's size; C[i, j] * N / N images labelled i are then the expected
number of wrong labels of class i that are really j, and that many images labelled i with the largest margin
p(j) - p(i) are flagged (pruning by noise rate). An image whose top class is its given label is never flagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

RANKINGS = ("self_confidence", "normalized_margin")


@dataclass
class LabelIssues:
    flagged: np.ndarray  # (N,) bool: the rows confident learning calls mislabelled
    score: np.ndarray  # (N,) how suspect each row's label is, in [0, 1], higher = more (every row, flagged or not)
    suggested: np.ndarray  # (N,) the class the scores prefer (the top class other than the given one when flagged)
    thresholds: np.ndarray  # (K,) per-class thresholds: mean self-confidence
    joint: np.ndarray  # (K, K) calibrated confident joint, counts: rows = given, columns = true


def confident_joint(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(calibrated confident joint (K, K) in whole counts, thresholds (K,)). Classes without labelled rows get threshold 1
    (nothing reaches it) and an empty row."""
    n, k = probs.shape
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    thresholds = np.ones(k)
    for j in np.flatnonzero(counts):
        thresholds[j] = probs[labels == j, j].mean()
    above = probs >= thresholds - 1e-6  # the tolerance keeps a row exactly at the mean on the right side
    confident = above.any(axis=1)
    # one class above its threshold: that class; several: the top class overall, as cleanlab counts it (the paper's
    # argmax among those above differs only when the top class misses its own threshold; matching keeps the joint,
    # and so the flagged set, the same as the reference's on the same scores)
    guess = np.where(above.sum(axis=1) > 1, probs.argmax(axis=1), above.argmax(axis=1))
    joint = np.zeros((k, k))
    np.add.at(joint, (labels[confident], guess[confident]), 1.0)
    # every class keeps at least one image counted as correctly labelled, so no row is all noise
    np.fill_diagonal(joint, np.maximum(joint.diagonal(), 1.0) * (counts > 0))
    # Calibrate: each given class's row sums to that class's size (rows of unconfident images are spread pro rata),
    # then whole counts that keep the row sums
    sums = joint.sum(axis=1, keepdims=True)
    joint = np.divide(joint, sums, out=np.zeros_like(joint), where=sums > 0) * counts[:, None]
    rounded = [
        _round_keeping_sum(row, partial(_decided_suspicion, probs[labels == i], i)) for i, row in enumerate(joint)
    ]
    return np.array(rounded), thresholds


def _round_keeping_sum(row: np.ndarray, suspicion=None) -> np.ndarray:
    """Whole numbers that add up to round(sum(row)): each cell to its nearest (halves to even, numpy's round), then
    the cells that rounding moved furthest the other way take the difference: 2.5 + 1.5 + 1.0 (5) -> 2 + 2 + 1;
    2.7 + 1.6 + 0.7 (5) -> 3 + 2 + 1 = 6, so the cell rounded up the most (1.6 -> 2, by 0.4) gives one back -> 3 + 1
    + 1.

    Equal remainders come from cells with the same raw count (calibration scales a row by one factor): 3 + 1 + 1
    confident images among 7 labelled i -> 4.2 + 1.4 + 1.4, rounded 4 + 1 + 1 = 6, one short, and the two 1.4s tie.
    The raw counts cannot settle it, so the images do: a cell's count n flags the n images labelled i with the
    largest margin p(j) - p(i), so the disputed count decides one image per cell, the next in its margin order
    (taking) or the last it holds (giving back). `suspicion(whole, taking)` gives (K,) 1 - p(given) of those images
    (the self-confidence ranking's score; -1 where the count decides no image: the diagonal, a cell past its images):
    the cell whose image is the most suspect takes the count, the least suspect gives one back; full ties (or no
    `suspicion`) by class order, the later class taking. Measured (benchmarks/review.py, BENCHMARKS.md "Review"): F1 at
    least cleanlab's on 23 of 24 noise rows (class order alone: 21), and on 12 of 12 with 3 seeds not used to choose."""
    whole = np.round(row)
    short = int(round(row.sum() - whole.sum()))  # at most K/2 either way: each cell is off by at most 0.5
    if short == 0:
        return whole
    rest = row - whole
    evidence = suspicion(whole, short > 0) if suspicion else np.zeros(len(row))
    order = np.lexsort((np.arange(len(row)), evidence, rest))  # by remainder, then suspicion, then class
    if short > 0:
        whole[order[::-1][:short]] += 1  # largest remainder first; ties: the most suspect next image
    else:
        whole[order[:-short]] -= 1  # most rounded-up first; ties: the least suspect last image
    return whole


def _decided_suspicion(own: np.ndarray, i: int, whole: np.ndarray, taking: bool) -> np.ndarray:
    """For the images labelled i (`own`: their (n, K) probabilities) and row i's counts `whole`: (K,) 1 - p(i) of the
    image each cell's disputed count decides (the next one its count would flag when `taking`, else the last one it
    flags), in the order label_issues prunes by; -1 for the diagonal and cells without such an image."""
    out = np.full(len(whole), -1.0)
    for j in np.flatnonzero(np.arange(len(whole)) != i):
        at = int(whole[j]) - (0 if taking else 1)
        if 0 <= at < len(own):
            margin = own[:, j] - own[:, i]
            out[j] = 1.0 - own[np.argsort(-margin, kind="stable")[at], i]
    return out


def rank_scores(labels: np.ndarray, probs: np.ndarray, by: str = "self_confidence") -> np.ndarray:
    """(N,) in [0, 1], higher = more suspect: 1 - p(given) (self_confidence), or (1 - margin) / 2 with margin =
    p(given) - the largest other p (normalized_margin)."""
    own = probs[np.arange(len(labels)), labels]
    if by == "self_confidence":
        return 1.0 - own
    if by == "normalized_margin":
        other = np.where(np.arange(probs.shape[1])[None, :] == labels[:, None], -np.inf, probs).max(axis=1)
        return (1.0 - (own - other)) / 2.0
    raise ValueError(f"Unknown ranking {by!r}: one of {', '.join(RANKINGS)}.")


def label_issues(labels, probs, by: str = "self_confidence", min_per_class: int = 1) -> LabelIssues:
    """Confident learning with pruning by noise rate on out-of-sample `probs` (N, K) and given `labels` (N,)."""
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    n, k = probs.shape
    joint, thresholds = confident_joint(labels, probs)
    counts = np.bincount(labels, minlength=k)
    prune = joint.astype(np.int64)
    np.fill_diagonal(prune, 0)
    flagged = np.zeros(n, dtype=bool)
    for i in range(k):
        # never prune a class below min_per_class rows: scale its row down when it would
        room = max(0, counts[i] - min_per_class)
        if prune[i].sum() > room:
            prune[i] = np.floor(prune[i] * room / prune[i].sum()).astype(np.int64)
        rows = np.flatnonzero(labels == i)
        for j in np.flatnonzero(prune[i]):
            margin = probs[rows, j] - probs[rows, i]
            flagged[rows[np.argsort(-margin, kind="stable")[: prune[i, j]]]] = True
    top = probs.argmax(axis=1)
    flagged &= top != labels  # the scores agree with the label: not an issue, whatever the counts say
    others = np.where(np.arange(k)[None, :] == labels[:, None], -np.inf, probs)
    return LabelIssues(flagged, rank_scores(labels, probs, by), others.argmax(axis=1), thresholds, joint)


def multilabel_flips(label_sets, probs, by: str = "self_confidence") -> tuple[np.ndarray, np.ndarray]:
    """Per-label flips for multi-label data: each label is its own two-class problem (has it / has it not) with
    the per-label probability. Returns (flagged (N, K) bool: the label is suspect, score (N, K) in [0, 1])."""
    y = np.asarray(label_sets, dtype=np.int64)
    p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, 1.0)
    flagged, score = np.zeros(y.shape, dtype=bool), np.zeros(y.shape)
    for j in range(y.shape[1]):
        if y[:, j].min() == y[:, j].max():
            continue  # every image has it or none does: there is nothing to compare a label against
        two = np.stack([1.0 - p[:, j], p[:, j]], axis=1)
        found = label_issues(y[:, j], two, by)
        flagged[:, j], score[:, j] = found.flagged, found.score
    return flagged, score


def robust_z(values: np.ndarray) -> np.ndarray:
    """(x - median) / (1.4826 * MAD): a z-score that a few wild values do not inflate (1.4826 makes the MAD a
    standard deviation for normal data); the plain std when more than half the values are equal."""
    v = np.asarray(values, dtype=np.float64)
    med = np.median(v)
    scale = 1.4826 * np.median(np.abs(v - med))
    if not scale > 0:
        scale = v.std() or 1.0
    return (v - med) / scale


def residual_outliers(targets, predictions, z: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Regression: (flagged (N,) bool, |standardised residual| (N,)). A residual is standardised robustly, so the
    errors being looked for do not hide themselves by widening the scale; |z| >= 3 is flagged (0.3% of normal
    residuals)."""
    r = np.asarray(targets, dtype=np.float64) - np.asarray(predictions, dtype=np.float64)
    score = np.abs(robust_z(r))
    return score >= z, score


# A target this many robust SDs from the median is flagged whatever the photo predicts. A normal sample puts
# 2 * (1 - Phi(4.5)) = 6.8e-6 of its values beyond +-4.5, so 535 targets would expect 0.004 of them; the cut is well
# above the residuals' 3 because targets have real heavy tails that are not errors. Set with the houses in view
# (log price): the 22,000 house (its README: it looks like an entry error; the other houses of its zipcode cost
# 164,000-449,900) is at z -4.8, the next ones, 36,000 and 42,900 (cheap, nothing says wrong), at -4.1 and -3.8:
# a cut of 3.5 or 4 would flag them too.
TARGET_Z = 4.5
# positive targets spanning a factor of 10 or more are z-scored on log: the houses' prices span 266x (22,000 to
# 5,858,000); their log_price spans 1.56x, and logging it again would stretch its low end (36,000's z -4.1 -> -4.6)
LOG_SPAN = 10.0


def target_outliers(targets, z: float = TARGET_Z) -> tuple[np.ndarray, np.ndarray, bool]:
    """Regression: values far out in the targets' own distribution, before any prediction: an entry error (a digit
    dropped or added) that the image cannot reveal, because its out-of-fold residual is small next to the spread
    of the targets. (flagged (N,) bool, robust z (N,) signed, on_log). When every target is positive and they span
    LOG_SPAN or more (max / min), the z is of log(target): such quantities (prices, areas, counts) are skewed and
    their entry errors are factors (22,000 for 220,000), which a log turns into distances; otherwise of the target
    itself (a target that is a log already, the houses' log_price at 10.0-15.6, is not logged twice)."""
    t = np.asarray(targets, dtype=np.float64)
    on_log = bool(t.size and t.min() > 0 and t.max() / t.min() >= LOG_SPAN)
    score = robust_z(np.log(t) if on_log else t)
    return np.abs(score) >= z, score, on_log
