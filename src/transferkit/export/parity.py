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


def run_images(meta: dict[str, Any], limit: int, calibration_limit: int) -> CheckImages | None:
    """The run's own held-out images (test, else val), read through the run's split.csv and config.json beside best/;
    None when the run folder or its data is not there."""
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
    pre = meta["preprocessing"]
    from ..data.sizes import resize_size

    side = resize_size(pre["image_size"], pre["crop_pct"])

    def load(key: str):
        return decode_one(src, key, side, pre["interpolation"])

    samples = _spread(splits[split], limit)
    arrays, kept, skipped = _decode(load, [s.key for s in samples])
    remap = {i: meta["classes"].index(c) for i, c in enumerate(src.classes) if c in meta["classes"]}
    labels = [task.relabel(samples[i].label, remap) for i in kept]  # None: a class the model does not know
    calibration, _, _ = _decode(load, [s.key for s in _spread(splits.get("train", []), calibration_limit)])
    return CheckImages(
        arrays,
        [samples[i].key for i in kept],
        labels,
        f"{len(arrays)} {split} images of the run ({run_dir / 'split.csv'})",
        calibration,
        skipped,
    )


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
    meta: dict[str, Any], check: list[Path] | None, limit: int = 500, calibration_limit: int = 128
) -> CheckImages:
    """--check IMAGES when given, else the run's own held-out split; with neither, a ConfigError saying what to give."""
    found = given_images(meta, check, limit) if check else run_images(meta, limit, calibration_limit)
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
    return out
