"""Inference precision: `auto` gives fp32's answers on every CPU; bf16, when chosen, agrees between training and
prediction (linear is evaluated on its cached bf16 features, predict runs bf16 autocast)."""

from __future__ import annotations

import pytest

import transferkit
from transferkit.engine.runtime import best_precision, cpu_bf16_supported, inference_precision
from transferkit.errors import ConfigError

from .conftest import FAST


def test_auto_is_fp32_on_any_cpu():
    # measured in BENCHMARKS.md: bf16 changes 1.2-6% of top-1 answers on the real data (the bar is 0.5%)
    assert best_precision("cpu") == "fp32" and inference_precision("auto", "cpu") == "fp32"
    assert inference_precision("bf16", "cpu") == "bf16"
    print("native bf16 on this CPU:", cpu_bf16_supported())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_run_metrics_are_what_evaluate_reproduces_at_the_runs_precision(tiny_folder, tmp_path, precision):
    run = transferkit.fit(tiny_folder, strategy="linear", feature_precision=precision, out=str(tmp_path), **FAST)
    metrics = transferkit.evaluate(run.best, tiny_folder, precision=precision)
    assert metrics["precision"] == precision
    assert metrics["accuracy"] == pytest.approx(run.test_metrics["accuracy"])
    assert metrics["loss"] == pytest.approx(run.test_metrics["loss"], abs=2e-2 if precision == "bf16" else 1e-4)


def test_unknown_precision_is_refused(tiny_folder, tmp_path):
    run = transferkit.fit(tiny_folder, strategy="linear", out=str(tmp_path), **FAST)
    with pytest.raises(ConfigError, match="--precision 'fp8'.*fp32"):
        transferkit.load(run.best, precision="fp8")
