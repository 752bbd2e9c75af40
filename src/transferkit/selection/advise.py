"""The strategy advisor: measure the data, place it on seed 004's chart, and say which strategy and why.

    advice = transferkit.advise("data/hymenoptera")
    advice.strategy, advice.reason          # 'linear', 'small data, similar -> linear: 122 training images per ...'
    print_advice(advice)                    # the numbers behind it, as `transferkit advise` prints them

|                          | similar to ImageNet | different        |
|--------------------------|---------------------|------------------|
| small  (< 300 per class) | linear              | freeze:K         |
| medium (300-1000)        | two-phase           | finetune         |
| large  (>= 1000)         | finetune            | finetune         |

Similar or different is measured, not guessed: the shift of the data's BatchNorm input statistics from the ImageNet
ones stored in the backbone (`frozen.bn_shift`, 64 images). Two refinements: small, similar data whose frozen features
still leave many errors gets two-phase instead of linear; different data trains its pretrained layers at 0.3x the
head's LR instead of 0.1x (they must move further). The chart's large+different cell also allows training from
scratch; `auto` fine-tunes instead, because scratch matched ImageNet pre-training only with 3x longer schedules
(He et al., "Rethinking ImageNet Pre-training", 2019) than the 10 epochs given here. `compare` measures both.

Cost: small and medium data need the train and val features (the ones `linear` and `two-phase` compute anyway, via
the shared cache) plus a linear probe on them; large data needs only the 64-image shift.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass

from ..config import RunConfig
from ..strategies import Strategy, parse_strategy

SMALL, LARGE = 300, 1000  # training images per class at the bands' edges (the core rule's thresholds)
# Mean KL(data || ImageNet) of BatchNorm inputs above which the data counts as different. Measured with
# efficientnet_lite0: ants/bees 0.07, 64 px cat/non-cat photos 0.19, 8 px digit scans 0.63; 0.3 sits between.
SHIFT_DIFFERENT = 0.3
# Frozen features that leave more than this share of the errors of always answering the commonest class have room
# to improve by fine-tuning: ants/bees leave 0.13 (94% vs 54%), cat/non-cat 0.08.
WEAK_PROBE = 0.25
DIFFERENT_LR_MULT = 0.3  # backbone LR / head LR for data far from ImageNet (0.1 otherwise); the demo's digits: 98%
# fine-tuned with it, 97.4% test with freeze:2 (4 epochs, one seed)
TINY_SIDE = 48  # px: without BatchNorm statistics to measure, images this small count as different

CHART = {
    ("small", True): "linear",
    ("small", False): "freeze",
    ("medium", True): "two-phase",
    ("medium", False): "finetune",
    ("large", True): "finetune",
    ("large", False): "finetune",
}


@dataclass
class Advice:
    strategy: str  # what to pass as --strategy, e.g. "freeze:2"
    backbone_lr_mult: float | None  # backbone LR / head LR for this data; None: the config's value (0.1)
    reason: str  # the chart cell and the numbers that put the data there
    size: str  # small | medium | large: the chart's row
    similar: bool  # the chart's column
    backbone: str  # the network measured with, the one that will be trained
    n_train: int  # training images
    n_classes: int
    per_class: float  # training images per class (mean): decides the row
    smallest_class: int  # images in the rarest class
    median_side: float  # median short side of the training images (px)
    image_size: int  # input side training will use (px)
    shift: float | None  # mean KL(data || ImageNet) of BatchNorm inputs: decides the column; None without BatchNorm
    probe_acc: float | None  # val accuracy of a linear probe (LogME's ridge) on frozen features; None for large data
    chance_acc: float | None  # val accuracy of always answering the commonest class
    seconds: float  # what measuring cost

    def to_strategy(self) -> Strategy:
        return dataclasses.replace(parse_strategy(self.strategy), backbone_lr_mult=self.backbone_lr_mult)

    def to_dict(self) -> dict:
        return asdict(self)


def advise(data, config: RunConfig | None = None, reporter=None, **overrides) -> Advice:
    """Measure `data` (a path or DataSource) with the run's backbone and settings; keyword arguments as in `fit`."""
    from ..engine.runtime import refuse_multiprocess
    from ..options import apply_overrides, validate
    from ..progress import make_reporter
    from .frozen import open_data

    refuse_multiprocess("advise", "a few measurements on one process; `train --strategy auto` measures on all of them")
    cfg = apply_overrides(config or RunConfig(), dict(overrides))
    validate(cfg)
    return advise_opened(open_data(data, cfg), cfg, reporter or make_reporter(cfg.quiet))


def advise_opened(d, cfg: RunConfig, reporter=None) -> Advice:
    """The advice for data already opened and split (`frozen.Data`); `fit(strategy="auto")` calls this."""
    from collections import Counter

    from ..data.base import label_classes
    from .frozen import domain_shift, frozen_features

    start = time.perf_counter()
    n_train, n_classes, per_class = len(d.splits["train"]), len(d.classes), d.per_class()
    probe_acc = chance = None
    if per_class < LARGE:  # the probe only matters where linear or two-phase is on the table
        ff = frozen_features(d, cfg.model.backbone, cfg, reporter)
        probe_acc, chance = PROBES[d.src.task](ff)
    shift, bcfg, image_size = domain_shift(d, cfg.model.backbone, cfg)
    name, mult, size, similar, reason = decide(
        per_class,
        shift,
        probe_acc,
        chance,
        d.median_side,
        len(bcfg.stages),
        cfg.model.backbone,
        PROBE_NAMES[d.src.task],
    )
    counts = Counter(i for s in d.splits["train"] for i in label_classes(s.label))
    return Advice(
        strategy=name,
        backbone_lr_mult=mult,
        reason=reason,
        size=size,
        similar=similar,
        backbone=cfg.model.backbone,
        n_train=n_train,
        n_classes=n_classes,
        per_class=per_class,
        smallest_class=min(counts.values(), default=0),
        median_side=d.median_side,
        image_size=image_size,
        shift=shift,
        probe_acc=probe_acc,
        chance_acc=chance,
        seconds=time.perf_counter() - start,
    )


def class_probe(ff) -> tuple[float, float]:
    """(val accuracy of LogME's ridge probe, of always answering the commonest class)."""
    import numpy as np

    from .estimators import logme_fit

    probe = float((logme_fit(ff.train, ff.train_labels).predict(ff.val) == ff.val_labels).mean())
    return probe, float(np.bincount(ff.val_labels).max() / len(ff.val_labels))


def regression_probe(ff) -> tuple[float, float]:
    """(val R² of LogME's ridge probe, 0: the R² of always answering the mean). The weak-probe rule reads R² as it
    reads accuracy: frozen features that leave more than a quarter of the mean's squared error get fine-tuned."""
    from ..evaluation.regression import r2
    from .estimators import logme_regression

    return r2(logme_regression(ff.train, ff.train_labels).predict(ff.val), ff.val_labels), 0.0


def multilabel_probe(ff) -> tuple[float, float]:
    """(val mAP of LogME's ridge probe, the mAP of scoring every image alike: each label's share of positives)."""
    import numpy as np

    from ..evaluation.multilabel import mean_average_precision
    from .estimators import logme_regression

    probe = mean_average_precision(
        logme_regression(ff.train, ff.train_labels).predict(ff.val).reshape(len(ff.val), -1), ff.val_labels
    )
    y = np.asarray(ff.val_labels)
    present = y.any(0)
    return probe, float(y[:, present].mean(0).mean()) if present.any() else 0.0


# The frozen-feature probe per task: (its val score, the score of knowing nothing), as accuracy is to chance.
PROBES = {"classification": class_probe, "regression": regression_probe, "multilabel": multilabel_probe}
PROBE_NAMES = {"classification": "accuracy", "regression": "R²", "multilabel": "mAP"}


def decide(
    per_class: float,
    shift: float | None,
    probe_acc: float | None,
    chance: float | None,
    median_side: float,
    n_stages: int,
    backbone: str = "the backbone",
    probe_name: str = "accuracy",
) -> tuple[str, float | None, str, bool, str]:
    """The chart as a function of the measurements: (strategy, backbone LR mult, size band, similar, reason)."""
    size = "small" if per_class < SMALL else "medium" if per_class < LARGE else "large"
    similar = shift < SHIFT_DIFFERENT if shift is not None else median_side >= TINY_SIDE
    name = CHART[(size, similar)]
    why = [f"{per_class:.0f} training images per class ({_band_text(per_class)})"]
    if shift is not None:
        why.append(
            f"domain shift {shift:.2f} {'<' if similar else '>='} {SHIFT_DIFFERENT} "
            f"({'similar to' if similar else 'different from'} ImageNet for {backbone})"
        )
    else:
        why.append(
            f"no BatchNorm statistics to measure; median image side {median_side:.0f}px "
            f"({'>=' if similar else '<'} {TINY_SIDE}px)"
        )
    if probe_acc is not None:
        if probe_name == "accuracy":
            why.append(f"frozen features reach {probe_acc:.1%} val accuracy (commonest class {chance:.1%})")
        else:  # regression R², multi-label mAP: against what knowing nothing scores
            why.append(f"frozen features reach val {probe_name} {probe_acc:.3f} (knowing nothing: {chance:.3f})")
        if name == "linear" and (1 - probe_acc) > WEAK_PROBE * (1 - chance):
            name = "two-phase"
            why.append(
                f"they leave {(1 - probe_acc) / (1 - chance):.0%} of the errors of guessing (> {WEAK_PROBE:.0%}): "
                "fine-tune after the head"
            )
    if name == "freeze" and median_side < TINY_SIDE:
        # Upscaled from a few pixels, the images show the stem interpolation blur, not photo edges: no stage is
        # generic enough to keep. Measured on the digits (8 px): freeze:2 97.4% test vs finetune 98.5%.
        name = "finetune"
        why.append(
            f"images are tiny (median side {median_side:.0f}px < {TINY_SIDE}px), upscaled: no layer is generic "
            "enough to freeze, fine-tune all"
        )
    if name == "freeze":
        k = max(1, n_stages // 3)  # stem + first third: general to any images (Yosinski et al. 2014)
        name = f"freeze:{k}"
        why.append(f"keep the stem and first {k} of {n_stages} stages (generic edges and textures), train the rest")
    if size == "large" and not similar:
        why.append("the chart also allows scratch: compare --strategies finetune,scratch checks it")
    mult = None if similar else DIFFERENT_LR_MULT
    if mult is not None:
        why.append(f"pretrained layers at {mult}x the head's LR (they must move further)")
    reason = f"{size} data, {'similar' if similar else 'different'} -> {name}: " + "; ".join(why)
    return name, mult, size, similar, reason


def _band_text(per_class: float) -> str:
    if per_class < SMALL:
        return f"< {SMALL}: small"
    return f"{SMALL}-{LARGE}: medium" if per_class < LARGE else f">= {LARGE}: large"


def print_advice(advice: Advice, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table("measured", "value", title=f"Strategy advice ({advice.backbone})")
    a = advice
    t.add_row(
        "training images",
        f"{a.n_train} in {a.n_classes} classes ({a.per_class:.0f} per class, rarest {a.smallest_class})",
    )
    t.add_row("image size", f"median short side {a.median_side:.0f}px, trained at {a.image_size}px")
    t.add_row(
        "domain shift from ImageNet", "-" if a.shift is None else f"{a.shift:.3f} (different at >= {SHIFT_DIFFERENT})"
    )
    if a.probe_acc is not None:
        t.add_row("frozen-feature probe", f"{a.probe_acc:.1%} val accuracy (commonest class {a.chance_acc:.1%})")
    t.add_row("chart cell", f"{a.size} / {'similar' if a.similar else 'different'}")
    t.add_row("measuring took", f"{a.seconds:.1f} s")
    console.print(t)
    lr = f" --backbone-lr-mult {a.backbone_lr_mult}" if a.backbone_lr_mult is not None else ""
    console.print(f"[bold]Strategy: {a.strategy}{lr}[/bold] - {a.reason}.", highlight=False)
