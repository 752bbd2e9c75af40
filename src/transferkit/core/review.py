"""`review`: what is wrong with the labels and the images, from features the store already has.

    result = review("data/hymenoptera")              # label issues, duplicates, leaks, conflicts, outliers
    result.items[0]                                   # Issue(key=..., kind="label", score=0.97, given="ants", ...)
    result.to_dict()                                  # JSON-able: items, classes, task, data, notes
    save_review(result, "review-hymenoptera/")        # review.json + issues.csv
    write_fix_list(result, {key: ("relabel", "bees")}, "cleaned.csv")   # a list file `train` reads

What is looked for, and how (each a function on arrays in confident.py / similar.py; this module wires them):
- label: out-of-fold scores for every labelled image (`oof_predict`: K heads on the stored features, seconds), or a
  trained bundle's scores (`model=`); then confident learning (classification), per-label flips (multi-label), the
  largest standardised out-of-fold residuals and the targets far out in their own distribution (regression);
- duplicate / exact-duplicate / conflict / leak: groups of images whose features are within DUPLICATE_COSINE
  (similar.py says how it was calibrated) or whose bytes (pixels, for arrays) are identical; a group whose labels
  differ is a conflict, one that spans splits a leak (the test score counts an image the model trained on);
- outlier: images far from every other (the mean cosine distance to their OUTLIER_K nearest), robust z >= OUTLIER_Z.

Nothing of the user's is written or changed: the result is returned; saving it and the fix list are separate calls.
Data without labels (a plain folder) or with one class gets duplicates and outliers only, and `notes` says so.
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..config import DEFAULT_BACKBONE
from .confident import (
    RANKINGS,
    TARGET_Z,
    label_issues,
    multilabel_flips,
    residual_outliers,
    robust_z,
    target_outliers,
)
from .similar import DUPLICATE_COSINE, PIXEL_COSINE, SimilarityIndex, duplicate_pairs, groups_of, pixel_features

KINDS = ("label", "conflict", "leak", "exact-duplicate", "duplicate", "outlier")  # the order the table lists them
OUTLIER_K = 5  # neighbours whose mean distance says how isolated an image is
CROWD = 10  # near-duplicates are looked for where a typical image's 10th nearest other is outside the threshold
# robust z of that distance: 3.5 is Iglewicz & Hoaglin's cut for the MAD z-score; on ants/bees it flags the
# placeholder GIF (z 6.6, the highest) and 8 odd photos, out of 398
OUTLIER_Z = 3.5
MADE_BY = "transferkit review"  # review.json says who wrote it: a later review overwrites only its own files
# A fix list's first line (list files skip comments): how a later review knows the file is its own
FIX_LIST_MARK = "# written by transferkit review with the decisions applied - paths are relative to this file"
ISSUES_HEADER = ["path", "kind", "score", "given", "suggested", "group", "reason"]


@dataclass
class Issue:
    key: str  # absolute path, or "<source>#<split>[<i>]" for an array row
    kind: str  # one of KINDS
    score: float  # how suspect, higher = more (comparable within a kind)
    given: str | None  # the label as given (class name, 'a|b', the value); None without labels
    suggested: str | None  # what the scores suggest instead (label issues), else None
    group: int | None = None  # duplicate groups: members share it
    reason: str = ""  # in words, for people
    split: str | None = None  # train / val / test, where the data has splits

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ReviewResult:
    data: str  # what was reviewed (the DATA argument)
    task: str  # classification / regression / multilabel, or "none" when the images have no labels
    classes: list[str]  # class names (the target's name for regression); [] without labels
    items: list[Issue]  # most suspect first within each kind, kinds in KINDS order
    images: list[dict]  # every image reviewed: {"key", "given", "split"}; what the fix list is made from
    checks: list[str]  # what was looked for: "label", "duplicate", "outlier"
    notes: list[str] = field(default_factory=list)  # what could not be checked, and why
    backbone: str = DEFAULT_BACKBONE
    scores_from: str = "out-of-fold, last features"  # which heads' scores (and features), or "bundle:<path>"
    seconds: float = 0.0
    loader: object = field(default=None, repr=False, compare=False)  # the ImageSet that loads any key (pages)
    embedding: object = field(default=None, repr=False, compare=False)  # core.embed.Embedding: the page's neighbours
    # the splits the data itself has (a pre-split's train/val/test folders or lists): the fix list keeps them, so
    # that `train` on it keeps the user's val and test; [] when `train` splits the data (one pool)
    data_splits: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """kind -> number of images flagged with it (every kind, zeros included)."""
        out = dict.fromkeys(KINDS, 0)
        for it in self.items:
            out[it.kind] += 1
        return out

    @property
    def labels(self) -> dict[str, str]:
        """key -> given label of every labelled image reviewed."""
        return {img["key"]: img["given"] for img in self.images if img["given"] is not None}

    @property
    def labelled(self) -> bool:
        return any(img["given"] is not None for img in self.images)

    def by_kind(self, kind: str) -> list[Issue]:
        return [it for it in self.items if it.kind == kind]

    def to_dict(self) -> dict:
        return {
            "made_by": MADE_BY,
            "data": self.data,
            "task": self.task,
            "classes": list(self.classes),
            "checks": list(self.checks),
            "notes": list(self.notes),
            "backbone": self.backbone,
            "scores_from": self.scores_from,
            "seconds": round(self.seconds, 2),
            "counts": self.counts(),
            "items": [it.to_dict() for it in self.items],
            "images": list(self.images),
        }


def review(
    data,
    *,
    backbone: str | None = None,
    k: int = 5,
    model: str | os.PathLike | None = None,
    rank_by: str = "self_confidence",
    features: str = "auto",
    duplicate_threshold: float = DUPLICATE_COSINE,
    outlier_z: float = OUTLIER_Z,
    reporter=None,
    **overrides,
) -> ReviewResult:
    """Review `data` (any path `train` reads, a plain image folder, or a DataSource). `overrides` are the run's
    options that matter here (layout and columns, task, split, seed, image_size, device, cache_dir). backbone: the
    features' (default: the run's, efficientnet_lite0); k: folds of the out-of-fold scores; model: a bundle whose
    scores to use instead; rank_by: self_confidence or normalized_margin; features: what the label check's heads
    read (core/suggest.py auto_features: auto is `stages` for tiny images, `last` for photos); duplicates and
    outliers read the last layer, where their thresholds were calibrated."""
    from ..config import RunConfig
    from ..options import apply_overrides, validate
    from .embed import embed

    start = time.perf_counter()
    if rank_by not in RANKINGS:
        from ..errors import unknown_choice

        raise unknown_choice("--rank-by", rank_by, RANKINGS)
    cfg = apply_overrides(RunConfig(), dict(overrides))
    validate(cfg)
    backbone = backbone or cfg.model.backbone
    if model is not None:  # a path that is no bundle is refused before any image is read
        from ..bundle import read_meta

        read_meta(model)
    src, imgs, rows, notes = _open(data, cfg)  # rows: [(key, label or None, split or None)] in imgs.keys order
    data_splits = [] if src is None or "all" in src.splits else [s for s in src.splits if s in ("train", "val", "test")]
    if model is not None and features != "auto":
        notes.append(f"--features {features} is not used with --model: the label check reads the model's scores.")
    emb = embed(
        imgs,
        backbone,
        image_size=cfg.data.image_size,
        cache_dir=cfg.runtime.cache_dir,
        device=cfg.runtime.device,
        reporter=reporter,
    )
    at = {key: i for i, key in enumerate(emb.keys)}  # key -> feature row (unreadable images have none)
    task = src.task if src is not None else "none"
    classes = list(src.classes) if src is not None else []
    given = [_text(label, classes) for _, label, _ in rows]
    items: list[Issue] = []
    checks = ["duplicate", "outlier"]

    # the task says what a label is: one class among several (needs 2 classes), a set of labels, or a value
    kinds = _label_kind(src.task) if src is not None else None
    labelled = src is not None and (kinds != "class" or len(classes) >= 2)
    if src is not None and not labelled:
        notes.append("One class only: no label can be checked against another; duplicates and outliers only.")
    if labelled:
        by = emb, features
        if model is None:  # the heads' features: from every depth for tiny images (the digits: 94% -> 99% with linear)
            by = _label_features(imgs, emb, backbone, features, cfg, reporter)
        found, scores_from = _label_items(src, rows, given, by, task, classes, k, model, rank_by, cfg, notes)
        items += found
        checks.insert(0, "label")
    else:
        scores_from = "none"

    held, x, near = _neighbours(rows, emb, at)  # one search for both: is the data crowded, how isolated is each
    items += _duplicate_items(rows, given, held, x, imgs, kinds == "value", duplicate_threshold, notes, near)
    items += _outlier_items(rows, given, held, classes if labelled else [], outlier_z, near)
    row_of = {r[0]: i for i, r in enumerate(rows)}
    for key, why in emb.skipped:  # an image nothing can learn from: listed so that it can be excluded
        i = row_of.get(key)
        items.append(
            Issue(key, "outlier", 99.0, given[i] if i is not None else None, None, None, f"Cannot be read: {why}.")
        )
    _order(items)
    images = [{"key": key, "given": g, "split": split} for (key, _, split), g in zip(rows, given)]
    return ReviewResult(
        str(data),
        task,
        classes,
        items,
        images,
        checks,
        notes,
        backbone,
        scores_from,
        time.perf_counter() - start,
        imgs,
        emb,
        data_splits,
    )


def _order(items: list[Issue]) -> None:
    """Kinds in KINDS order; within a kind the most suspect first, a group's members together (groups by their best
    score: most alike first)."""
    order = {kind: n for n, kind in enumerate(KINDS)}
    best: dict[int, float] = {}
    for it in items:
        if it.group is not None:
            best[it.group] = max(best.get(it.group, -1.0), it.score)
    items.sort(
        key=lambda it: (
            order[it.kind],
            -best[it.group] if it.group is not None else 0.0,
            it.group if it.group is not None else -1,
            -it.score,
        )
    )


def _open(data, cfg):
    """(source or None, the ImageSet that loads every key, rows [(key, label, split)], notes)."""
    from ..data.sources import DataSource, open_images, open_source
    from ..data.split import make_splits
    from ..errors import DataError, TransferkitError

    notes: list[str] = []
    try:
        src = (
            data
            if isinstance(data, DataSource)
            else open_source(data, cfg.data.layout, task=cfg.train.task, lenient=True, **cfg.data.source_options())
        )
    except DataError:
        if cfg.data.layout not in ("auto", "folders") or not Path(data).is_dir():
            raise
        imgs = open_images(data)  # a plain folder: images without labels
        notes.append("No labels (a folder without class sub-folders): duplicates and outliers only.")
        return None, imgs, [(key, None, None) for key in imgs.keys], notes
    splits = src.splits
    if "all" in splits or "val" not in splits:
        try:  # the split `train` would make with the same --split and --seed: what a leak would leak across
            splits = make_splits(src, cfg.data.split, cfg.train.seed)
        except (TransferkitError, ValueError):
            notes.append("The images could not be split as train would split them: no leak check across splits.")
    if "all" in splits:
        splits = {"all": splits["all"]}
    rows, seen = [], set()
    for split, samples in splits.items():
        for s in samples:
            if s.key not in seen:
                seen.add(s.key)
                rows.append((s.key, s.label, split))
    imgs = src.images()
    order = {key: i for i, key in enumerate(imgs.keys)}
    rows.sort(key=lambda r: order.get(r[0], len(order)))
    return src, imgs, rows, notes


def _label_kind(task_name: str) -> str:
    """What one label is, asked of the task: "class" (one of K: confident learning), "set" (any of K: per-label
    flips) or "value" (a number: residuals)."""
    from ..tasks import get_task

    t = get_task(task_name)
    return "class" if t.class_logits else "set" if t.labels_are_classes else "value"


def _text(label, classes) -> str | None:
    from ..data.base import label_text

    return None if label is None else label_text(label, classes)


def _label_features(imgs, emb, backbone: str, features: str, cfg, reporter) -> tuple:
    """(the Embedding the label check's heads read, its features): `emb` itself when that is the last layer's at the
    same size, else the images embedded again (through the store: once per backbone, size and features)."""
    from .embed import embed
    from .suggest import pool_settings

    features, size = pool_settings(imgs, backbone, features, cfg.data.image_size)
    if features == "last":  # the size embed chose for `emb` too: the data's, or --image-size
        return emb, features
    kw = {"cache_dir": cfg.runtime.cache_dir, "device": cfg.runtime.device, "reporter": reporter}
    return embed(imgs, backbone, image_size=size, features=features, **kw), features


def _label_items(src, rows, given, by, task, classes, k, model, rank_by, cfg, notes):
    """Label issues of every readable labelled image, and where the scores came from. by: (the Embedding the heads
    read, its features)."""
    from ..backbones.depth import standardises
    from ..core.heads import HeadSettings
    from ..core.oof import oof_predict
    from ..tasks import get_task

    emb, features = by
    at = {key: i for i, key in enumerate(emb.keys)}
    t = get_task(task)
    kind = _label_kind(task)
    idx = [i for i, (key, label, _) in enumerate(rows) if key in at and label is not None]
    if kind == "class":
        counts = np.bincount([rows[i][1] for i in idx], minlength=len(classes))
        small = [c for c in range(len(classes)) if 0 < counts[c] < 2]
        for c in small:
            notes.append(
                f"Class '{classes[c]}' has 1 image: its label cannot be checked (no other image to learn from)."
            )
        idx = [i for i in idx if counts[rows[i][1]] >= 2]
        counts = np.bincount([rows[i][1] for i in idx], minlength=len(classes))
        if len(np.flatnonzero(counts)) < 2:
            notes.append("Fewer than 2 classes with 2 or more images: no label can be checked.")
            return [], "none"
        folds = int(min(k, counts[counts > 0].min()))
    else:
        folds = min(k, len(idx))
    if folds < 2:
        notes.append(f"{len(idx)} labelled images: too few for out-of-fold scores; labels not checked.")
        return [], "none"
    if folds < k:
        notes.append(f"{folds} folds instead of {k}: the smallest class has {folds} images.")
    x = emb.features[[at[rows[i][0]] for i in idx]]
    y = t.targets([rows[i][1] for i in idx], classes)
    if model is not None:
        scores, scores_from = _bundle_scores(model, src, [rows[i] for i in idx], classes, task, cfg), f"bundle:{model}"
        notes.append("Scores from a trained model: for the images it trained on they are not out-of-fold (optimistic).")
    else:
        settings = HeadSettings(solver="lbfgs", seed=cfg.train.seed, standardise=standardises(features))
        scores = oof_predict(x, y, task, folds, seed=cfg.train.seed, settings=settings, classes=classes).scores
        scores_from = f"out-of-fold, {features} features"
    out = []
    if kind == "class":
        found = label_issues(np.asarray(y, dtype=np.int64), scores, rank_by)
        for n in np.flatnonzero(found.flagged):
            i = idx[n]
            p_given, p_sug = scores[n, int(y[n])], scores[n, found.suggested[n]]
            out.append(
                Issue(
                    rows[i][0],
                    "label",
                    float(found.score[n]),
                    given[i],
                    classes[found.suggested[n]],
                    None,
                    f"Out-of-fold p({given[i]}) = {p_given:.2f} (class threshold {found.thresholds[int(y[n])]:.2f}), "
                    f"p({classes[found.suggested[n]]}) = {p_sug:.2f}.",
                    rows[i][2],
                )
            )
    elif kind == "set":
        yy = np.asarray(y) > 0.5
        flagged, score = multilabel_flips(yy, scores, rank_by)
        for n in np.flatnonzero(flagged.any(axis=1)):
            i, flips = idx[n], np.flatnonzero(flagged[n])
            new = yy[n].copy()
            new[flips] = ~new[flips]
            words = ", ".join(f"{'drop' if yy[n, j] else 'add'} {classes[j]} (p = {scores[n, j]:.2f})" for j in flips)
            out.append(
                Issue(
                    rows[i][0],
                    "label",
                    float(score[n, flips].max()),
                    given[i],
                    "|".join(classes[j] for j in np.flatnonzero(new)),
                    None,
                    f"Per-label flips: {words}.",
                    rows[i][2],
                )
            )
    else:
        pred = np.asarray(scores, dtype=np.float64).reshape(len(idx), -1)[:, 0]
        target = np.asarray(y, dtype=np.float64).reshape(len(idx), -1)[:, 0]
        flagged, z = residual_outliers(target, pred)
        # a value far out among the targets themselves (22,000 among house prices) can be an entry error that the
        # photo cannot reveal: its residual is small next to the targets' spread; one issue per image, both reasons
        far, tz, on_log = target_outliers(target)
        of = "log(target)" if on_log else "the target"
        for n in np.flatnonzero(flagged | far):
            i = idx[n]
            why = []
            if flagged[n]:
                why.append(
                    f"Out-of-fold prediction {pred[n]:.6g} vs given {target[n]:.6g}: a residual {z[n]:.1f} robust "
                    "standard deviations out."
                )
            if far[n]:
                why.append(
                    f"The given {target[n]:.6g} is itself an outlier of the targets: {of} is {abs(tz[n]):.1f} robust "
                    f"standard deviations {'below' if tz[n] < 0 else 'above'} the median {np.median(target):.6g} "
                    f"(cut {TARGET_Z:g}); an entry error?"
                )
            out.append(
                Issue(
                    rows[i][0],
                    "label",
                    float(max(z[n] if flagged[n] else 0.0, abs(tz[n]) if far[n] else 0.0)),
                    given[i],
                    f"{pred[n]:.6g}",
                    None,
                    " ".join(why),
                    rows[i][2],
                )
            )
    return out, scores_from


def _bundle_scores(model, src, rows, classes, task, cfg) -> np.ndarray:
    """The bundle's calibrated outputs for these rows, columns in the data's class order."""
    import torch

    from ..data.sources import Sample
    from ..errors import DataError
    from ..predict import Predictor

    p = Predictor(model, device=cfg.runtime.device)
    if p.task.name != task:
        raise DataError(f"--model {model} is a {p.task.name} model; the data is read as {task} (--task).")
    logits, kept, skipped = p.logits_for(src, [Sample(key, label) for key, label, _ in rows])
    if skipped:
        raise DataError(f"--model {model} could not read {skipped[0][0]}: {skipped[0][1]}")
    out = np.asarray(p.task.probabilities(torch.as_tensor(logits), p.temperature), dtype=np.float64)
    if not p.task.labels_are_classes:  # a value per image
        return out
    missing = [c for c in classes if c not in p.classes]
    if missing:
        raise DataError(
            f"--model {model} does not know the classes {', '.join(missing[:5])}: review it without --model."
        )
    return out[:, [p.classes.index(c) for c in classes]]


def _neighbours(rows, emb, at) -> tuple[list[int], np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """(held: the indices in `rows` of the images with features, x: their features, near: (similarities, indices)
    of each one's max(CROWD, OUTLIER_K) nearest others, None for fewer than two), rows of x and near in held order."""
    held = [i for i, (key, _, _) in enumerate(rows) if key in at]
    x = emb.features[[at[rows[i][0]] for i in held]]
    return held, x, (SimilarityIndex(x).neighbours(max(CROWD, OUTLIER_K)) if len(x) > 1 else None)


def _duplicate_items(rows, given, held, x, imgs, numeric: bool, threshold: float, notes: list, near) -> list[Issue]:
    """Near-duplicate (features) and exact (bytes or pixels) groups, each kind decided by what its members share.

    Near-duplicates only where the features tell this data's images apart: when a typical image (the median) has
    CROWD others within the threshold, it separates nothing (upscaled 8 px digits: the 10th nearest other at a median
    cosine of 0.92-0.94, where photos sit at 0.58 and EuroSAT's tiles at 0.64), and every image would land in one
    chained group (396 of 500 digits, 487 "conflicts"). The 10th, not the nearest: a set where every image has a few
    copies is a set of duplicates, not one the features cannot separate. There the pixels are compared instead
    (similar.pixel_features: grey 16 px thumbnails, at PIXEL_COSINE), where they in turn tell the images apart.
    Exact copies are found either way."""
    from ..data.imageset import is_array_key

    keys = [r[0] for r in rows]
    hashes = _content_hashes(imgs, keys)
    x = x if held else None
    near_what = f"features within cosine {threshold:g}"
    if _crowded(near, threshold):
        crowd = f"a typical image has {crowd_size(len(held))} others within cosine {threshold:g} of its features"
        x, threshold = pixel_features(imgs, [keys[i] for i in held]), PIXEL_COSINE
        if _crowded(SimilarityIndex(x).neighbours(CROWD), threshold):
            notes.append(
                f"Near-duplicates not checked: {crowd}, and of its pixels too (tiny or flat images): they tell this "
                "data's images apart by neither; identical copies are still found."
            )
            x = None
        else:
            notes.append(f"Near-duplicates by pixels: {crowd}, so grey 16 px thumbnails are compared instead.")
            near_what = f"pixels within cosine {threshold:g} (grey 16 px thumbnails)"
    pairs = [(held[a], held[b], s) for a, b, s in duplicate_pairs(x, threshold)] if x is not None else []
    by_hash: dict[str, list[int]] = {}
    for i, h in enumerate(hashes):
        if h is not None:
            by_hash.setdefault(h, []).append(i)
    exact = [(m[0], j, 1.0) for m in by_hash.values() for j in m[1:]]
    best: dict[int, float] = {}
    for i, j, sim in pairs + exact:
        best[i], best[j] = max(best.get(i, -1.0), sim), max(best.get(j, -1.0), sim)
    # identical files first (one group each), then near-duplicates among the other images
    exact_groups = [sorted(m) for m in by_hash.values() if len(m) > 1]
    taken = {i for m in exact_groups for i in m}
    near = groups_of(len(rows), [(i, j, sim) for i, j, sim in pairs if i not in taken and j not in taken])
    out = []
    for g, members in enumerate(sorted(exact_groups + near, key=lambda m: m[0])):
        labels = {given[i] for i in members}
        if numeric and len(labels) > 1:  # values that print alike are alike; 1e-9 relative differences are not
            vals = [float(given[i]) for i in members if given[i] is not None]
            labels = labels if vals and max(vals) - min(vals) > 1e-9 * max(1.0, abs(max(vals))) else {given[members[0]]}
        splits = {rows[i][2] for i in members if rows[i][2] is not None}
        same = len({hashes[i] for i in members}) == 1 and hashes[members[0]] is not None
        what = ("identical " + ("pixels" if is_array_key(keys[members[0]]) else "bytes")) if same else near_what
        if len(labels - {None}) > 1:
            kind = "conflict"
            reason = f"{len(members)} images with {what} but different labels: {', '.join(sorted(map(str, labels)))}."
        elif len(splits) > 1:
            kind = "leak"
            reason = f"{len(members)} images with {what} in different splits ({', '.join(sorted(splits))})."
        else:
            kind = "exact-duplicate" if same else "duplicate"
            reason = f"{len(members)} images with {what}."
        if len(splits) > 1 and kind == "conflict":
            reason += f" Also across splits ({', '.join(sorted(splits))})."
        for i in members:
            out.append(Issue(keys[i], kind, round(float(best.get(i, 1.0)), 4), given[i], None, g, reason, rows[i][2]))
    return out


def crowd_size(n: int) -> int:
    """How many others within the threshold make a typical image's neighbourhood a crowd (_crowded)."""
    return min(CROWD, max(2, n // 10))


def _crowded(near, threshold: float) -> bool:
    """Whether a typical row has CROWD others at or above `threshold` (near: `SimilarityIndex.neighbours` of at
    least CROWD): then it separates nothing. Under 100 images, a tenth of them counts as the crowd (at least 2): 30
    upscaled digits, 15 a class, have under 10 others that close in a class of 15, and single-linkage chained each
    class into one "leak" group of 15 (27 of 30 images flagged). The four shared sets (398-1,000 images) keep 10."""
    if near is None:
        return False
    k = crowd_size(len(near[0]))
    if near[0].shape[1] < k:
        return False
    return float(np.median(near[0][:, k - 1])) >= threshold


def _content_hashes(imgs, keys: list[str]) -> list[str | None]:
    """A hash of each image's bytes (files: sha256) or pixels (array rows: their store identity); None for a file
    that cannot be read."""
    from ..data.imageset import file_identity, is_array_key

    out = []
    for key in keys:
        h = imgs.identity(key) if is_array_key(key) else file_identity(key, content=True)
        out.append(None if h.startswith("missing:") else h)
    return out


def _outlier_items(rows, given, idx, classes, z_cut: float, near) -> list[Issue]:
    keys = [r[0] for r in rows]
    if len(idx) <= OUTLIER_K + 1:
        return []
    sims, nbrs = near[0][:, :OUTLIER_K], near[1][:, :OUTLIER_K]  # the nearest first
    dist = 1.0 - sims.mean(axis=1)
    z = robust_z(dist)
    typical = float(np.median(dist))
    out = []
    for n in np.flatnonzero(z >= z_cut):
        i = idx[n]
        reason = (
            f"Far from every other image: its {OUTLIER_K} nearest are at cosine distance {dist[n]:.2f} on average "
            f"(a typical image's: {typical:.2f})."
        )
        if classes and given[i] is not None:
            near = [given[idx[j]] for j in nbrs[n]]
            agree = sum(g == given[i] for g in near)
            reason += f" {agree} of its {len(near)} nearest share its label '{given[i]}'."
        out.append(Issue(keys[i], "outlier", round(float(z[n]), 2), given[i], None, None, reason, rows[i][2]))
    return out


def check_review_out(out_dir: str | os.PathLike, flag: str = "--out") -> dict[str, Path]:
    """The paths save_review writes in `out_dir`, checked before the review runs: the folder can be made, and no
    file there is someone else's (a file a review did not write is never overwritten)."""
    from ..errors import DataError
    from ..faults import check_out_folder

    out = check_out_folder(out_dir, flag)
    paths = {"json": out / "review.json", "csv": out / "issues.csv"}
    for p in paths.values():
        if p.exists() and not _made_by_review(p):
            raise DataError(f"'{p}' exists and was not written by transferkit review: choose another {flag}.")
    return paths


def check_fix_list_path(path: str | os.PathLike, flag: str = "--fix-out") -> Path:
    """Where a fix list may go: a file a review wrote, or none yet, in a folder that can be made."""
    from ..errors import ConfigError, DataError
    from ..faults import nearest_existing

    path = Path(path).expanduser()
    if path.is_dir():
        raise ConfigError(f"{flag} '{path}' is a folder: give the list file's name, e.g. {path / 'cleaned.csv'}.")
    parent = nearest_existing(path.parent)
    if not parent.is_dir():
        raise ConfigError(
            f"{flag} '{path}' cannot be written: '{parent}' is a file, not a folder. Give another {flag}."
        )
    if path.exists() and not _made_by_review(path):
        raise DataError(f"'{path}' exists and was not written by transferkit review: choose another {flag}.")
    return path


def save_review(result: ReviewResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    """review.json and issues.csv in `out_dir` (made if missing). A file there that a review did not write is never
    overwritten: DataError names it; a file as `out_dir`: ConfigError (check_review_out, also before the review)."""
    from ..faults import atomic_path

    paths = check_review_out(out_dir)
    out = paths["json"].parent
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(paths["json"]) as tmp:
        tmp.write_text(json.dumps(result.to_dict(), indent=1, ensure_ascii=False), encoding="utf-8")
    with atomic_path(paths["csv"]) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(ISSUES_HEADER)
        for it in result.items:
            w.writerow([it.key, it.kind, f"{it.score:.4f}", it.given or "", it.suggested or "", it.group, it.reason])
    return paths


def _made_by_review(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            head = f.read(4096)
    except (OSError, UnicodeDecodeError):
        return False
    if path.suffix == ".json":
        return f'"made_by": "{MADE_BY}"' in head
    # issues.csv by its header; a fix list by its first line (a comment: list files skip them). A user's own list
    # also starts `path,label`, and may be the very file the review read
    return head.splitlines()[:1] == [",".join(ISSUES_HEADER)] or head.startswith(FIX_LIST_MARK)


DECISIONS = ("keep", "relabel", "exclude")


def write_fix_list(result: ReviewResult, decisions: dict, path: str | os.PathLike) -> dict[str, int]:
    """A `path,label` list file of every reviewed image with the decisions applied: key -> ("keep"|"relabel"|
    "exclude", new label or None), or key -> "keep" | "exclude" | the new label (the page's form). Excluded images
    are left out, relabelled ones carry the new label; `train` reads the file as a list layout. A pre-split data
    set's splits are kept: a third column, `split` (train / val / test, data/lists.py), so that `train` on the list
    trains on the user's train images and never on their val or test ones; a val the review carved from train (data
    with train and test only) is written as train, where `train` carves its own. Returns the counts.
    Paths are written relative to the list's folder, as list files are read (a review of `data/` run from elsewhere
    lists `../data/ants/1.jpg` beside `out/cleaned.csv`). Refuses array keys (HDF5 rows have no path to list) and
    an existing file a review did not write (its first line, FIX_LIST_MARK, says one did)."""
    from ..data.imageset import is_array_key
    from ..errors import DataError
    from ..faults import atomic_path

    if not result.labelled:
        raise DataError("The images have no labels: a fix list needs labels (give DATA with class folders or a list).")
    path = check_fix_list_path(path)
    own = list(getattr(result, "data_splits", None) or [])  # the data's own splits, to keep
    valid = set(result.classes) if _label_kind(result.task) == "class" else None
    counts = dict.fromkeys(DECISIONS, 0)
    lines = []
    for img in result.images:
        key = img["key"]
        action, new = _decision(decisions.get(key, ("keep", None)))
        if action not in DECISIONS:
            raise DataError(f"Decision {action!r} for {key}: one of {', '.join(DECISIONS)}.")
        counts[action] += key in decisions
        if action == "exclude":
            continue
        if is_array_key(key):
            raise DataError(f"{key} is a row of an array file: a list file can name only image files.")
        label = img["given"] if action == "keep" else new
        if action == "relabel" and valid is not None and label not in valid:
            raise DataError(f"Relabel {key} as {label!r}: not a class. Classes: {', '.join(result.classes)}.")
        lines.append((key, label) + ((img.get("split") if img.get("split") in own else "train",) if own else ()))
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.resolve().parent
    lines = [(os.path.relpath(Path(key).resolve(), base), *rest) for key, *rest in lines]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        f.write(FIX_LIST_MARK + "\n")
        w = csv.writer(f)
        w.writerow(["path", "label"] + (["split"] if own else []))
        w.writerows(lines)
    counts["written"] = len(lines)
    return counts


def _decision(value) -> tuple[str, str | None]:
    if isinstance(value, str):
        return (value, None) if value in ("keep", "exclude") else ("relabel", value)
    action, new = value
    return action, new


def suggested_decisions(result: ReviewResult) -> dict[str, tuple[str, str | None]]:
    """The changes no person needs to make: images that cannot be read, and every byte-identical copy of an image
    but the first (same label, same split) are excluded. No label is changed: that is a person's call (the page)."""
    out: dict[str, tuple[str, str | None]] = {}
    seen: set[int] = set()
    for it in result.items:
        if it.kind == "outlier" and it.reason.startswith("Cannot be read"):
            out[it.key] = ("exclude", None)
        elif it.kind == "exact-duplicate" and it.group is not None:
            if it.group in seen:
                out[it.key] = ("exclude", None)
            seen.add(it.group)
    return out


# the run's options that the review reads; the rest (epochs, lr, out, ...) are training's
REVIEW_OPTIONS = (
    "layout", "path_column", "label_column", "target_column", "h5_x", "h5_y", "split", "seed", "task",
    "image_size", "backbone", "device", "cache_dir",
)  # fmt: skip


def review_counts(data, reporter=None, **overrides) -> str:
    """One line for `train --review`: what a review of `data` found, where the full list is, and the command."""
    result = review(data, reporter=reporter, **{k: v for k, v in overrides.items() if k in REVIEW_OPTIONS})
    counts = ", ".join(f"{n} {kind}" for kind, n in result.counts().items() if n) or "nothing suspect"
    return (
        f"Review of {data} ({', '.join(result.checks)}; {result.seconds:.0f} s): {counts}. Labels are unchanged; "
        f"see them with `transferkit review {data}`."
    )
