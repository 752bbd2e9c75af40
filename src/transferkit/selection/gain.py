"""What fine-tuning gains over frozen features, measured: a short `two-phase` on a subsample, before `auto` decides.

    rungs = finetune_rungs(chosen, table, cfg, n_train, n_val)     # advised, fewer epochs, smaller input: costs
    gain = measure_gain(d, cfg, rung, reporter)                      # GainResult: frozen 88.1% -> fine-tuned 93.0%
    gain.gain, gain.frozen, gain.finetuned

The chart (advise.py) says what usually works for data of this size and distance from ImageNet; this measures it on
the data. One short `two-phase` (1 head epoch on cached features, then MEASURE_EPOCHS of everything) on at most
MEASURE_TRAIN training images is scored on the val split: its head phase is the frozen linear head, its end the
fine-tuned model, on the same images and the same val rows, so the difference is paired. A gain of MIN_GAIN or
more picks `two-phase`; less, `linear`.

Every cost is an estimate from counted work (cost.py, choose.estimate_training), never a clock read mid-run: a
rung is tried only when measuring it and then training it on all the data both fit what the budget leaves. Rungs,
dearest first: the advised fine-tune (the chosen input size, --epochs), the same with half the epochs, then the
smallest input size measured with half the epochs. None fits: `linear`, and the reason prints what each costs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..config import RunConfig
from .cost import duration

MEASURE_TRAIN, MEASURE_VAL = 400, 300  # images, at most: a seeded, class-stratified subsample of each
MEASURE_EPOCHS = 3  # fine-tune epochs after 1 head epoch: enough to see which way it goes (EuroSAT: +4 points by 3)
# Points of val score the short fine-tune must gain over its own frozen head: 300 val images measure a difference
# of paired answers to about +-1.5 points; less than that is noise, and linear is 3-10x cheaper.
MIN_GAIN = 0.015
# A probe that leaves at most this share of the errors of guessing is near-perfect: nothing to measure
NEAR_PERFECT = 0.05
# Where the chart names `linear` and the probe is already good (it leaves at most GOOD_PROBE of the errors of
# guessing), measuring a fine-tune is a bet against both, and it may cost at most MEASURE_SHARE of the linear run
# `auto` then most likely ends with (one extraction of every image), so that `auto` stays within about
# 1 + MEASURE_SHARE times its choice. ants/bees at 224px: probe ~95% (10% of guessing's 50% errors), the short
# two-phase ~52 s against a ~16 s linear run: not measured. A weaker probe (EuroSAT's ~87%: 13 / 90 = 14% of
# guessing's errors), and anything the chart sends to a fine-tune, is measured at whatever it costs within the budget.
GOOD_PROBE = 0.12
MEASURE_SHARE = 0.5


@dataclass
class Rung:
    """One fine-tune `auto` may pick: its input size and epochs, what measuring it and training it cost."""

    image_size: int
    epochs: int
    measure_seconds: float  # the short two-phase on the subsample, estimated
    train_seconds: float  # two-phase on all the data at these settings, estimated
    label: str  # "advised", "fewer epochs", "smaller input"

    @property
    def total(self) -> float:
        return self.measure_seconds + self.train_seconds

    def text(self) -> str:
        return (
            f"{self.label} ({self.image_size}px, {self.epochs} epochs): measuring ~{duration(self.measure_seconds)} "
            f"+ training ~{duration(self.train_seconds)}"
        )


@dataclass
class GainResult:
    rung: Rung
    frozen: float  # best val score of the head phase (frozen features) on the subsample
    finetuned: float  # best val score after the fine-tune epochs
    n_train: int
    n_val: int

    @property
    def gain(self) -> float:
        return self.finetuned - self.frozen


def error_share(probe: float | None, chance: float | None) -> float | None:
    """The probe's errors as a share of guessing's (0: perfect, 1: no better than the commonest class); None when
    nothing was measured."""
    if probe is None or chance is None:
        return None
    return (1 - probe) / max(1e-9, 1 - chance)


def near_perfect(probe: float | None, chance: float | None) -> bool:
    share = error_share(probe, chance)
    return share is None or share <= NEAR_PERFECT  # nothing measured to compare with: the chart decides


def good_probe(probe: float | None, chance: float | None) -> bool:
    share = error_share(probe, chance)
    return share is not None and share <= GOOD_PROBE


def finetune_rungs(chosen, table, cfg: RunConfig, n_train: int, n_val: int) -> list[Rung]:
    """The fine-tunes to try, dearest first, each with its estimated cost (see the top)."""
    from ..strategies import parse_strategy
    from .choose import estimate_training

    two_phase = parse_strategy("two-phase")
    sizes = sorted({c.image_size for c in table if c.backbone == chosen.backbone and c.gflops} | {chosen.image_size})
    few = max(2, cfg.train.epochs // 2)
    wanted = [("advised", chosen.image_size, cfg.train.epochs), ("fewer epochs", chosen.image_size, few)]
    if sizes[0] < chosen.image_size:
        wanted.append(("smaller input", sizes[0], few))
    rungs = []
    for label, size, epochs in wanted:
        c = next((c for c in table if c.backbone == chosen.backbone and c.image_size == size), chosen)
        full = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=epochs))
        short = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=1 + MEASURE_EPOCHS, head_epochs=1))
        m = estimate_training(c, two_phase, short, min(n_train, MEASURE_TRAIN), min(n_val, MEASURE_VAL))
        t = estimate_training(c, two_phase, full, n_train, n_val)
        rungs.append(Rung(size, epochs, m, t, label))
    return rungs


def _sample(samples: list, cap: int, seed: int) -> list:
    """At most `cap` samples, each class in proportion (seeded); all of them when there are fewer."""
    if len(samples) <= cap:
        return list(samples)
    from ..data.base import label_classes

    rng = np.random.default_rng(seed)
    first = np.array([(label_classes(s.label) or (0,))[0] for s in samples])
    keep: list[int] = []
    for c in np.unique(first):
        rows = rng.permutation(np.flatnonzero(first == c))
        keep += rows[: max(1, round(cap * len(rows) / len(samples)))].tolist()
    return [samples[i] for i in sorted(keep)[:cap]]


def measure_gain(d, cfg: RunConfig, rung: Rung, reporter=None) -> GainResult:
    """A short two-phase on a subsample of `d` (frozen.Data) at the rung's input size; scored on val."""
    from ..backbones import create_backbone
    from ..backbones.model import TransferModel
    from ..core.train import train
    from ..tasks import get_task

    seed = cfg.train.seed
    tr, va = _sample(d.splits["train"], MEASURE_TRAIN, seed), _sample(d.splits["val"], MEASURE_VAL, seed)
    imgs = d.src.images()
    index = {k: i for i, k in enumerate(imgs.keys)}
    labels: list = [None] * len(imgs.keys)
    for s in tr + va:
        labels[index[s.key]] = s.label
    split = {"train": [index[s.key] for s in tr], "val": [index[s.key] for s in va]}
    net, bcfg = create_backbone(cfg.model.backbone, pretrained=True, arch=cfg.model.arch)
    model = TransferModel(net, bcfg, num_outputs=len(d.classes), head=cfg.model.head, dropout=cfg.model.dropout)
    short = dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, image_size=rung.image_size),
        train=dataclasses.replace(
            cfg.train, strategy="two-phase", epochs=1 + MEASURE_EPOCHS, head_epochs=1, patience=0, cv=0
        ),
        quiet=True,
    )
    done = train(model, imgs, labels, split, short, classes=list(d.classes), reporter=None)
    task = get_task(cfg.train.task)
    rows = [r for r in done.history if r.get("val_acc") is not None and r.get("val_loss") is not None]
    head = [r for r in rows if r.get("phase") == "head"] or rows[:1]
    frozen = float(task.best(head, by=cfg.train.select)["val_acc"])
    finetuned = float(task.best(rows, by=cfg.train.select)["val_acc"])
    return GainResult(rung, frozen, finetuned, len(tr), len(va))


def decide_by_gain(
    d, cfg: RunConfig, chosen, table, probe, chance, left: float, reporter=None, linear_run: float | None = None
):
    """(strategy, rung or None, epochs or None, reason, GainResult or None): what the measurement says (see the
    top); rung None: nothing measured, the budget holds no fine-tune. `linear_run`: the estimated seconds of the
    linear run, given when the chart names linear (measuring may then cost at most MEASURE_SHARE of it)."""
    n_train, n_val = len(d.splits["train"]), len(d.splits["val"])
    rungs = finetune_rungs(chosen, table, cfg, n_train, n_val)
    fits = [r for r in rungs if not cfg.train.budget or r.total <= left]
    if not fits:
        costs = "; ".join(r.text() for r in rungs)
        return "linear", None, None, f"no fine-tune fits the --budget's {duration(left)} left ({costs}) -> linear", None
    if linear_run is not None:
        cap = MEASURE_SHARE * linear_run
        cheap = [r for r in fits if r.measure_seconds <= cap]
        if not cheap:
            return (
                "linear",
                None,
                None,
                f"the chart names linear, the probe is good, and measuring a fine-tune ({fits[-1].text()}) would cost more than "
                f"{MEASURE_SHARE:.0%} of the linear run (~{duration(linear_run)}): not measured -> linear",
                None,
            )
        fits = cheap
    rung = fits[0]
    if reporter is not None:
        reporter.message(f"Measuring what fine-tuning gains: a short two-phase, {rung.text()}")
    g = measure_gain(d, cfg, rung, reporter)
    skipped = [r.text() for r in rungs[: rungs.index(rung)]]
    over = f"; over the budget: {'; '.join(skipped)}" if skipped else ""
    measured = (
        f"measured on {g.n_train} training / {g.n_val} val images at {rung.image_size}px: frozen head {g.frozen:.1%}, "
        f"after {MEASURE_EPOCHS} fine-tune epochs {g.finetuned:.1%} ({g.gain * 100:+.1f} points)"
    )
    if g.gain >= MIN_GAIN:
        return "two-phase", rung, rung.epochs, f"{measured} -> two-phase, {rung.text()}{over}", g
    return "linear", rung, None, f"{measured}, under {MIN_GAIN * 100:.1f} points -> linear{over}", g
