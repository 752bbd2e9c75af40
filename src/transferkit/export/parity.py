"""Does an export predict what its bundle predicts? Measured on real images, decoded once, fed to both.

    images = check_images(meta, check=None)          # the run's own test (or val) split, else --check IMAGES
    report = compare(reference, outputs, images.labels, task=task, classes=classes)
    report["agreement"], report["max_abs_diff"]      # classification also: "top1_agreement", "max_abs_dp"

Both sides get the same decoded arrays (short side resized by Pillow, as `Predictor` decodes), so what is measured
is the graph against the PyTorch model: crop, scaling, normalisation, the network and the task's post-processing
(temperature and softmax, sigmoid, the target's mean and std). What "the same answer" and the differences' units are
is the task's (`Task.agree`, `Task.parity_units`): the top-1 class, the label set at the thresholds, a value within
a hundredth of the target's standard deviation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.images import image_files
from ..errors import ConfigError
from ..tasks import Task, get_task, task_of
from .runner import Preprocess


@dataclass
class CheckImages:
    arrays: list[np.ndarray]  # HWC uint8 at the bundle's short side
    names: list[str]
    labels: list | None  # in the bundle's class order (class indices, label sets, values), when known
    source: str  # where they came from, in words
    calibration: list[np.ndarray] = field(default_factory=list)  # for int8: other images of the same data (train)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _spread(items: list, limit: int) -> list:
    """At most `limit` items, evenly spaced (every class of a sorted split stays represented)."""
    if len(items) <= limit:
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def _decode(load, keys: list[str]) -> tuple[list[np.ndarray], list[int], list[tuple[str, str]]]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        done = list(pool.map(load, keys))
    arrays = [a for a, _ in done if a is not None]
    kept = [i for i, (a, _) in enumerate(done) if a is not None]
    return arrays, kept, [(k, err) for k, (a, err) in zip(keys, done) if a is None]


def run_images(meta: dict[str, Any], limit: int, calibration_limit: int, int8: bool = False) -> CheckImages | None:
    """The run's own held-out images (test, else val), read through the run's split.csv and config.json beside best/;
    None when the run folder or its data is not there. int8: val and test together and a sample of the training
    images the calibration did not use (int8's accuracy bound needs hundreds of images, not a 6-image test split:
    see `score_interval`), at most `limit` in all."""
    from ..data.decode import decode_one
    from ..data.sources import open_source
    from ..data.split import load_splits

    run_dir = Path(meta["_path"]).parent
    if not ((run_dir / "split.csv").is_file() and (run_dir / "config.json").is_file()):
        return None
    data = json.loads((run_dir / "config.json").read_text())["config"]["data"]
    if not data.get("path") or not Path(data["path"]).exists():
        return None
    options = {k: data.get(k) for k in ("path_column", "label_column", "target_column", "h5_x", "h5_y")}
    task = task_of(meta)  # the labels are read as the task reads them: classes, values, label sets
    src = open_source(data["path"], layout=data.get("layout", "auto"), task=task.name, **options)
    splits = load_splits(run_dir / "split.csv")
    split = next((s for s in ("test", "val") if splits.get(s)), None)
    if split is None:
        return None
    train = splits.get("train", [])
    # int8 checks on training images too: the calibration takes at most half of them, so that the rest are left
    calibrated = _spread(train, min(calibration_limit, (len(train) + 1) // 2) if int8 else calibration_limit)
    if int8:
        samples, source = _int8_check_samples(splits, calibrated, limit)
    else:
        samples, source = _spread(splits[split], limit), f"{split} images of the run"
    pre = meta["preprocessing"]
    from ..data.sizes import resize_size

    side = resize_size(pre["image_size"], pre["crop_pct"])

    def load(key: str):
        return decode_one(src, key, side, pre["interpolation"])

    arrays, kept, skipped = _decode(load, [s.key for s in samples])
    remap = {i: meta["classes"].index(c) for i, c in enumerate(src.classes) if c in meta["classes"]}
    labels = [task.relabel(samples[i].label, remap) for i in kept]  # None: a class the model does not know
    calibration, _, _ = _decode(load, [s.key for s in calibrated])
    return CheckImages(
        arrays,
        [samples[i].key for i in kept],
        labels,
        f"{len(arrays)} {source} ({run_dir / 'split.csv'})",
        calibration,
        skipped,
    )


def _int8_check_samples(splits: dict, calibrated: list, limit: int) -> tuple[list, str]:
    """What int8 is checked on: val + test, and training images outside the calibration set (int8 is a change of
    arithmetic, not of what was learnt, so it flips borderline images of any split alike), at most `limit`. The train
    sample takes what val + test leave, and at least a fifth of the limit."""
    held = [*splits.get("val", []), *splits.get("test", [])]
    used = {s.key for s in calibrated}
    train = [s for s in splits.get("train", []) if s.key not in used]
    n_train = min(len(train), max(limit - len(held), limit // 5))
    held = _spread(held, limit - n_train)
    train = _spread(train, n_train)
    val = set(splits.get("val", []))
    counts = {"val": sum(s in val for s in held), "test": sum(s not in val for s in held)}
    parts = [f"{n} {k}" for k, n in counts.items() if n] + ([f"{len(train)} train (not calibration)"] if train else [])
    return held + train, f"images of the run ({', '.join(parts)})"


def given_images(meta: dict[str, Any], paths: list[Path], limit: int) -> CheckImages:
    """--check IMAGES (files or folders). A file inside a folder named after a class is labelled with it (tasks whose
    folders name classes: classification); other tasks' check images are unlabelled."""
    from ..data.sizes import resize_size

    files = []
    for p in paths:
        if not Path(p).exists():
            raise ConfigError(f"--check '{p}' does not exist: give image files or folders.")
        files += image_files(Path(p))
    if not files:
        raise ConfigError(f"--check {' '.join(map(str, paths))}: no images found there.")
    files = _spread(files, limit)
    pre = meta["preprocessing"]
    decode = Preprocess(resize_size(pre["image_size"], pre["crop_pct"]), pre["interpolation"])
    arrays, kept, skipped = _decode(decode.file, [str(f) for f in files])
    names = [str(files[i]) for i in kept]
    classes = meta["classes"]
    labels = [classes.index(Path(n).parent.name) if Path(n).parent.name in classes else None for n in names]
    labelled = task_of(meta).folder_labels and None not in labels
    return CheckImages(
        arrays,
        names,
        labels if labelled else None,
        f"{len(arrays)} images given with --check",
        [],
        skipped,
    )


def check_images(
    meta: dict[str, Any], check: list[Path] | None, limit: int = 500, calibration_limit: int = 128, int8: bool = False
) -> CheckImages:
    """--check IMAGES when given, else the run's own held-out split (int8: val, test and a train sample); with
    neither, a ConfigError saying what to give."""
    found = given_images(meta, check, limit) if check else run_images(meta, limit, calibration_limit, int8)
    if check and not found.arrays:  # a list file or a text file given as --check: it is not read as a list
        raise ConfigError(
            f"--check {' '.join(map(str, check))}: none of its {len(found.skipped)} file(s) could be read as an image"
            + (f" ({found.skipped[0][0]}: {found.skipped[0][1]})" if found.skipped else "")
            + ". Give image files or folders of images; list files are not read here."
        )
    if found is None or not found.arrays:
        raise ConfigError(
            f"No images to check the export against: '{meta['_path']}' has no run folder with split.csv "
            f"and config.json beside it, or the data they name has moved. Give some with --check "
            f"IMAGES (files or folders; class-named folders also measure accuracy)."
        )
    if found.labels is not None and any(label is None for label in found.labels):
        found.labels = None
    return found


def compare(
    reference: np.ndarray,
    outputs: np.ndarray,
    labels: list | None,
    names: list[str] | None = None,
    task: Task | None = None,
    classes: list[str] | None = None,
) -> dict[str, Any]:
    """Agreement (the task's: the same top-1 class, label set or value) and |Δ| of `outputs` against `reference` (the
    task's outputs, N rows each), and the task's score of each when labelled (classification: accuracy_bundle,
    accuracy_export, accuracy_change; regression r2_*, multi-label map_*). Classification keeps the names its
    reports always had beside the common ones: top1_agreement, max_abs_dp, mean_abs_dp."""
    task = task or get_task()
    same = np.asarray(task.agree(reference, outputs), dtype=bool).reshape(-1)
    d = np.abs(task.parity_units(reference) - task.parity_units(outputs))
    out: dict[str, Any] = {
        "images": int(len(reference)),
        "agreement": float(same.mean()) if len(same) else 1.0,
        "disagreements": int((~same).sum()),
        "max_abs_diff": float(d.max()) if d.size else 0.0,
        "mean_abs_diff": float(d.mean()) if d.size else 0.0,
    }
    out.update({alias: out[key] for key, alias in task.parity_aliases.items()})
    if names is not None:
        out["disagreeing"] = [names[i] for i in np.flatnonzero(~same)[:20]]
    if labels is not None:
        y = task.targets(labels, classes or [])
        score = task.score_name
        out[f"{score}_bundle"] = task.output_score(reference, y)
        out[f"{score}_export"] = task.output_score(outputs, y)
        out[f"{score}_change"] = out[f"{score}_export"] - out[f"{score}_bundle"]
        out[f"{score}_change_interval"] = list(score_interval(reference, outputs, y, task))
    return out


LEVEL = 0.95
BOOTSTRAP = 1000  # paired resamples for a score that is not a share of images (R², mAP): ~0.1 s on 500 images


def score_interval(reference, outputs, targets, task: Task, level: float = LEVEL) -> tuple[float, float]:
    """The 95% interval of the score's change from `reference` to `outputs` on the same images. A share of images
    (accuracy): Agresti & Min's paired interval (each cell of the 2x2 right/wrong table + 0.5), which does not collapse
    to zero width when no image flips: 0 flips of 6 images gives -24 to +24 points, of 500 images -0.4 to +0.4; so
    6 images cannot support a 2-point bound and 500 can. Other scores (R², mAP): a paired bootstrap of the images."""
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + level / 2))
    y = np.asarray(targets)
    n = len(y)
    if n == 0:
        return float("-inf"), float("inf")
    if task.proportion:
        right_ref = np.asarray(reference).argmax(-1) == y
        right_out = np.asarray(outputs).argmax(-1) == y
        fixed = float((~right_ref & right_out).sum()) + 0.5  # int8 right where the bundle was wrong
        broken = float((right_ref & ~right_out).sum()) + 0.5  # and the reverse
        m = n + 2.0  # 0.5 added to each of the four cells
        diff = (fixed - broken) / m
        half = z * np.sqrt(max((fixed + broken) - (fixed - broken) ** 2 / m, 0.0)) / m
        return float(diff - half), float(diff + half)
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(BOOTSTRAP):
        i = rng.integers(0, n, n)
        draws.append(
            task.output_score(np.asarray(outputs)[i], y[i]) - task.output_score(np.asarray(reference)[i], y[i])
        )
    draws = np.asarray(draws, dtype=np.float64)
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return float("-inf"), float("inf")
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def agreement_low(agreeing: int, n: int, level: float = LEVEL) -> float:
    """The low end of the 95% (Wilson) interval of a share of agreeing answers: 6 of 6 -> 0.61, 500 of 500 -> 0.99."""
    from ..evaluation.intervals import wilson

    return wilson(agreeing, n, level)[0] if n else 0.0
