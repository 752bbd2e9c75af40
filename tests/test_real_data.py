"""Acceptance on real data from ../shared/data (skipped with a reason where it is absent) and the bundled digits."""

from __future__ import annotations

import json

import numpy as np
import pytest

import transferkit

from .conftest import shared
from .test_cli import cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def feature_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("hymenoptera-cache"))  # shared by the linear and two-phase runs


def test_hymenoptera_linear_reaches_93(tmp_path, feature_cache):
    run = transferkit.fit(
        shared("hymenoptera"), strategy="linear", out=str(tmp_path), quiet=True, cache_dir=feature_cache
    )
    assert run.eval_split == "val" and run.test_metrics["n"] == 153
    assert run.test_metrics["accuracy"] >= 0.93, run.test_metrics["accuracy"]


def test_hymenoptera_two_phase_reaches_94(tmp_path, feature_cache):
    run = transferkit.fit(
        shared("hymenoptera"),
        strategy="two-phase",
        epochs=3,
        head_epochs=1,
        out=str(tmp_path),
        quiet=True,
        cache_dir=feature_cache,
    )
    assert [r["phase"] for r in run.history] == ["head", "finetune", "finetune"]
    assert run.test_metrics["accuracy"] >= 0.94, run.test_metrics["accuracy"]


@pytest.mark.parametrize("strategy", ["linear", "freeze:4"])
def test_every_strategy_through_the_cli(tmp_path, strategy):
    """Two short epochs at 96 px: the point is a loadable bundle whose predict agrees with evaluate, for a head on
    cached features and for the training loop (finetune, scratch and two-phase share that loop and its bundle: the
    CLI adds nothing per strategy; they are trained in test_strategies.py, test_distributed.py and above)."""
    data = shared("hymenoptera")
    out = cli(
        "train",
        data,
        "--strategy",
        strategy,
        "--epochs",
        "2",
        "--head-epochs",
        "1",
        "--image-size",
        "96",
        "--out",
        tmp_path,
        "--name",
        "run",
        "-q",
    ).stdout
    run_dir = tmp_path / "run"
    assert out.strip().splitlines()[-1] == str(run_dir)
    ev = json.loads(cli("evaluate", run_dir / "best", data, "--json").stdout)
    assert ev["split"] == "val" and ev["n"] == 153
    preds = json.loads(cli("predict", run_dir / "best", data / "val", "--json").stdout)
    truth = [p["path"].split("/")[-2] for p in preds]
    acc = float(np.mean([p["label"] == t for p, t in zip(preds, truth)]))
    assert acc == pytest.approx(ev["accuracy"])
    # val is 70 ants / 83 bees: always answering "bees" scores 0.54. Two epochs at 96 px: linear reaches ~0.9, the
    # loop-trained freeze:4 ~0.65-0.7 (measured)
    majority = max(ev["per_class"][c]["support"] for c in ev["per_class"]) / ev["n"]
    floor = {"linear": 0.85, "freeze:4": 0.6}[strategy]
    assert ev["accuracy"] >= floor > majority + 0.05, (ev["accuracy"], majority)


def test_demo_digits_reaches_97(tmp_path):
    from transferkit.demo import run_demo

    run = run_demo(out=str(tmp_path), quiet=True)
    # the chart fine-tunes tiny images far from ImageNet; the near-perfect probe on stages features keeps it linear
    assert (
        run.strategy == "linear" and "tiny" in run.strategy_reason and "nothing for fine-tuning" in run.strategy_reason
    )
    assert run.config.model.features == "stages"
    assert json.loads((run.path / "config.json").read_text())["resolved"]["image_size"] == 64
    assert run.test_metrics["n"] == 270 and run.test_metrics["accuracy"] >= 0.97, run.test_metrics["accuracy"]
