"""--cv K on tiny generated images (32 px, linear), and the interval in the summary line `train` prints."""

from __future__ import annotations

import json

import pytest

import transferkit
from transferkit.crossval import make_folds
from transferkit.errors import ConfigError, DataError

from .conftest import FAST, write_folder


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cv")
    data = write_folder(root / "colours", per_class=12)
    return transferkit.fit(data, strategy="linear", cv=3, out=str(root / "runs"), cache_dir=str(root / "c"), **FAST)


def split_keys(path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for line in path.read_text().splitlines()[1:]:
        split, key = line.split(",")[:2]
        out.setdefault(split, set()).add(key)
    return out


def test_cv_folds_cover_train_val_once_and_leave_test_alone(cv_run):
    cv = cv_run.cv
    assert cv["k"] == 3 and cv["folded"] == "train+val" and len(cv["folds"]) == 3
    normal = split_keys(cv_run.path / "split.csv")
    held = []
    for fold in cv["folds"]:
        keys = split_keys(cv_run.path / fold["path"] / "split.csv")
        assert not keys["test"] & normal["test"]  # the run's test split is never used by a fold
        assert not keys["test"] & (keys["train"] | keys["val"])  # no fold picks or trains on what it is scored on
        held.append(keys["test"])
        assert not (cv_run.path / fold["path"] / "best").exists()  # the kept model is the normal run's
    assert set().union(*held) == normal["train"] | normal["val"] and sum(map(len, held)) == cv["n"]
    acc = cv["metrics"]["accuracy"]
    assert acc["mean"] == pytest.approx(sum(f["accuracy"] for f in cv["folds"]) / 3)
    assert acc["low"] <= acc["mean"] <= acc["high"] and cv["pooled"]["low"] <= cv["pooled"]["accuracy"]
    report = json.loads((cv_run.path / "report.json").read_text())
    assert report["cv"]["metrics"] == cv["metrics"]
    html = (cv_run.path / "report.html").read_text(encoding="utf-8")
    assert "3-fold cross-validation" in html and 'data-key="cv.metrics.accuracy.mean"' in html
    assert (cv_run.best / "transferkit.json").is_file()


def test_summary_line_gives_the_interval_and_the_cv_estimate(cv_run):
    from transferkit.cli.train import summary_lines

    text = summary_lines(cv_run)
    iv = cv_run.test_metrics["interval"]
    assert f"95% CI {iv['low']:.3f}-{iv['high']:.3f}" in text.splitlines()[0]
    # 5 test images: far too few to separate strategies, and the line says what difference they could resolve.
    assert not iv["separates"] and f"differences under {100 * iv['resolution']:.1f} points are noise" in text
    assert "3-fold CV on train+val: accuracy" in text and "pooled over" in text


def test_cv_refusals_before_training(tiny_folder, tmp_path):
    with pytest.raises(ConfigError, match="--cv 1"):
        transferkit.fit(tiny_folder, cv=1, out=str(tmp_path / "r"), **FAST)
    from transferkit.data.sources import open_source
    from transferkit.data.split import make_splits

    src = open_source(tiny_folder)  # 12 per class: 9 or 10 of each in train+val
    splits = make_splits(src, (0.7, 0.15, 0.15), 0)
    with pytest.raises(DataError, match="--cv 12: every fold needs an image of each class"):
        make_folds(src, splits, 12, (0.7, 0.15, 0.15), 0)
    folds = make_folds(src, splits, 4, (0.7, 0.15, 0.15), 0)
    assert len(folds) == 4 and all(f["val"] and f["train"] and f["test"] for f in folds)
    assert not (tmp_path / "r").exists()


def test_cv_text_says_the_tasks_score():
    """--cv on a regression printed only "see report.json": it says the R² (a multi-label run its mAP)."""
    from transferkit.crossval import cv_text, summarise
    from transferkit.tasks import get_task

    done = [{"fold": i, "strategy": "linear", "n": 10, "r2": r} for i, r in enumerate((0.5, 0.6, 0.7), 1)]
    cv = summarise(done, 3, "train+val")
    said = cv_text(cv, get_task("regression"))
    assert said.startswith("3-fold CV on train+val: R² 0.6000 ± ") and "on 30 held-out images" in said
    acc = [{"fold": i, "strategy": "linear", "n": 10, "accuracy": a} for i, a in enumerate((0.8, 0.9, 1.0), 1)]
    assert "accuracy 0.9000" in cv_text(summarise(acc, 3, "train+val"))  # the default: accuracy, pooled
