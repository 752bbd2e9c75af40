"""What fine-tuning gains over frozen features, measured: a short `two-phase` on a subsample, before `auto` decides.

    rungs = finetune_rungs(chosen, table, cfg, n_train, n_val)     # advised, fewer epochs, smaller input: costs
    gain = measure_gain(d, cfg, rung, reporter, linear=(ff, cfg))    # GainResult: linear 93.0% -> fine-tuned 88.1%
    gain.gain, gain.reference, gain.finetuned

The chart (advise.py) says what usually works for data of this size and distance from ImageNet; this measures it on
the data. One short `two-phase` (1 head epoch on cached features, then MEASURE_EPOCHS of everything) on at most
MEASURE_TRAIN training images is scored on the val split, and so is the run `auto` would otherwise end with: a
linear head on the chosen candidate's features (its last layer, or features from every depth), fitted on the same
training images and scored on the same val rows, so the difference is paired. What fine-tuning gains is the best
of the fine-tune epochs against the better frozen head on those rows, the two-phase's own head epoch or that linear
head: MIN_GAIN or more picks `two-phase`; less, `linear`. (Against its own frozen head, the last layer, the short
fine-tune gained +4 points on EuroSAT and picked two-phase on 2 of 5 splits, where `linear` on features from every
depth scored as well for a third of the cost. And a fine-tune whose every epoch scored under its own head epoch
(houses, 42 images: head 0.398, linear 0.241) was a gain of the head's, not the fine-tune's: the run it picked ended
on that head epoch, what `linear` trains in a tenth of the time.) The short run starts from the run's seed, as
`fit` does, so the same data and seed measure the same numbers whatever ran before in the process.

Every cost is an estimate from counted work (cost.py, choose.estimate_training), never a clock read mid-run: a
rung is tried only when measuring it and then training it on all the data both fit what the budget leaves, and,
where the probe is already good (GOOD_PROBE) on small data, only when measuring it costs at most MEASURE_SHARE of
the linear run.
Rungs, dearest first: the advised fine-tune (the chosen input size, --epochs), the same with half the epochs, then
the smallest input size measured with half the epochs. None fits: `linear`, and the reason prints what each costs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..config import RunConfig
from .cost import duration

MEASURE_TRAIN, MEASURE_VAL = 400, 300  # images, at most: a seeded, class-stratified subsample of each
MEASURE_EPOCHS = 3  # fine-tune epochs after 1 head epoch: enough to see which way it goes (EuroSAT: +4 points by 3)
# Points of val score the short fine-tune's epochs must gain over the better frozen head on the same rows (the linear
# head, or the two-phase's own head epoch where that scored higher): 300 val images measure a difference of paired
# answers to about +-1.5 points; less than that is noise, and linear is 3-10x cheaper.
MIN_GAIN = 0.015
# A probe that leaves at most this share of the errors of guessing is near-perfect: nothing to measure
NEAR_PERFECT = 0.05
# Where the probe is already good (it leaves at most GOOD_PROBE of the errors of guessing) and the chart names `linear`
# or the data is small (advise.SMALL), measuring a fine-tune is a bet against the probe: it may cost at most
# MEASURE_SHARE of the linear run `auto` then most likely ends with (one extraction of every image), so that `auto`
# stays within about 1 + MEASURE_SHARE times its choice. ants/bees at 240 px: probe ~97% (6% of guessing's 46%
# errors), the short two-phase ~56 s against a ~7 s linear run: not measured. EuroSAT (small, and different from
# ImageNet: the chart names freeze:2), features from every depth at 192 px: probe ~94% (7% of guessing's 90%), the
# linear run ~8 s: not measured at 192 px (~45 s: it made `auto` cost 3.5x its choice, and picked two-phase on 2 of 5
# splits, which scored what `linear` did) nor at its own 64 px (~4.5 s). A weaker probe, and medium or large data
# (where fine-tuning gains most), are measured at whatever it costs within the budget.
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
    features: str = "last"  # --features of the candidate at this size: what the fine-tune's head reads

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
    frozen: float  # best val score of the head phase (the rung's features, frozen) on the subsample
    finetuned: float  # best val score of the fine-tune epochs alone (the head epoch is what `frozen` scores)
    n_train: int
    n_val: int
    # val score of the linear head on the chosen candidate's features, the same training images and val rows: what
    # `auto` ends with unless the fine-tune beats it; None: not fitted (the frozen head stands in)
    linear: float | None = None

    @property
    def reference(self) -> float:
        """The better frozen head on these rows: fine-tuning gains only what its epochs add to both (head 0.398,
        linear 0.241, fine-tune epochs at best 0.35: -0.048, not +0.109)."""
        return self.frozen if self.linear is None else max(self.frozen, self.linear)

    @property
    def gain(self) -> float:
        return self.finetuned - self.reference


def points(task, difference: float) -> str:
    """A difference of scores as `task` (tasks.Task) shows it: '+5.6 points' of accuracy, '+0.056' of R²."""
    return f"{difference * 100:+.1f} points" if task.proportion else f"{difference:+.3f}"


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
        if not 2 <= epochs <= cfg.train.epochs:  # within --epochs, and an epoch at least for each of the two phases
            continue
        c = (
            chosen
            if size == chosen.image_size
            else next(c for c in table if c.backbone == chosen.backbone and c.image_size == size)
        )
        full = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=epochs))
        short = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=1 + MEASURE_EPOCHS, head_epochs=1))
        m = estimate_training(c, two_phase, short, min(n_train, MEASURE_TRAIN), min(n_val, MEASURE_VAL))
        t = estimate_training(c, two_phase, full, n_train, n_val)
        rungs.append(Rung(size, epochs, m, t, label, c.features))
    return rungs


def linear_score(ff, cfg: RunConfig, train: list, val: list, identity) -> float | None:
    """Val score of the linear head `linear` would train on features `ff` (FrozenFeatures; `cfg`: the chosen
    candidate's run config), fitted on the rows of the `train` samples and scored on those of `val`; None when `ff`
    holds too few of them (features of a capped subset)."""
    from ..core.heads import fit_head, run_settings

    def rows(split: str, samples: list) -> list[int]:
        at = {k: i for i, k in enumerate(ff.ids.get(split, []))}
        return [at[k] for k in (identity(s.key) for s in samples) if k in at]

    tr, va = rows("train", train), rows("val", val)
    if len(tr) < 2 or not va:
        return None
    y = ff.train_labels[tr]
    fitted = fit_head(ff.train[tr], y, cfg.train.task, val=(ff.val[va], ff.val_labels[va]), settings=run_settings(cfg))
    return float(fitted.results[fitted.solver]["val_acc"])


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


def measure_gain(d, cfg: RunConfig, rung: Rung, reporter=None, linear=None) -> GainResult:
    """A short two-phase on a subsample of `d` (frozen.Data) at the rung's input size; scored on val. `linear`:
    (FrozenFeatures, run config) of the chosen candidate, whose linear head is scored on the same rows."""
    from accelerate.utils import set_seed

    from ..backbones import create_backbone
    from ..backbones.model import TransferModel
    from ..core.train import train
    from ..tasks import get_task

    seed = cfg.train.seed
    pool = {split: d.splits[split] for split in ("train", "val")}
    if linear is not None:  # the images the chosen features hold (all of them, but for a capped large set's)
        held = {split: set(linear[0].ids.get(split, [])) for split in pool}
        pool = {split: [s for s in pool[split] if d.src.identity(s.key) in held[split]] for split in pool}
    tr, va = _sample(pool["train"], MEASURE_TRAIN, seed), _sample(pool["val"], MEASURE_VAL, seed)
    imgs = d.src.images()
    index = {k: i for i, k in enumerate(imgs.keys)}
    labels: list = [None] * len(imgs.keys)
    for s in tr + va:
        labels[index[s.key]] = s.label
    split = {"train": [index[s.key] for s in tr], "val": [index[s.key] for s in va]}
    # the head's first weights, which the head epoch's AdamW starts from, as `fit` draws them (api._backbone): the
    # global RNG here is wherever the probes and extractions left it, and those depend on what the feature store held
    # (houses: frozen head 0.273, 0.398 and 0.420 in three runs of one seed)
    set_seed(seed)
    net, bcfg = create_backbone(cfg.model.backbone, pretrained=True, arch=cfg.model.arch, features=rung.features)
    model = TransferModel(net, bcfg, num_outputs=len(d.classes), head=cfg.model.head, dropout=cfg.model.dropout)
    short = dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, features=rung.features),  # the features' cache key names the net's
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
    tuned = rows[len(head) :] or head  # the fine-tune epochs alone (after the head's): a head epoch is no fine-tune
    frozen = float(task.best(head, by=cfg.train.select)["val_acc"])
    finetuned = float(task.best(tuned, by=cfg.train.select)["val_acc"])
    alternative = linear_score(*linear, tr, va, d.src.identity) if linear is not None else None
    return GainResult(rung, frozen, finetuned, len(tr), len(va), alternative)


def decide_by_gain(
    d,
    cfg: RunConfig,
    chosen,
    table,
    probe,
    chance,
    left: float,
    reporter=None,
    linear_run: float | None = None,
    linear=None,
):
    """(strategy, rung or None, epochs or None, reason, GainResult or None): what the measurement says (see the
    top); rung None: nothing measured, the budget holds no fine-tune. `linear_run`: the estimated seconds of the
    linear run, given when the probe is good (measuring may then cost at most MEASURE_SHARE of it). `linear`:
    (FrozenFeatures, run config) of the chosen candidate, the alternative the fine-tune is scored against."""
    n_train, n_val = len(d.splits["train"]), len(d.splits["val"])
    rungs = finetune_rungs(chosen, table, cfg, n_train, n_val)
    fits = [r for r in rungs if not cfg.train.budget or r.total <= left]
    if not rungs:
        return "linear", None, None, f"--epochs {cfg.train.epochs} holds no two-phase (2 at least) -> linear", None
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
                f"the probe is good, and measuring a fine-tune ({fits[-1].text()}) would cost more than "
                f"{MEASURE_SHARE:.0%} of the linear run (~{duration(linear_run)}): not measured -> linear",
                None,
            )
        fits = cheap
    rung = fits[0]
    if reporter is not None:
        reporter.message(f"Measuring what fine-tuning gains: a short two-phase, {rung.text()}")
    g = measure_gain(d, cfg, rung, reporter, linear=linear)
    skipped = [r.text() for r in rungs[: rungs.index(rung)]]
    over = f"; over the budget: {'; '.join(skipped)}" if skipped else ""
    from ..tasks import get_task

    task = get_task(cfg.train.task)
    score = task.format_score  # 91.3% for accuracy and mAP, 0.512 for R²

    against = f"frozen head {score(g.frozen)}" + (
        f", linear on the chosen features {score(g.linear)}" if g.linear is not None else ""
    )
    versus = "the better of the two" if g.linear is not None else "it"  # GainResult.reference
    measured = (
        f"measured on {g.n_train} training / {g.n_val} val images at {rung.image_size}px: {against}; "
        f"{MEASURE_EPOCHS} fine-tune epochs at best {score(g.finetuned)} ({points(task, g.gain)} over {versus})"
    )
    if g.gain >= MIN_GAIN:
        return "two-phase", rung, rung.epochs, f"{measured} -> two-phase, {rung.text()}{over}", g
    return "linear", rung, None, f"{measured}, under {points(task, MIN_GAIN).lstrip('+')} -> linear{over}", g
