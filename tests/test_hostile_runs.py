"""Issue 21 (runs, evaluate, export --int8, doctor): each case a hostile user tried, and what they see now.

evaluate finds the run's split by image identity however DATA is spelled; export --int8 claims its accuracy bound
only where the check images support it; --resume never fills a missing config key with today's default; doctor writes
its report only where asked; the training line names a class it leaves out; the random split keeps a training image
of every class; the training pre-check reports near duplicates across splits (or says it did not look); doctor reads
--task, --split and --seed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import transferkit
from transferkit.errors import ConfigError

from .conftest import FAST, write_folder
from .deploy_models import run_cli


class Messages:
    def __init__(self):
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny linear run trained on data given as a RELATIVE path (as a user in the data's parent folder would)."""
    root = tmp_path_factory.mktemp("hostile")
    write_folder(root / "colours", per_class=12)
    here = os.getcwd()
    os.chdir(root)
    try:
        fitted = transferkit.fit("colours", strategy="linear", out="runs", cache_dir=str(root / "cache"), **FAST)
    finally:
        os.chdir(here)
    return root, root / fitted.path, fitted


# ---- 1: evaluate ------------------------------------------------------------------------------------------------
def test_evaluate_scores_the_runs_test_split_however_data_is_spelled(run, tmp_path, monkeypatch):
    root, path, fitted = run
    n_test = sum(1 for line in (path / "split.csv").read_text().splitlines() if line.startswith("test,"))
    assert 0 < n_test < 36
    monkeypatch.chdir(tmp_path)  # another working folder, the data given as an absolute path
    m = transferkit.evaluate(path / "best", root / "colours")
    assert m["split"] == "test" and m["n"] == n_test == m["images"]  # not all 36 images, train included
    assert m["accuracy"] == pytest.approx(fitted.test_metrics["accuracy"])
    assert f"{n_test} images: the run's test split" in m["scored"]
    code, stdout, _ = run_cli("evaluate", path / "best", root / "colours")
    assert code == 0 and f"Scored {n_test} images: the run's test split" in stdout


def test_evaluate_on_other_data_says_it_scored_every_image(run, tmp_path):
    _, path, _ = run
    other = write_folder(tmp_path / "other", per_class=4, seed=7)
    m = transferkit.evaluate(path / "best", other)
    assert m["split"] == "all" and m["images"] == 12 and "every image of DATA" in m["scored"]


# ---- 2: export --int8 ---------------------------------------------------------------------------------------------
def _outputs(right: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Two-class probabilities that are right where `right` is."""
    pred = np.where(right, y, 1 - y)
    return np.eye(2)[pred] * 0.8 + 0.1


@pytest.mark.parametrize(("n", "supported"), [(6, False), (40, False), (500, True)])
def test_int8_interval_of_the_difference_supports_a_2_point_bound_only_on_enough_images(n, supported):
    from transferkit.export import INT8_MAX_SCORE_DROP
    from transferkit.export.parity import score_interval
    from transferkit.tasks import get_task

    y = np.arange(n) % 2
    right = np.arange(n) % 6 != 0  # the bundle is right on 5 of 6; int8 flips none
    low, high = score_interval(_outputs(right, y), _outputs(right, y), y, get_task("classification"))
    assert low < 0 < high
    assert (-low <= INT8_MAX_SCORE_DROP) == supported


def test_int8_checks_val_test_and_unused_train_images(run):
    from transferkit.bundle import read_meta
    from transferkit.export.parity import run_images

    root, path, _ = run
    here = os.getcwd()
    os.chdir(root)  # the run's config names its data relative to where it was trained
    try:
        meta = read_meta(path / "best")
        plain = run_images(meta, 500, 128)
        int8 = run_images(meta, 500, 128, int8=True)
    finally:
        os.chdir(here)
    assert "test images" in plain.source and len(plain.arrays) < len(int8.arrays)
    assert "val" in int8.source and "test" in int8.source and "train (not calibration)" in int8.source
    assert len(int8.arrays) + len(int8.calibration) <= 36


def test_int8_export_on_a_small_run_refuses_to_claim_the_bound(run, tmp_path):
    pytest.importorskip("onnxruntime")
    root, path, _ = run
    here = os.getcwd()
    os.chdir(root)
    try:
        code, stdout, stderr = run_cli("export", path / "best", "--int8", "--out", tmp_path / "m.int8.onnx")
    finally:
        os.chdir(here)
    report = json.loads((tmp_path / "m.int8.parity.json").read_text())
    assert code == 2 and not (tmp_path / "m.int8.onnx").exists() and "Traceback" not in stderr
    assert report["accepted"] is False and report["int8"]["bound_supported"] is False
    assert "cannot support the bound" in stderr and "95% interval" in stderr and "TOO FEW IMAGES" in stdout


# ---- 3, 18: --resume with a key missing from config.json -----------------------------------------------------------
def _edited_copy(path: Path, tmp_path: Path, part: str, key: str) -> Path:
    copy = shutil.copytree(path, tmp_path / "run")
    saved = json.loads((copy / "config.json").read_text())
    del saved["config"][part][key]
    (copy / "config.json").write_text(json.dumps(saved))
    return copy


def test_resume_takes_a_missing_image_size_from_the_run_not_todays_default(run, tmp_path):
    from transferkit.api import _settings
    from transferkit.config import DataConfig

    _, path, _ = run
    copy = _edited_copy(path, tmp_path, "data", "image_size")
    cfg, _ = _settings(None, None, copy, {})
    assert cfg.data.image_size == 32 != DataConfig().image_size  # what the run trained at, from config.json


def test_resume_takes_a_missing_strategy_from_the_run(run, tmp_path):
    from transferkit.api import _settings

    _, path, _ = run
    cfg, _ = _settings(None, None, _edited_copy(path, tmp_path, "train", "strategy"), {})
    assert cfg.train.strategy == "linear"  # not today's default "auto", which would measure three backbones


@pytest.mark.parametrize(("part", "key"), [("data", "path"), ("train", "lr")])
def test_resume_stops_naming_a_missing_key_it_has_no_record_of(run, tmp_path, part, key):
    _, path, _ = run
    copy = _edited_copy(path, tmp_path, part, key)
    before = (copy / "config.json").read_text()
    with pytest.raises(ConfigError, match=rf"lacks config\.{part}\.{key}\b.*today's default"):
        transferkit.fit(resume=copy)
    assert (copy / "config.json").read_text() == before  # nothing rewritten (the path is not made '')


# ---- 10: doctor's report file ------------------------------------------------------------------------------------
def test_doctor_writes_no_file_unless_asked_and_never_over_a_users_file(tiny_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "doctor.json"
    mine.write_text('{"mine": 1}')
    code, stdout, _ = run_cli("doctor", tiny_folder)
    assert code == 0 and mine.read_text() == '{"mine": 1}' and "--out FILE" in stdout
    code, _, stderr = run_cli("doctor", tiny_folder, "--out", mine)
    assert code == 2 and "not a doctor report" in stderr and mine.read_text() == '{"mine": 1}'
    made = tmp_path / "report.json"
    assert run_cli("doctor", tiny_folder, "--out", made)[0] == 0
    assert run_cli("doctor", tiny_folder, "--out", made)[0] == 0  # its own report: replaced
    assert json.loads(made.read_text())["counts"] == {"all": {"red": 12, "green": 12, "blue": 12}}


def test_doctor_in_a_read_only_folder_says_so_without_a_traceback(tiny_folder, tmp_path, monkeypatch):
    import transferkit.faults

    def refuse(path, data, fault=None):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(transferkit.faults, "write_atomic", refuse)  # root ignores chmod: the OS error, simulated
    code, _, stderr = run_cli("doctor", tiny_folder, "--out", tmp_path / "d.json")
    assert code == 2 and "cannot be written" in stderr and "Permission denied" in stderr
    assert "Traceback" not in stderr


# ---- 13: a class left out is named on the training line ----------------------------------------------------------
def test_a_class_of_unreadable_files_is_named_on_the_training_line(tmp_path):
    from transferkit.data.doctor import preflight
    from transferkit.data.sources import open_source
    from transferkit.data.split import make_splits

    root = write_folder(tmp_path / "d", per_class=6, classes=("red", "green"))
    (root / "iphone").mkdir()
    for i in range(3):
        (root / "iphone" / f"IMG_{i}.HEIC").write_bytes(b"\0\0\0\x18ftypheic" + bytes(64))
    src = open_source(root)
    reporter = Messages()
    preflight(src, make_splits(src, (0.6, 0.2, 0.2), 0), reporter)
    assert "empty-class" in reporter.lines[0] and "iphone" in reporter.lines[0]


# ---- 14: the random split keeps a training image of every class; doctor takes the split options ----------------------
def test_the_random_split_keeps_a_training_image_of_every_class():
    from transferkit.data.sources import DataSource, Sample
    from transferkit.data.split import make_splits

    classes = [f"c{i:03d}" for i in range(100)]
    samples = [Sample(f"/d/{c}/{k}.png", i) for i, c in enumerate(classes) for k in range(3)]
    src = DataSource(Path("/d"), "folders", classes, {"all": samples})
    for seed in range(3):
        splits = make_splits(src, (0.7, 0.15, 0.15), seed)
        assert {s.label for s in splits["train"]} == set(range(100))
        assert sorted(len(v) for v in splits.values()) == [45, 45, 210]  # the parts keep their sizes
        assert len({s.key for v in splits.values() for s in v}) == 300


def test_doctor_takes_the_split_train_makes(tiny_folder, tmp_path):
    from transferkit.data.sources import open_source
    from transferkit.data.split import make_splits

    code, stdout, _ = run_cli(
        "doctor", tiny_folder, "--split", "0.5,0.3,0.2", "--seed", "3", "--out", tmp_path / "d.json"
    )
    counts = json.loads((tmp_path / "d.json").read_text())["counts"]
    made = make_splits(open_source(tiny_folder), (0.5, 0.3, 0.2), 3)
    assert code == 0 and {k: sum(v.values()) for k, v in counts.items()} == {k: len(v) for k, v in made.items()}


def test_trains_doctor_hint_names_the_split_it_made(tiny_folder):
    from transferkit.api import _doctor_command
    from transferkit.config import RunConfig
    from transferkit.data.sources import open_source

    cfg = RunConfig()
    cfg.data.path, cfg.data.split, cfg.train.seed = str(tiny_folder), (0.6, 0.2, 0.2), 4
    assert _doctor_command(cfg, open_source(tiny_folder)).endswith("--task classification --split 0.6,0.2,0.2 --seed 4")


# ---- 15: the training pre-check reports near duplicates across splits -------------------------------------------------
def test_the_training_precheck_reports_a_reencoded_training_image_in_val(tiny_presplit, monkeypatch):
    import transferkit.data.doctor as doctor_module
    from transferkit.data.doctor import preflight
    from transferkit.data.sources import open_source

    yy, xx = np.mgrid[0:128, 0:128]  # a smooth picture (a photo, not noise), and its quality-70 re-encode in val
    photo = np.dstack([xx * 2, yy * 2, (xx + yy)]).astype(np.uint8)
    photo[40:90, 30:80] = (200, 40, 40)
    Image.fromarray(photo).save(tiny_presplit / "train" / "red" / "photo.png")
    Image.fromarray(photo).save(tiny_presplit / "val" / "red" / "photo.jpg", quality=70)
    src = open_source(tiny_presplit)
    reporter = Messages()
    preflight(src, src.splits, reporter)
    assert "near-duplicate-across-splits" in reporter.lines[0]
    monkeypatch.setattr(doctor_module, "PREFLIGHT_DEEP_FILES", 10)  # larger data: headers only, and it says so
    reporter = Messages()
    preflight(src, src.splits, reporter)
    assert "Headers only" in reporter.lines[0] and "near duplicates" in reporter.lines[0]
    assert "near-duplicate-across-splits" not in reporter.lines[0]
    assert f"transferkit doctor {tiny_presplit}" in reporter.lines[0]


# ---- 17: doctor --task; the regression epoch line -----------------------------------------------------------------
def test_doctor_reads_prices_as_values_with_task_regression(tmp_path):
    from .test_regression import write_csv

    labels, _ = write_csv(tmp_path / "houses", n=40)
    code, stdout, _ = run_cli("doctor", labels, "--target-column", "price", "--out", tmp_path / "a.json")
    codes = [p["code"] for p in json.loads((tmp_path / "a.json").read_text())["problems"]]
    assert "numeric-labels" in codes and "--task regression" in " ".join(stdout.split())  # read as classes: told so
    code, stdout, _ = run_cli(
        "doctor", labels, "--target-column", "price", "--task", "regression", "--out", tmp_path / "b.json"
    )
    report = json.loads((tmp_path / "b.json").read_text())
    assert code == 0 and report["counts"] == {"all": {"price": 40}} and report["imbalance"] is None
    assert not {"imbalance", "numeric-labels", "class-missing-from-split"} & {p["code"] for p in report["problems"]}
    assert "--balance" not in stdout


def test_the_regression_epoch_line_names_r2_not_accuracy():
    from transferkit.progress import format_row
    from transferkit.tasks import get_task

    row = {"epoch": 1, "phase": "head", "train_loss": 0.5, "val_loss": 0.4, "val_acc": 0.61, "seconds": 1.0}
    line = format_row({**row, "score": get_task("regression").score_column})
    assert "val r2 0.6100" in line and "val acc" not in line
