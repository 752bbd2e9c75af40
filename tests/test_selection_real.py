"""The advisor on real data: digits (8 px scans, far from ImageNet) and ants/bees (ImageNet-like photos)."""

from __future__ import annotations

import pytest

import transferkit

from .conftest import shared

pytestmark = pytest.mark.slow


def test_advise_digits_keeps_a_linear_head_on_features_from_every_depth(tmp_path):
    from transferkit.demo import write_digits

    advice = transferkit.advise(write_digits(tmp_path / "digits"), quiet=True)
    assert not advice.similar and advice.shift > 0.3, advice.reason  # measured 0.63
    # the chart alone fine-tunes these tiny scans; the stages probe (measured 98.6%) leaves too few errors to chase
    assert "fine-tune all" in advice.reason and advice.features == "stages" and advice.probe_acc > 0.95, advice.reason
    assert advice.strategy == "linear" and "nothing for fine-tuning" in advice.reason, advice.reason


def test_advise_hymenoptera_keeps_the_features():
    # one backbone keeps it short (the three are BENCHMARKS.md's); its photos (374 px) are also measured at 1.25x
    # its input (FixRes), the shift at the input itself
    advice = transferkit.advise(shared("hymenoptera"), backbones="efficientnet_lite0", quiet=True)
    assert advice.similar and advice.shift < 0.3 and advice.probe_acc > 0.9, advice.reason  # measured 0.07, 94.1%
    assert advice.strategy == "linear" or advice.strategy in ("two-phase", "freeze:2"), advice.reason
    measured = {(c["image_size"], c["features"]) for c in advice.candidates if c["score"] is not None}
    assert {(224, "last"), (288, "last")} <= measured and advice.image_size in (224, 288), advice.candidates
