"""`auto` measures what fine-tuning gains (selection/gain.py) instead of reading it off the chart, within the budget,
from counted work only."""

from __future__ import annotations

import dataclasses
import time
from types import SimpleNamespace

import pytest

from transferkit.config import RunConfig
from transferkit.selection import gain as g
from transferkit.selection.choose import Candidate, with_candidate
from transferkit.selection.frozen import open_data


def _table():
    small, big = Candidate("efficientnet_lite0", 64, 0.06), Candidate("efficientnet_lite0", 128, 0.25)
    big.chosen = True
    return big, [small, big]


def _data(tiny_folder):
    cfg = RunConfig()
    return open_data(tiny_folder, cfg), cfg


def test_a_near_perfect_probe_is_not_measured():
    assert g.near_perfect(0.99, 0.33)  # 1% error vs 67% of guessing: nothing left to gain
    assert not g.near_perfect(0.88, 0.10)  # EuroSAT's frozen probe: 13% of the errors of guessing
    assert g.near_perfect(None, None)  # nothing to compare with: the chart decides


def test_rungs_go_from_the_advised_fine_tune_to_cheaper_ones():
    chosen, table = _table()
    rungs = g.finetune_rungs(chosen, table, RunConfig(), n_train=700, n_val=150)
    assert [r.label for r in rungs] == ["advised", "fewer epochs", "smaller input"]
    assert [r.image_size for r in rungs] == [128, 128, 64]
    assert rungs[0].epochs == 10 and rungs[1].epochs == 5
    totals = [r.total for r in rungs]
    assert totals == sorted(totals, reverse=True) and totals[-1] > 0
    # within --epochs, two at least (a head epoch and a fine-tune one): --epochs 1 holds no two-phase
    few = dataclasses.replace(RunConfig().train, epochs=3)
    rungs = g.finetune_rungs(chosen, table, dataclasses.replace(RunConfig(), train=few), n_train=700, n_val=150)
    assert [r.epochs for r in rungs] == [3, 2, 2]
    one = dataclasses.replace(RunConfig(), train=dataclasses.replace(few, epochs=1))
    assert g.finetune_rungs(chosen, table, one, n_train=700, n_val=150) == []
    d = SimpleNamespace(splits={"train": [None] * 700, "val": [None] * 150})
    name, rung, _, reason, _ = g.decide_by_gain(d, one, chosen, table, 0.8, 0.33, left=1e9)
    assert (name, rung) == ("linear", None) and "--epochs 1 holds no two-phase" in reason


def test_a_budget_that_holds_no_fine_tune_falls_back_to_linear_and_says_what_each_costs(tiny_folder, monkeypatch):
    d, cfg = _data(tiny_folder)
    chosen, table = _table()
    monkeypatch.setattr(g, "measure_gain", lambda *a, **k: pytest.fail("nothing fits: nothing may be measured"))
    name, rung, epochs, reason, gained = g.decide_by_gain(d, cfg, chosen, table, 0.8, 0.33, left=1e-6)
    assert (name, rung, gained) == ("linear", None, None)
    assert "advised (128px, 10 epochs)" in reason and "smaller input (64px, 5 epochs)" in reason


@pytest.mark.parametrize("frozen, tuned, expected", [(0.80, 0.86, "two-phase"), (0.80, 0.805, "linear")])
def test_the_measured_gain_decides(tiny_folder, monkeypatch, frozen, tuned, expected):
    d, cfg = _data(tiny_folder)
    chosen, table = _table()
    monkeypatch.setattr(g, "measure_gain", lambda d, cfg, rung, rep=None, **k: g.GainResult(rung, frozen, tuned, 25, 5))
    name, rung, epochs, reason, gained = g.decide_by_gain(d, cfg, chosen, table, 0.8, 0.33, left=1e9)
    assert name == expected and gained.gain == pytest.approx(tuned - frozen)
    assert "frozen head 80.0%" in reason


def test_only_the_cheaper_rung_fits_so_it_is_measured_and_its_epochs_reach_the_run(tiny_folder, monkeypatch):
    d, cfg = _data(tiny_folder)
    chosen, table = _table()
    rungs = g.finetune_rungs(chosen, table, cfg, len(d.splits["train"]), len(d.splits["val"]))
    left = (rungs[1].total + rungs[2].total) / 2  # the advised and fewer-epochs rungs are over it
    seen = []
    monkeypatch.setattr(
        g, "measure_gain", lambda d, cfg, rung, rep=None, **k: seen.append(rung) or g.GainResult(rung, 0.7, 0.9, 25, 5)
    )
    name, rung, epochs, reason, _ = g.decide_by_gain(d, cfg, chosen, table, 0.8, 0.33, left=left)
    assert [r.label for r in seen] == ["smaller input"] and (name, rung.image_size, epochs) == ("two-phase", 64, 5)
    assert "over the budget: advised" in reason
    from types import SimpleNamespace

    run_cfg = with_candidate(cfg, SimpleNamespace(backbone="efficientnet_lite0", image_size=64, epochs=epochs))
    assert run_cfg.train.epochs == 5 and run_cfg.data.image_size == 64


def test_a_busy_clock_does_not_change_the_decision(tiny_folder, monkeypatch):
    d, cfg = _data(tiny_folder)
    chosen, table = _table()
    fake = lambda d, cfg, rung, rep=None, **k: g.GainResult(rung, 0.7, 0.9, 25, 5)  # noqa: E731
    monkeypatch.setattr(g, "measure_gain", fake)
    quiet = g.decide_by_gain(d, cfg, chosen, table, 0.8, 0.33, left=100.0)[:3]
    ticks = iter(range(0, 10**9, 10**6))
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(ticks)))  # every read: 11 days later
    monkeypatch.setattr(time, "time", lambda: float(next(ticks)))
    assert g.decide_by_gain(d, cfg, chosen, table, 0.8, 0.33, left=100.0)[:3] == quiet


def test_measure_gain_runs_a_short_two_phase_on_the_same_val_rows(tiny_folder):
    from transferkit.selection.frozen import frozen_features

    d, cfg = _data(tiny_folder)
    cfg = with_candidate(cfg, SimpleNamespace(backbone="efficientnet_lite0", image_size=32, features="stages"))
    ff = frozen_features(d, "efficientnet_lite0", cfg)
    rung = g.Rung(32, 4, 0.0, 0.0, "advised", "stages")
    result = g.measure_gain(d, cfg, rung, linear=(ff, cfg))
    assert 0 <= result.frozen <= 1 and 0 <= result.finetuned <= 1
    assert result.n_val == len(d.splits["val"])
    # the alternative, the linear head on the chosen features, is scored on those same val rows; the fine-tune
    # epochs are scored against the better of it and the run's own head epoch
    assert result.linear is not None
    assert result.gain == pytest.approx(result.finetuned - max(result.frozen, result.linear))
    n_val = len(d.splits["val"])
    assert round(result.linear * n_val) == pytest.approx(result.linear * n_val, abs=1e-6)  # a count of those rows


def _short_run(monkeypatch, head: float, tuned: tuple, starts: list) -> None:
    """The short two-phase replaced by its history: one head epoch scoring `head`, fine-tune epochs `tuned`; the
    head's first weights are kept in `starts`."""
    from transferkit.core import train as core_train

    def train(model, *a, **k):
        starts.append({k: v.clone() for k, v in model.head.state_dict().items()})
        rows = [{"phase": "head", "val_acc": head, "val_loss": 1 - head}]
        rows += [{"phase": "finetune", "val_acc": v, "val_loss": 1 - v} for v in tuned]
        return SimpleNamespace(history=rows)

    monkeypatch.setattr(core_train, "train", train)


def _held(d):
    """Chosen features (FrozenFeatures' ids only) that hold every image of train and val."""
    return SimpleNamespace(ids={s: [d.src.identity(x.key) for x in d.splits[s]] for s in ("train", "val")})


@pytest.mark.parametrize(
    "head, tuned, linear, expected",
    [
        (0.90, (0.60, 0.70, 0.80), 0.85, "linear"),  # houses: no fine-tune epoch beats the head epoch
        (0.90, (0.88, 0.905, 0.89), 0.85, "linear"),  # +0.5 points on a head epoch that beat linear by 5
        (0.80, (0.84, 0.88, 0.90), 0.85, "two-phase"),  # the fine-tune epochs beat both heads by 5 points
    ],
)
def test_the_gain_is_what_the_fine_tune_epochs_add(tiny_folder, monkeypatch, head, tuned, linear, expected):
    """houses (42 images): the head epoch scored R² 0.398, linear 0.241, every fine-tune epoch under the head; the
    best over all epochs, the head's, made that +0.156 and picked two-phase, whose run then ended on its head epoch
    (the model `linear` trains) at 10x the cost."""
    d, cfg = _data(tiny_folder)
    chosen, table = _table()
    _short_run(monkeypatch, head, tuned, [])
    monkeypatch.setattr(g, "linear_score", lambda *a, **k: linear)
    name, _, _, reason, gained = g.decide_by_gain(d, cfg, chosen, table, 0.8, 0.33, left=1e9, linear=(_held(d), cfg))
    assert name == expected, reason
    # 0.80 - max(0.90, 0.85) = -0.10; 0.905 - 0.90 = +0.005, under 0.015; 0.90 - max(0.80, 0.85) = +0.05
    assert gained.finetuned == max(tuned) and gained.gain == pytest.approx(max(tuned) - max(head, linear))
    assert "over the better of the two" in reason


def test_the_short_run_starts_from_the_seed_whatever_drew_before(tiny_folder, monkeypatch):
    """houses: two `advise` runs with one seed measured the head epoch at 0.273 and 0.398: the head's first weights
    came from wherever the probes and the store's misses had left torch's RNG."""
    import torch

    d, cfg = _data(tiny_folder)
    chosen, table = _table()
    starts: list = []
    _short_run(monkeypatch, 0.8, (0.9,), starts)
    rung = g.finetune_rungs(chosen, table, cfg, len(d.splits["train"]), len(d.splits["val"]))[-1]
    g.measure_gain(d, cfg, rung)
    torch.rand(1000)  # what a store miss's extraction (a backbone built before its weights load) draws
    g.measure_gain(d, cfg, rung)
    assert starts[0].keys() == starts[1].keys()
    assert all(torch.equal(starts[0][k], starts[1][k]) for k in starts[0])


def test_the_fine_tune_is_scored_against_the_linear_head_on_the_chosen_features(tiny_folder, monkeypatch):
    """EuroSAT: the short fine-tune beat its own frozen last layer by 4 points, yet scored under `linear` on features
    from every depth; that alternative decides, not the frozen last layer."""
    d, cfg = _data(tiny_folder)
    chosen, table = _table()
    fake = lambda d, cfg, rung, rep=None, **k: g.GainResult(rung, 0.80, 0.86, 25, 5, linear=0.90)  # noqa: E731
    monkeypatch.setattr(g, "measure_gain", fake)
    name, _, _, reason, gained = g.decide_by_gain(d, cfg, chosen, table, 0.8, 0.33, left=1e9)
    assert name == "linear" and gained.gain == pytest.approx(-0.04)
    assert "linear on the chosen features 90.0%" in reason and "-4.0 points" in reason


def test_linear_score_fits_the_chosen_features_on_the_given_rows_only():
    import numpy as np

    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    x = rng.normal(size=(40, 3)) + y[:, None] * 4.0  # separable
    x[30:35] = rng.normal(size=(5, 3)) + (1 - y[30:35, None]) * 4.0  # five val rows that look like the other class
    ids = [f"i{k}" for k in range(40)]
    ff = SimpleNamespace(
        train=x[:30], train_labels=y[:30], val=x[30:], val_labels=y[30:], ids={"train": ids[:30], "val": ids[30:]}
    )
    pick = lambda keys: [SimpleNamespace(key=k) for k in keys]  # noqa: E731
    cfg = RunConfig()
    clean = g.linear_score(ff, cfg, pick(ids[:30]), pick(ids[35:]), identity=lambda k: k)
    spoilt = g.linear_score(ff, cfg, pick(ids[:30]), pick(ids[30:]), identity=lambda k: k)
    # only the rows asked for count: the five look-alikes take the score from 1.0 to at most 0.6 (the L2 is picked on
    # those same rows, so one of them may come out right)
    assert clean == 1.0 and spoilt <= 0.6 + 1e-6
    assert g.linear_score(ff, cfg, pick(["nowhere"]), pick(ids[30:]), identity=lambda k: k) is None


def test_a_good_probe_is_measured_only_when_that_is_cheap(tiny_folder, monkeypatch):
    assert g.good_probe(0.95, 0.5) and not g.good_probe(0.87, 0.1)  # ants/bees' probe is good, EuroSAT's is not
    d, cfg = _data(tiny_folder)
    chosen, table = _table()
    rungs = g.finetune_rungs(chosen, table, cfg, len(d.splits["train"]), len(d.splits["val"]))
    seen = []
    monkeypatch.setattr(
        g, "measure_gain", lambda d, cfg, rung, rep=None, **k: seen.append(rung) or g.GainResult(rung, 0.8, 0.9, 25, 5)
    )
    # measuring the cheapest rung costs more than half the linear run: nothing measured, linear, and why
    linear_run = rungs[-1].measure_seconds / g.MEASURE_SHARE * 0.9
    name, rung, _, reason, gained = g.decide_by_gain(d, cfg, chosen, table, 0.95, 0.5, 1e9, linear_run=linear_run)
    assert (name, rung, gained, seen) == ("linear", None, None, []) and "not measured" in reason
    # half the linear run holds the smallest rung only: that one is measured
    linear_run = rungs[-1].measure_seconds / g.MEASURE_SHARE * 1.01
    name, rung, *_ = g.decide_by_gain(d, cfg, chosen, table, 0.95, 0.5, 1e9, linear_run=linear_run)
    assert [r.label for r in seen] == ["smaller input"] and name == "two-phase"


def test_small_data_with_a_near_perfect_probe_stays_linear_whatever_the_chart_says(tiny_folder, monkeypatch):
    """The digits: small, far from ImageNet, tiny images: the chart says fine-tune all, yet frozen features from
    every depth leave 1% of guessing's errors; the fine-tune scored 1.4 points under `linear` (5 splits)."""
    import numpy as np

    from transferkit.selection import advise as a
    from transferkit.selection import choose, frozen

    d, cfg = _data(tiny_folder)
    chosen, table = _table()
    chosen.score = 0.995
    n = len(d.classes)
    feats = SimpleNamespace(
        train=np.eye(6, 4), val=np.eye(3 * n, 4), train_labels=np.arange(6) % n, val_labels=np.arange(3 * n) % n
    )
    monkeypatch.setattr(choose, "choose_candidate", lambda d, cfg, rep=None: (chosen, table, feats))
    monkeypatch.setattr(frozen, "domain_shift", lambda d, name, cfg: (0.63, SimpleNamespace(stages=[0] * 7), 64))
    monkeypatch.setattr(g, "measure_gain", lambda *a, **k: pytest.fail("a near-perfect probe is not measured"))
    advice = a.advise_opened(d, cfg)
    assert advice.size == "small" and not advice.similar and advice.strategy == "linear", advice.reason
    assert "fine-tune all" in advice.reason and "nothing for fine-tuning to win" in advice.reason
    assert advice.image_size == chosen.image_size and advice.backbone_lr_mult is None
    # a good probe the chart sends to a fine-tune is measured only as cheaply as half the linear run (gain.py), and
    # against the linear head on the chosen features
    seen = {}
    chosen.score = 0.93  # 7% errors vs guessing's 67%: good, not near-perfect

    def decide(*args, linear_run=None, linear=None, **k):
        seen.update(linear_run=linear_run, linear=linear)
        return "linear", None, None, "measured", None

    monkeypatch.setattr(g, "decide_by_gain", decide)
    assert a.advise_opened(d, cfg).strategy == "linear"
    assert seen["linear_run"] > 0 and seen["linear"][0] is feats
    assert seen["linear"][1].model.backbone == chosen.backbone and seen["linear"][1].data.image_size == 128
    # the same probe on medium data (the chart's two-phase or finetune, where fine-tuning gains most): no cap
    monkeypatch.setattr(a, "SMALL", 1)
    assert a.advise_opened(d, cfg).size == "medium" and seen["linear_run"] is None
    monkeypatch.undo()
    monkeypatch.setattr(choose, "choose_candidate", lambda d, cfg, rep=None: (chosen, table, feats))
    monkeypatch.setattr(frozen, "domain_shift", lambda d, name, cfg: (0.63, SimpleNamespace(stages=[0] * 7), 64))
    # a weaker probe on the same data is measured (gain.py), not sent to linear by this rule
    chosen.score = 0.80
    monkeypatch.setattr(g, "measure_gain", lambda d, cfg, rung, rep=None, **k: g.GainResult(rung, 0.8, 0.9, 25, 5))
    assert a.advise_opened(d, cfg).strategy == "two-phase"


def test_scores_are_shown_as_their_task_gives_them(tiny_folder, monkeypatch):
    """Accuracy as a share, R² as a number: a regression's probe and gain are not percentages of a class."""
    import dataclasses
    import io

    from rich.console import Console

    from transferkit.selection.advise import Advice, print_advice

    d, cfg = _data(tiny_folder)
    chosen, table = _table()
    monkeypatch.setattr(g, "measure_gain", lambda *a, **k: g.GainResult(a[2], 0.48, 0.54, 25, 5, linear=0.48))
    reg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, task="regression"))
    reason = g.decide_by_gain(d, reg, chosen, table, 0.5, 0.0, left=1e9)[3]
    assert "linear on the chosen features 0.480" in reason and "(+0.060 over" in reason and "%" not in reason
    reason = g.decide_by_gain(d, cfg, chosen, table, 0.8, 0.33, left=1e9)[3]
    assert "linear on the chosen features 48.0%" in reason and "(+6.0 points over" in reason

    def shown(**kw) -> str:
        out = io.StringIO()
        base = dict(strategy="two-phase", backbone_lr_mult=None, reason="r", size="medium", similar=True,
                    backbone="efficientnet_lite0", n_train=375, median_side=573.0, image_size=224, shift=0.1,
                    seconds=1.0, gain={"frozen": 0.48, "finetuned": 0.54, "linear": 0.48, "gain": 0.06,
                                       "n_train": 375, "n_val": 80})  # fmt: skip
        print_advice(Advice(**{**base, **kw}), Console(file=out, width=200))
        return out.getvalue()

    text = shown(n_classes=1, per_class=375, smallest_class=375, probe_acc=0.525, chance_acc=0.0, task="regression")
    assert "R² 0.525 (knowing nothing: 0.000)" in text and "0.480 linear -> 0.540" in text and "(+0.060" in text
    assert "1 classes" not in text and "%" not in text.split("frozen-feature probe")[1].split("\n")[0]
    from transferkit.selection.advise import decide

    assert "375 training images (300-1000: medium)" in decide(375, 0.1, 0.5, 0.0, 573, 7, probe_name="R²")[4]
    assert "122 training images per class" in decide(122, 0.1, 0.97, 0.54, 300, 7)[4]
    from transferkit.selection.advise import chart_cell

    name, _, size, similar, reason = decide(50, 0.5, None, None, 100, 7)  # small, different: freeze:K, a colon in it
    assert name == "freeze:2" and reason.startswith(chart_cell(size, similar, name) + ": ")
    assert chart_cell(size, similar, name) == "small data, different -> freeze:2"  # the one-line decision's words
    text = shown(n_classes=2, per_class=122, smallest_class=110, probe_acc=0.97, chance_acc=0.54)
    assert "accuracy 97.0% (commonest class: 54.0%)" in text and "(+6.0 points" in text
