"""`auto`'s measured choices (selection/choose.py): candidates, the cross-validated probe, the budget, and the cost
estimates it keeps to (selection/cost.py), which no machine load can move."""

from __future__ import annotations

import json
import time

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
    assert input_sizes(cfg, 374, 224) == [224, 288]  # photos: the backbone's own size and 1.25x it (FixRes)
    assert input_sizes(cfg, 374, 260, 0.89) == [260, 320]  # lite2: 325 -> 320, resized to 359 px of the 374
    assert input_sizes(cfg, 300, 224) == [224, 256]  # 288 would need 329 px: as large as the photos hold
    assert input_sizes(cfg, 250, 224) == [224]  # photos barely the input's size: nothing larger to read
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
    table, deeper = [c for c in table if c.features == "last"], [c for c in table if c.features != "last"]
    # the cheapest (backbone, size) is measured from every depth too (test_depth.py), whichever last layer won
    assert [c.features for c in deeper] == ["stages"] and deeper[0].backbone == min(
        table, key=lambda c: c.gflops
    ).backbone == "efficientnet_lite0"
    # least counted work first: lite0 (0.016 GFLOP at 32 px) before lite1 (0.020), on any machine under any load
    assert [c.backbone for c in table] == ["efficientnet_lite0", "efficientnet_lite1"]
    assert 0 < table[0].gflops < table[1].gflops and 0 < table[0].estimate < table[1].estimate
    assert all(c.score is not None and c.folds == 5 and c.skipped is None for c in table)
    assert chosen.chosen and chosen.score == max(c.score for c in table + deeper)
    assert sum(c.chosen for c in table + deeper) == 1
    assert ff.backbone == chosen.backbone and ff.image_size == 32 and len(ff.train) == len(d.splits["train"])


def test_the_budget_leaves_out_the_dearer_candidates(tiny_folder):
    cfg = cfg_with(backbones=TWO, quiet=True, **{k: v for k, v in FAST.items() if k != "quiet"})
    chosen, table, _ = choose_candidate(open_data(tiny_folder, cfg), cfg, budget_seconds=1e-6)
    # the cheapest is always measured (there must be a choice); the other would overrun a third of the budget
    assert table[0].score is not None and chosen is table[0]
    assert table[1].score is None and "--budget" in table[1].skipped


def test_training_estimate_counts_only_loop_epochs():
    c = Candidate("b", 64, gflops=0.675)  # 0.01 s per image at the CPU's nominal 67.5 GFLOP/s
    cfg = cfg_with(epochs=10, head_epochs=3, device="cpu")
    assert estimate_training(c, parse_strategy("linear"), cfg, 100, 50) == 0
    # finetune: 10 epochs x (100 train x 3.7 + 50 val) x 0.01 s = 42 s; two-phase fine-tunes 7 of its 10
    assert estimate_training(c, parse_strategy("finetune"), cfg, 100, 50) == pytest.approx(42.0)
    assert estimate_training(c, parse_strategy("two-phase"), cfg, 100, 50) == pytest.approx(29.4)


def test_auto_trains_what_it_chose_and_a_tight_budget_keeps_it_frozen(tmp_path, monkeypatch):
    from transferkit.selection import advise

    data = write_folder(tmp_path / "colours", per_class=8)
    # 8 images a class count as medium here: small data with a near-perfect probe (these squares' is) stays linear
    # whatever the budget, and this test is about the chart's fine-tune meeting the budget
    monkeypatch.setattr(advise, "SMALL", 4)
    # 40 px noise squares are "different" and tiny: the chart fine-tunes them (test_selection); a budget of
    # 0.1 s cannot hold 10 fine-tune epochs (estimated ~0.2 s: 10 x ~70 image passes x 0.016 GFLOP / 67.5 GFLOP/s),
    # so `auto` falls back to the frozen head
    from transferkit.progress import QuietReporter

    class Said(QuietReporter):
        lines: list[str] = []

        def message(self, text: str) -> None:
            self.lines.append(text)

    said = Said()
    run = transferkit.fit(data, backbones=TWO, budget=0.1 / 60, out=str(tmp_path / "runs"), reporter=said, **FAST)
    config = json.loads((run.path / "config.json").read_text())
    advice = config["advice"]
    assert run.strategy == "linear" and "linear instead" in run.strategy_reason and "--budget" in run.strategy_reason
    # the terminal says what auto chose and why, before training: the decision, not the chart's whole account
    chose = [line for line in said.lines if line.startswith("auto: linear on ")]
    assert len(chose) == 1 and advice["backbone"] in chose[0] and "--budget" in chose[0]
    assert config["config"]["model"]["backbone"] == advice["backbone"] == run.config.model.backbone
    # both measured (their estimates, ~0.01 s, fit a third of the budget), least work first
    assert [c["backbone"] for c in advice["candidates"] if c["features"] == "last"] == TWO.split(",")
    assert config["config"]["model"]["features"] == advice["features"]  # the depth it chose is the one trained
    assert all(c["skipped"] is None for c in advice["candidates"])
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


def test_the_estimate_grows_with_image_size_image_count_and_the_network():
    from transferkit.backbones import create_backbone
    from transferkit.selection.cost import estimate_seconds, forward_gflops

    lite0, _ = create_backbone("efficientnet_lite0", pretrained=False)
    lite2, _ = create_backbone("efficientnet_lite2", pretrained=False)
    work = [forward_gflops(lite0, size) for size in (32, 64, 128, 224)]
    assert work == sorted(set(work))  # strictly more work at every larger size
    assert forward_gflops(lite2, 224) > work[-1] and forward_gflops(lite2, 64) > work[1]
    # the arithmetic behind the CPU's nominal throughput: lite0 at 224 px, 0.768 GFLOP at 87.9 img/s
    assert work[-1] == pytest.approx(0.768, rel=0.01)
    assert estimate_seconds(work[-1], "cpu") == pytest.approx(1 / 87.9, rel=0.01)
    assert estimate_seconds(work[-1], "cuda") < estimate_seconds(work[-1], "cpu")  # a GPU is reckoned faster
    c, finetune, cfg = Candidate("efficientnet_lite0", 224, work[-1]), parse_strategy("finetune"), cfg_with()
    assert 0 < estimate_training(c, finetune, cfg, 100, 50) < estimate_training(c, finetune, cfg, 200, 50)
    assert estimate_training(c, finetune, cfg, 100, 50) < estimate_training(c, finetune, cfg, 100, 100)


def test_counting_work_leaves_the_network_as_it_was():
    from transferkit.backbones import create_backbone
    from transferkit.selection.cost import forward_gflops

    net, _ = create_backbone("efficientnet_lite0", pretrained=False)
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert forward_gflops(net, 48) > 0
    assert net.training and all(np.array_equal(before[k], v) for k, v in net.state_dict().items())  # BN stats too


def test_a_busy_machine_makes_the_same_choice(tmp_path, monkeypatch):
    """Same data, same command: the same strategy, backbone and input size whether the cores are free or 50x
    slower (every interval the clock measures made 50x longer: what a loaded 2-core machine looks like, without
    loading the cores the other tests share)."""
    from transferkit.selection import advise
    from transferkit.selection.advise import advise_opened

    data = write_folder(tmp_path / "colours", per_class=8)
    monkeypatch.setattr(advise, "SMALL", 4)  # medium: the chart's fine-tune, not small data's near-perfect linear
    # 1 s: the estimates (~0.01 s to measure each candidate, ~0.2 s to fine-tune) fit with room to spare; clocked
    # they would not even quiet (~1 s to measure a candidate), let alone at 50x
    cfg = cfg_with(backbones=TWO, budget=1 / 60, device="cpu", **FAST)

    def choice():
        a = advise_opened(open_data(data, cfg), cfg)
        measured = [(c["backbone"], c["image_size"], c["skipped"] is None) for c in a.candidates]
        return (a.strategy, a.backbone, a.image_size, measured), a.seconds

    choice()  # imports and first calls, which only the first run pays
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "cache-2"))  # each run extracts: nothing from the store
    quiet, quiet_seconds = choice()
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "cache-3"))
    real = time.perf_counter
    monkeypatch.setattr(time, "perf_counter", lambda: real() * 50)
    busy, busy_seconds = choice()
    assert busy_seconds > 10 * quiet_seconds  # the slow clock was read ...
    assert busy == quiet  # ... and decided nothing
    assert quiet[0] == "finetune" and all(m for *_, m in quiet[3]), (
        quiet
    )  # the budget held both candidates and a fine-tune


def test_the_standardised_probe_hears_a_small_scaled_block_the_plain_ridge_drowns():
    """`stages` features: blocks of very different scales. The class lives in a block of tiny values beside a loud
    block of noise: the plain ridge's one L2 shrinks the tiny block's weights away, the standardised probe does not."""
    from types import SimpleNamespace

    from transferkit.selection.choose import cv_probe

    rng = np.random.default_rng(0)
    n = 120
    y = np.arange(n) % 2
    signal = (y[:, None] * 2.0 - 1.0 + rng.normal(0, 0.7, (n, 4))) * 1e-4  # separable, but 1e-4 in scale
    noise = rng.normal(0, 10.0, (n, 64))
    x = np.concatenate([signal, noise], 1).astype(np.float32)
    ff = SimpleNamespace(train=x[:80], train_labels=y[:80], val=x[80:], val_labels=y[80:])
    plain = cv_probe(ff, "classification", seed=0)[0]
    scaled = cv_probe(ff, "classification", seed=0, standardise=True)[0]
    assert scaled > 0.85 and scaled > plain + 0.2, (plain, scaled)


def test_the_stages_variant_is_the_cheapest_backbones_whichever_last_layer_wins(tiny_folder, monkeypatch):
    from transferkit.selection import choose

    def probe(ff, task, seed, standardise=False):  # lite1's last layer wins; lite0's stages beat it
        last = ff.train.shape[1] == 1280
        return (
            {(True, "efficientnet_lite0"): 0.80, (True, "efficientnet_lite1"): 0.90}.get((last, ff.backbone), 0.95),
            0.01,
            5,
        )

    monkeypatch.setattr(choose, "cv_probe", probe)
    cfg = cfg_with(backbones=TWO, quiet=True, **{k: v for k, v in FAST.items() if k != "quiet"})
    chosen, table, ff = choose_candidate(open_data(tiny_folder, cfg), cfg)
    deeper = [c for c in table if c.features == "stages"]
    assert [c.backbone for c in deeper] == ["efficientnet_lite0"]  # not lite1, the best last layer
    assert chosen is deeper[0] and ff.backbone == "efficientnet_lite0" and ff.train.shape[1] != 1280


def test_the_stages_variant_at_the_candidates_size_comes_from_its_forward_pass(tiny_folder, monkeypatch, tmp_path):
    """lite0's last layer and its stages at the same input size (32 px here; photos at the backbone's size, the
    digits): one pass over the images stores both, and the stages' rows are what the stages net computes alone."""
    import dataclasses

    from transferkit.engine import features
    from transferkit.selection import choose
    from transferkit.selection.frozen import frozen_features

    nets, seen, real, probe = [], {}, features.extract, choose.cv_probe
    monkeypatch.setattr(features, "extract", lambda net, *a, **k: nets.append(type(net).__name__) or real(net, *a, **k))
    monkeypatch.setattr(
        choose, "cv_probe", lambda ff, *a, **k: seen.setdefault(ff.train.shape[1], ff) and probe(ff, *a, **k)
    )
    cfg = cfg_with(backbones="efficientnet_lite0", quiet=True, image_size=32)
    d = open_data(tiny_folder, cfg)
    chosen, table, _ = choose_candidate(d, cfg)
    assert [(c.features, c.image_size) for c in table] == [("last", 32), ("stages", 32)]
    # both nets are left in eval mode: the shift check runs on them next, and a BatchNorm in training mode would
    # learn the data's statistics there and measure no shift
    assert len(d.nets) == 2 and not any(net.training for net, *_ in d.nets.values())
    assert all(c.score is not None for c in table)
    assert nets == ["WithLast", "WithLast"]  # train and val, once: the stages were read from the store
    nets.clear()
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "another-cache"))
    cfg_deep = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, features="stages"))
    alone = frozen_features(open_data(tiny_folder, cfg_deep), "efficientnet_lite0", cfg_deep)
    assert nets == ["EfficientNet", "EfficientNet"]  # extracted again, by the stages net on its own
    shared = seen[alone.train.shape[1]]
    assert shared.train.shape == alone.train.shape and np.allclose(shared.train, alone.train, rtol=1e-3, atol=1e-3)
    last = frozen_features(open_data(tiny_folder, cfg), "efficientnet_lite0", cfg)  # and the last layer's alone
    assert np.allclose(seen[1280].train, last.train, rtol=1e-3, atol=1e-3) and len(nets) == 4
