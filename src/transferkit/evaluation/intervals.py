"""How far a measured accuracy can be trusted: its 95% interval, and whether a split can tell two models apart.

    wilson(45, 50)                      # (0.786, 0.957): 90% right on 50 test images
    accuracy_interval(metrics)          # {"low", "high", "half_width", "resolution", "separates", "note", ...}
    mean_interval([0.91, 0.89, 0.94])   # (0.913, 0.851, 0.976): mean of repeats and its 95% t-interval
    mcnemar(a_right, b_right)           # exact paired p-value of two models on the same images

Wilson's interval rather than the textbook p ± 1.96·sqrt(p(1-p)/n): that one collapses to zero width at 100%, a
common result on a few dozen test images, and undercovers near 0 and 1 (Brown, Cai & DasGupta, 2001).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

LEVEL = 0.95
# Strategies measured on the same data differ by 0.6-4 points (eurosat: finetune 89.3%, freeze:2 90.7%, linear
# 91.3%, linear at 128 px 93.3%); a test split that cannot resolve 3 points cannot choose among them.
TYPICAL_GAP = 0.03


def wilson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The Wilson score interval of k successes in n trials (scipy's `proportion_ci(method="wilson")`)."""
    from scipy.stats import binomtest

    if n <= 0:
        return float("nan"), float("nan")
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def resolution(k: int, n: int, level: float = LEVEL) -> float:
    """The smallest accuracy difference between two models, each measured on n images like this one, that is more
    than noise: sqrt(2) x the interval's half-width, the margin of a difference of two independent accuracies of
    equal precision (150 images at 90%: half-width 4.8 points -> 6.9 points)."""
    low, high = wilson(k, n, level)
    return math.sqrt(2) * (high - low) / 2


def accuracy_interval(metrics: dict, level: float = LEVEL) -> dict | None:
    """The interval and the resolving power of a split's accuracy, for report.json; None without an accuracy."""
    n, acc = metrics.get("n") or 0, metrics.get("accuracy")
    if not n or acc is None or math.isnan(acc):
        return None
    k = round(acc * n)
    low, high = wilson(k, n, level)
    res = resolution(k, n, level)
    separates = res < TYPICAL_GAP
    note = (
        f"{n} images resolve differences of {res:.1%} or more between two models"
        if separates
        else f"{n} images are too few to separate two strategies: differences under {100 * res:.1f} points are "
        f"noise on this split (strategies usually differ by 1-4); use `compare` (repeated splits) or --cv"
    )
    return {
        "metric": "accuracy",
        "level": level,
        "method": "wilson",
        "low": low,
        "high": high,
        "half_width": (high - low) / 2,
        "resolution": res,
        "separates": separates,
        "note": note,
    }


def interval_text(iv: dict) -> str:
    """'95% CI 0.858-0.949' as the summary line and report.html write it."""
    return f"{iv['level']:.0%} CI {iv['low']:.3f}-{iv['high']:.3f}"


def mean_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high): Student's t-interval of the mean of repeated measurements (seeds, splits, folds).
    With one value the interval is unknown (nan): one repeat says nothing about how much repeats vary."""
    from scipy.stats import t

    n = len(values)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    mean = math.fsum(values) / n
    if n == 1:
        return mean, float("nan"), float("nan")
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)  # 3 repeats: t = 4.30, 5: 2.78
    return mean, mean - half, mean + half


def mcnemar(a_right: Sequence[bool], b_right: Sequence[bool]) -> float:
    """Two-sided exact McNemar p-value of two models scored on the same images: only the images where exactly one is
    right count, and under "equally good" each of those goes either way with probability 1/2 (a binomial test).
    1.0 when they never disagree."""
    from scipy.stats import binomtest

    if len(a_right) != len(b_right):
        raise ValueError(f"mcnemar needs the same images: {len(a_right)} vs {len(b_right)} answers")
    only_a = sum(bool(a) and not bool(b) for a, b in zip(a_right, b_right))
    only_b = sum(bool(b) and not bool(a) for a, b in zip(a_right, b_right))
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b).pvalue)
