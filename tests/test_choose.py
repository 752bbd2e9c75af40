"""`auto`'s measured choices (selection/choose.py): candidates, the cross-validated probe, the budget."""

from __future__ import annotations

import json

import numpy as np
import pytest

import transferkit
from transferkit.config import RunConfig
from transferkit.options import apply_overrides
from transferkit.selection.choose import (
    Candidate,
    _folds,
    backbone_names,
    choose_candidate,
    estimate_training,
    input_sizes,
)
from transferkit.selection.frozen import open_data
from transferkit.strategies import parse_strategy

from .conftest import FAST, write_folder

TWO = "efficientnet_lite0,efficientnet_lite1"


def cfg_with(**overrides) -> RunConfig:
    return apply_overrides(RunConfig(), overrides)


def test_backbones_default_to_the_builtin_three_unless_one_is_named():
    assert backbone_names(cfg_with()) == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    assert backbone_names(cfg_with(backbone="timm:resnet18")) == ["timm:resnet18"]
    assert backbone_names(cfg_with(backbones=" a, b ,")) == ["a", "b"]


def test_backbones_are_checked_before_any_data_is_read(tmp_path):
    from transferkit.errors import ConfigError

    with pytest.raises(ConfigError, match="efficientnet_lite9"):
        transferkit.fit(tmp_path / "not-there", backbones="efficientnet_lite0,efficientnet_lite9")
    with pytest.raises(ConfigError, match="--backbones names none"):
        transferkit.fit(tmp_path / "not-there", backbones=" , ")


def test_input_sizes_follow_the_data_and_upscale_small_images_once():
    cfg = cfg_with()
    assert input_sizes(cfg, 369, 224) == [224]  # photos: the backbone's own size
    assert input_sizes(cfg, 64, 224) == [64, 128]  # satellite tiles: their size and twice it
    assert input_sizes(cfg, 64, 100) == [64, 100]  # twice, but never past the backbone's
    assert input_sizes(cfg, 8, 224) == [64]  # 8 px digits: 64 is already 8x; 4x the side (32) allows no more
    assert input_sizes(cfg_with(image_size=96), 64, 224) == [96]  # given: that size alone


def test_folds_deal_every_class_over_every_fold():
    y = np.array([0] * 10 + [1] * 5 + [2] * 25)
    fold = _folds(y, "classification", 5, seed=3)
    for c in (0, 1, 2):
        counts = np.bincount(fold[y == c], minlength=5)
        assert counts.max() - counts.min() <= 1  # 10 -> 2 each, 5 -> 1 each, 25 -> 5 each
    r = np.linspace(0, 1, 50)
    fr = _folds(r, "regression", 5, seed=0)
    assert {int(fr[r < 0.1].min()), int(fr[r < 0.1].max())} != {0} and np.bincount(fr).tolist() == [10] * 5
    assert not np.array_equal(fold, _folds(y, "classification", 5, seed=4))  # the seed reorders


def test_choose_measures_each_candidate_and_keeps_the_best(tiny_folder):
    cfg = cfg_with(backbones=TWO, quiet=True, **{k: v for k, v in FAST.items() if k != "quiet"})
    d = open_data(tiny_folder, cfg)
    chosen, table, ff = choose_candidate(d, cfg)
    assert sorted(c.backbone for c in table) == ["efficientnet_lite0", "efficientnet_lite1"]
    assert table[0].forward_seconds <= table[1].forward_seconds  # cheapest first (timed: lite0 is not always)
    assert all(c.score is not None and c.folds == 5 and c.skipped is None for c in table)
    assert chosen.chosen and chosen.score == max(c.score for c in table)
    assert sum(c.chosen for c in table) == 1
    assert ff.backbone == chosen.backbone and ff.image_size == 32 and len(ff.train) == len(d.splits["train"])


def test_the_budget_leaves_out_the_dearer_candidates(tiny_folder):
    cfg = cfg_with(backbones=TWO, quiet=True, **{k: v for k, v in FAST.items() if k != "quiet"})
    chosen, table, _ = choose_candidate(open_data(tiny_folder, cfg), cfg, budget_seconds=1e-6)
    # the cheapest is always measured (there must be a choice); the other would overrun a third of the budget
    assert table[0].score is not None and chosen is table[0]
    assert table[1].score is None and "--budget" in table[1].skipped


def test_training_estimate_counts_only_loop_epochs():
    c = Candidate("b", 64, forward_seconds=0.01)
    cfg = cfg_with(epochs=10, head_epochs=3)
    assert estimate_training(c, parse_strategy("linear"), cfg, 100, 50) == 0
    # finetune: 10 epochs x (100 train x 3.7 + 50 val) x 0.01 s = 42 s; two-phase fine-tunes 7 of its 10
    assert estimate_training(c, parse_strategy("finetune"), cfg, 100, 50) == pytest.approx(42.0)
    assert estimate_training(c, parse_strategy("two-phase"), cfg, 100, 50) == pytest.approx(29.4)


def test_auto_trains_what_it_chose_and_a_tight_budget_keeps_it_frozen(tmp_path):
    data = write_folder(tmp_path / "colours", per_class=8)
    # 40 px noise squares are "different" and tiny: the chart fine-tunes them (test_selection); a budget of
    # 0.1 s cannot hold 10 fine-tune epochs, so `auto` falls back to the frozen head
    run = transferkit.fit(data, backbones=TWO, budget=0.1 / 60, out=str(tmp_path / "runs"), **FAST)
    config = json.loads((run.path / "config.json").read_text())
    advice = config["advice"]
    assert run.strategy == "linear" and "linear instead" in run.strategy_reason and "--budget" in run.strategy_reason
    assert config["config"]["model"]["backbone"] == advice["backbone"] == run.config.model.backbone
    # both measured; listed cheapest first by a timing, so in either order
    assert sorted(c["backbone"] for c in advice["candidates"]) == TWO.split(",")
    assert "backbones" in (run.path / "report.html").read_text()  # what was measured is in the report
    # with room to train, the same data is fine-tuned on the chosen backbone
    run = transferkit.fit(data, backbones=TWO, epochs=1, out=str(tmp_path / "runs"), **FAST)
    assert run.strategy == "finetune"
    assert json.loads((run.path / "report.json").read_text())["backbone"] == run.config.model.backbone


def test_a_resumed_auto_run_keeps_what_it_measured(tmp_path, monkeypatch):
    from transferkit import api
    from transferkit.rundir import RunDir

    data = write_folder(tmp_path / "colours", per_class=8)
    run = transferkit.fit(data, backbones=TWO, epochs=1, out=str(tmp_path / "runs"), **FAST)

    def remeasure(*a, **k):
        raise AssertionError("a resumed run measured again")

    monkeypatch.setattr("transferkit.selection.advise.advise_opened", remeasure)
    strategy, reason, _, advice = api._resolve_strategy(None, run.config, None, RunDir(run.path))
    assert strategy.label == run.strategy and reason == run.strategy_reason
    assert advice["backbone"] == run.config.model.backbone
