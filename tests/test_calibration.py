"""Calibration: ECE on hand-made cases, and temperature scaling on logits made over- and under-confident on purpose."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import transferkit
from transferkit.evaluation.calibration import (
    MIN_FIT_IMAGES,
    calibrate,
    expected_calibration_error,
    fit_temperature,
    nll,
    reliability_bins,
    softmax,
)
from transferkit.evaluation.finish import calibration_line, store_temperature

from .conftest import shared


def test_ece_hand_made_case():
    # Two predictions at 0.85 confidence, one of them right: |0.5 - 0.85| = 0.35 on half the data.
    # Two at 0.65, both right: |1.0 - 0.65| = 0.35 on the other half. ECE = 0.5 * 0.35 + 0.5 * 0.35 = 0.35.
    probs = np.array([[0.85, 0.15], [0.85, 0.15], [0.65, 0.35], [0.65, 0.35]])
    labels = np.array([0, 1, 0, 0])
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.35)
    bins = reliability_bins(probs, labels, n_bins=10)
    assert bins.count == [0, 0, 0, 0, 0, 0, 2, 0, 2, 0]
    assert bins.accuracy[6] == 1.0 and bins.accuracy[8] == 0.5
    assert bins.confidence[6] == pytest.approx(0.65) and bins.confidence[8] == pytest.approx(0.85)


def test_ece_zero_when_confidence_matches_accuracy():
    # Ten predictions at 0.7, seven right: exactly as often right as they claim.
    probs = np.tile([0.7, 0.2, 0.1], (10, 1))
    labels = np.array([0] * 7 + [1] * 3)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)


def test_ece_full_confidence_all_wrong_is_one():
    probs = np.tile([1.0, 0.0], (5, 1))
    assert expected_calibration_error(probs, np.ones(5, dtype=int)) == pytest.approx(1.0)


def _calibrated_logits(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits z with labels drawn from softmax(z): calibrated by construction, so the right temperature is 1."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2.0, size=(n, k))
    p = softmax(z)
    labels = np.array([rng.choice(k, p=row) for row in p])
    return z, labels


def test_temperature_undoes_over_confidence_and_lowers_nll():
    z, labels = _calibrated_logits(4000, 4, seed=0)
    over = 3.0 * z  # the same ranking, three times too sure
    t = fit_temperature(over, labels)
    assert t == pytest.approx(3.0, rel=0.1)
    assert nll(over, labels, t) < nll(over, labels) - 0.1
    before = expected_calibration_error(softmax(over), labels)
    after = expected_calibration_error(softmax(over, t), labels)
    assert after < before / 3


def test_temperature_below_one_for_under_confident_logits():
    z, labels = _calibrated_logits(4000, 3, seed=1)
    t = fit_temperature(0.5 * z, labels)
    assert t == pytest.approx(0.5, rel=0.1)


def test_calibrate_fits_on_val_and_measures_on_test():
    z, labels = _calibrated_logits(3000, 5, seed=2)
    val, test = slice(0, 1500), slice(1500, None)
    cal = calibrate(4 * z[val], labels[val], 4 * z[test], labels[test], measured_on="test")
    assert cal.fitted_n == 1500 and cal.measured_on == "test" and not cal.note
    assert cal.nll_after < cal.nll_before and cal.ece_after < cal.ece_before
    assert sum(cal.bins_before.count) == sum(cal.bins_after.count) == 1500
    # Accuracy is untouched: dividing by a positive number never changes the argmax.
    assert (softmax(4 * z, cal.temperature).argmax(1) == z.argmax(1)).all()


def test_calibrate_leaves_tiny_validation_splits_alone():
    z, labels = _calibrated_logits(MIN_FIT_IMAGES - 1, 3, seed=3)
    cal = calibrate(5 * z, labels, 5 * z, labels)
    assert cal.temperature == 1.0 and cal.ece_before == cal.ece_after
    assert str(MIN_FIT_IMAGES) in cal.note


def test_temperature_is_the_nll_minimum_and_respects_the_bounds():
    z, labels = _calibrated_logits(500, 4, seed=3)
    t = fit_temperature(1.7 * z, labels)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 4001))
    best = grid[np.argmin([nll(1.7 * z, labels, g) for g in grid])]
    assert t == pytest.approx(best, rel=3e-3)  # the brute-force minimum over a fine grid
    assert nll(1.7 * z, labels, t) <= nll(1.7 * z, labels, best) + 1e-9
    right = np.eye(3)[[0, 1, 2, 0]] * 10  # every image right with a wide margin: sharper is always better
    assert fit_temperature(right, np.array([0, 1, 2, 0])) == pytest.approx(0.05)
    wrong = np.eye(3)[[1, 2, 0, 1]] * 10  # every image confidently wrong: flatter is always better
    assert fit_temperature(wrong, np.array([0, 1, 2, 0])) == pytest.approx(20.0)


def _noisy_classifier(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated logits of a noisy classifier (70-80% right with 3-4 classes), then made 5x too sure."""
    z, labels = _calibrated_logits(n, k, seed)
    return 5.0 * z, labels


def test_separable_validation_split_keeps_t_1_and_says_why():
    # 40 val images all right with a margin of at least 3 logits: NLL(T) falls all the way to T -> 0 (the old fit
    # returned its floor 0.05, i.e. logits x 20, and 100% confidence on every test image, the wrong ones included).
    rng = np.random.default_rng(4)
    labels = np.arange(40) % 3
    val = rng.normal(0, 1, (40, 3)) + 8 * np.eye(3)[labels]
    assert (val.argmax(1) == labels).all()
    test_z, test_y = _noisy_classifier(300, 3, seed=5)
    cal = calibrate(val, labels, test_z, test_y)
    assert cal.temperature == 1.0 and not cal.fitted
    assert "every one of the 40 validation images is right" in cal.note and "T -> 0" in cal.note
    assert cal.nll_after == cal.nll_before and cal.ece_after == cal.ece_before


def test_over_confident_noisy_classifier_still_gets_t_above_1():
    z, labels = _noisy_classifier(600, 4, seed=6)
    assert 0.5 < (z.argmax(1) == labels).mean() < 0.95  # really noisy: some val images are wrong
    cal = calibrate(z[:200], labels[:200], z[200:], labels[200:])
    assert cal.fitted and not cal.note and cal.temperature > 3
    assert cal.nll_after < cal.nll_before - 0.2 and cal.ece_after < cal.ece_before
    # The check that let it through: held out by cross-validation on val, the fitted T beat T = 1.
    assert cal.cv_nll_after < cal.cv_nll_before and "cross-validation" in cal.check


def test_a_temperature_that_does_not_help_held_out_val_is_not_kept():
    # Calibrated logits: the NLL-optimal T on any sample is 1 plus noise, and on held-out folds that noise costs a
    # little NLL, so T = 1 is kept and the note shows the held-out numbers.
    z, labels = _calibrated_logits(60, 3, seed=7)
    cal = calibrate(z, labels, z, labels)
    assert cal.temperature == 1.0 and not cal.fitted
    assert cal.cv_nll_after >= cal.cv_nll_before and "held-out" in cal.note


def test_one_wrong_image_among_confident_right_ones_is_not_trusted():
    # 39 right by ~10 logits, one wrong by 2: all 40 together give T ~ 1.8, but that rests on one image. The fold
    # that holds it out is separable (T at the 0.05 floor: its held-out NLL is 2 / 0.05 = 40 nats), so across the
    # folds T = 1 does better on held-out images and is kept.
    labels = np.arange(40) % 2
    z = 10.0 * np.eye(2)[labels] + np.random.default_rng(8).normal(0, 0.5, (40, 2))
    z[0] = [0.0, 2.0]  # label 0, predicted 1
    cal = calibrate(z, labels, z, labels)
    assert cal.temperature == 1.0 and not cal.fitted and cal.note


def test_fitted_t_at_a_bound_is_not_kept():
    # Every image confidently wrong: flatter is always better, the fit runs to its ceiling 20.
    labels = np.arange(30) % 3
    z = 10.0 * np.eye(3)[(labels + 1) % 3]
    cal = calibrate(z, labels, z, labels)
    assert cal.temperature == 1.0 and "bound" in cal.note


def test_printed_line_and_bundle_say_which_happened(tmp_path):
    labels = np.arange(30) % 3
    separable = 8 * np.eye(3)[labels]
    kept = calibrate(separable, labels, separable, labels, measured_on="val")
    line = calibration_line(kept, "val")
    assert line.startswith("Calibration: temperature 1 kept.") and "every one of the 30 validation images" in line
    z, y = _noisy_classifier(400, 3, seed=9)
    fitted = calibrate(z[:200], y[:200], z[200:], y[200:])
    line = calibration_line(fitted, "test")
    assert f"temperature {fitted.temperature:.3f}" in line and "5-fold cross-validation" in line
    assert f"NLL {fitted.nll_before:.4f} -> {fitted.nll_after:.4f}" in line

    (tmp_path / "transferkit.json").write_text(json.dumps({"classes": ["a"]}))
    store_temperature(tmp_path, kept.temperature, "val", kept.fitted_n, kept.note)
    meta = json.loads((tmp_path / "transferkit.json").read_text())
    assert meta["classes"] == ["a"] and meta["calibration"]["temperature"] == 1.0
    assert meta["calibration"]["note"] == kept.note


@pytest.mark.slow
def test_catvnoncat_linear_temperature_never_makes_test_worse(tmp_path):
    """cat/non-cat: `linear` gets all 37 val images right, which drove T to its 0.05 floor and test NLL 0.22 -> 4.09."""
    run = transferkit.fit(shared("catvnoncat"), strategy="linear", quiet=True, out=str(tmp_path))
    cal = json.loads((run.path / "report.json").read_text())["calibration"]
    assert cal["measured_on"] == "test"
    assert cal["nll_after"] <= cal["nll_before"] + 1e-9, cal
    meta = json.loads((run.path / "best" / "transferkit.json").read_text())
    assert meta["calibration"]["temperature"] == pytest.approx(cal["temperature"])
    if cal["temperature"] == 1.0:
        assert cal["note"] and meta["calibration"]["note"] == cal["note"]
    with open(run.path / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 50
    assert any(r["probability"] != "1.000000" for r in rows)
    # The old T = 0.05 multiplied the logits by 20 and printed the 2 wrong test predictions as 1.000000 sure too.
    wrong = [r for r in rows if r["correct"] == "0"]
    assert wrong and all(float(r["probability"]) < 1.0 and float(r["p_true"]) > 0.0 for r in wrong), wrong
