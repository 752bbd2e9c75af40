"""Calibration: ECE on hand-made cases, and temperature scaling on logits made over- and under-confident on purpose."""

from __future__ import annotations

import numpy as np
import pytest

from transferkit.evaluation.calibration import (
    MIN_FIT_IMAGES,
    calibrate,
    expected_calibration_error,
    fit_temperature,
    nll,
    reliability_bins,
    softmax,
)


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
