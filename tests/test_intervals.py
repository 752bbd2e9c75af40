"""evaluation/intervals.py against hand-computed values and independent formulas."""

from __future__ import annotations

import math

import pytest

from transferkit.evaluation.intervals import (
    TYPICAL_GAP,
    accuracy_interval,
    mcnemar,
    mean_interval,
    resolution,
    wilson,
)


def wilson_by_hand(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson (1927): (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def test_wilson_known_values():
    low, high = wilson(45, 50)
    assert (round(low, 3), round(high, 3)) == (0.786, 0.957)
    for k, n in ((0, 10), (10, 10), (137, 150), (1, 3), (500, 1000)):
        assert wilson(k, n) == pytest.approx(wilson_by_hand(k, n), abs=1e-6), (k, n)
    low, high = wilson(50, 50)  # 100% right still leaves room below: the Wald interval would be (1, 1)
    assert high == pytest.approx(1.0) and 0.9 < low < 0.95
    assert wilson(27, 30, level=0.99)[0] < wilson(27, 30)[0]


def test_resolution_and_the_too_small_rule():
    # 150 images at 90%: the interval's half-width is 4.8 points, sqrt(2) x that is what two models must differ by.
    assert resolution(135, 150) == pytest.approx(0.0685, abs=5e-4)
    small = accuracy_interval({"n": 150, "accuracy": 0.9})
    assert not small["separates"] and "6.9 points" in small["note"] and "--cv" in small["note"]
    assert (small["low"], small["high"]) == pytest.approx(wilson(135, 150))
    big = accuracy_interval({"n": 5000, "accuracy": 0.9})
    assert big["separates"] and big["resolution"] < TYPICAL_GAP
    assert accuracy_interval({"n": 0, "accuracy": float("nan")}) is None
    assert accuracy_interval({"n": 40, "mae": 3.2}) is None  # a regression: no accuracy, no interval here


def test_mean_interval_is_students_t():
    mean, low, high = mean_interval([0.91, 0.89, 0.94])
    sd = 0.025166  # sample std of the three
    assert mean == pytest.approx(0.91333, abs=1e-5)
    assert high - mean == pytest.approx(4.302653 * sd / math.sqrt(3), abs=1e-5)  # t(0.975, 2 df) = 4.3027
    assert mean - low == pytest.approx(high - mean)
    one = mean_interval([0.9])
    assert one[0] == 0.9 and math.isnan(one[1]) and math.isnan(one[2])
    same = mean_interval([0.8, 0.8, 0.8])
    assert same == pytest.approx((0.8, 0.8, 0.8))


def test_mcnemar_counts_only_disagreements():
    both = [True] * 30
    a = [True] * 10 + [False] * 2 + both  # a alone right on 10 images, b alone on 2
    b = [False] * 10 + [True] * 2 + both
    assert mcnemar(a, b) == pytest.approx(2 * sum(math.comb(12, i) for i in range(3)) / 2**12)  # 0.0386
    assert mcnemar(a, b) == mcnemar(b, a)
    assert mcnemar(both, both) == 1.0
    with pytest.raises(ValueError):
        mcnemar([True], [True, False])
