"""The strategy advisor: choose the backbone and input size by measurement (choose.py), place the data on seed
004's chart, keep to the time budget, and say what and why.

    advice = transferkit.advise("data/hymenoptera")
    advice.backbone, advice.image_size      # 'efficientnet_lite2', 260: the best 5-fold probe of the candidates
    advice.strategy, advice.reason          # 'linear', 'efficientnet_lite2 at 260px: frozen-feature probe 96.5% ...'
    print_advice(advice)                    # the numbers behind it, as `transferkit advise` prints them

|                          | similar to ImageNet | different        |
|--------------------------|---------------------|------------------|
| small  (< 300 per class) | linear              | freeze:K         |
| medium (300-1000)        | two-phase           | finetune         |
| large  (>= 1000)         | finetune            | finetune         |

Similar or different is measured, not guessed: the shift of the data's BatchNorm input statistics from the ImageNet
ones stored in the backbone (`frozen.bn_shift`, 32 images). Refinements: small, similar data whose frozen features
still leave many errors gets two-phase instead of linear; small data whose frozen features leave at most 5% of the
errors of guessing (gain.NEAR_PERFECT) stays linear whatever its cell (the digits: the chart's fine-tune 97.5%,
`linear` on features from every depth 98.9%, 5 splits); different data trains its pretrained layers at 0.3x the
head's LR instead of 0.1x (they must move further). Between, the chart is only the explanation: gain.py measures
what a short fine-tune gains over the linear head on the chosen features (cheaply, where the probe is already
good). The chart's large+different cell also allows training from scratch; `auto` fine-tunes instead, because
scratch matched ImageNet pre-training only with 3x longer schedules (He et al., "Rethinking ImageNet
Pre-training", 2019) than the 10 epochs given here. `compare` measures both.

Cost: one forward pass over train and val per candidate (backbone x input size; the chosen one's features are
the ones `linear` and `two-phase` then read from the shared cache), a third of `--budget` at most; one backbone on
large data needs only the 64-image shift. Measured on 2 cores: ants/bees 37 s for three backbones at 224-260 px,
cat/non-cat 6 s and EuroSAT 33 s for three backbones at 64 and 128 px. A fine-tuning strategy whose estimated
training time (choose.estimate_training) does not fit what is left of the budget moves to the best candidate that
fits, else to `linear`. The budget's account holds estimates from counted work (cost.py), never seconds read off a
clock: what is left is the budget less the measuring's estimate, so a busy machine decides as a quiet one does.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass

from ..config import RunConfig
from ..strategies import Strategy, parse_strategy
from .probes import probe_for, probe_name

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
    # accuracy of a linear probe (LogME's ridge) on frozen features, 5-fold over train+val when they are small (else
    # on val); None for large data measured with one backbone
    probe_acc: float | None
    chance_acc: float | None  # val accuracy of always answering the commonest class
    seconds: float  # what measuring took here (shown; the budget counts `measure_estimate_seconds`)
    # what was measured to choose the backbone and input size (choose.Candidate dicts), and the budget it kept to
    candidates: list[dict] = dataclasses.field(default_factory=list)
    budget_minutes: float = 0.0
    train_estimate_seconds: float | None = None  # the loop phases' estimated cost at the chosen candidate
    measure_estimate_seconds: float = 0.0  # the measured candidates' estimates: what the budget counts as spent
    epochs: int | None = None  # a cheaper fine-tune's epochs when the budget held only that one (gain.py)
    gain: dict | None = None  # what a short two-phase gained over frozen features, measured (gain.GainResult)
    features: str = "last"  # --features the run trains on: `auto` measures the chosen one's stages too (choose.py)
    task: str = "classification"  # what the scores are: accuracy, mAP (shares) or R² (a number)
    decision: str = ""  # the clause that decided, for one terminal line (`reason` has the chart's whole account)

    def to_strategy(self) -> Strategy:
        return dataclasses.replace(parse_strategy(self.strategy), backbone_lr_mult=self.backbone_lr_mult)

    def summary(self) -> str:
        """One line for the terminal: what was chosen, the probe, and the clause that decided."""
        from ..tasks import get_task

        probe = "" if self.probe_acc is None else f"probe {get_task(self.task).format_score(self.probe_acc)}; "
        chose = f"{self.strategy} on {self.backbone} ({self.features}) at {self.image_size} px"
        return f"auto: {chose} ({probe}{self.decision or self.reason})"

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
    """The advice for data already opened and split (`frozen.Data`); `fit(strategy="auto")` calls this.

    First the backbone and input size (choose.py: a cross-validated frozen-feature probe per candidate), then the
    chart's strategy for the chosen one, then the budget: a fine-tuning strategy whose estimated cost does not fit
    what is left moves to the best candidate that fits, or to `linear`."""
    from collections import Counter

    from ..data.base import label_classes
    from .choose import backbone_names, choose_candidate, estimate_training, with_candidate
    from .cost import duration, estimate_seconds
    from .frozen import domain_shift
    from .gain import NEAR_PERFECT, decide_by_gain, error_share, good_probe, near_perfect

    start = time.perf_counter()  # for the `seconds` shown; no decision reads it
    n_train, n_classes, per_class = len(d.splits["train"]), len(d.classes), d.per_class()
    probe_acc = chance = None
    table, chosen = [], None
    # One backbone on large data: the chart says finetune whatever a probe finds, so measure only the shift
    if per_class < LARGE or len(backbone_names(cfg)) > 1:
        chosen, table, ff = choose_candidate(d, cfg, reporter)
        cfg = with_candidate(cfg, chosen)
        probe_acc, chance = chosen.score, probe_for(d.src.task)(ff)[1]
    shift, bcfg, image_size = domain_shift(d, cfg.model.backbone, cfg)
    name, mult, size, similar, reason = decide(
        per_class,
        shift,
        probe_acc,
        chance,
        d.median_side,
        len(bcfg.stages),
        cfg.model.backbone,
        probe_name(d.src.task),
    )
    decision = chart_cell(size, similar, name)  # what decided, unless a measurement or the budget overrules it
    if chosen is not None and len(table) > 1:
        reason = f"{_choice_text(chosen, table, d.src.task)}; " + reason
    estimate = epochs = gained = None
    spent = sum(c.estimate for c in table if c.score is not None)  # measuring, as estimated (choose.py)
    if chosen is not None and size == "small" and name != "linear" and near_perfect(probe_acc, chance):
        # Few images and frozen features that already leave almost no errors: a fine-tune has nothing to win that
        # the val split could show, and on the digits it lost what the chart's cell promised (small + different ->
        # fine-tune all: 97.5% [96.0, 99.0] against `linear` on stages features 98.9% [97.9, 99.9], the same
        # 5 splits, BENCHMARKS.md); `linear` also costs a fraction of it
        share = error_share(probe_acc, chance)
        decision = (
            f"the frozen features leave only {share:.1%} of the errors of guessing (<= {NEAR_PERFECT:.0%}) on small "
            "data: nothing for fine-tuning to win -> linear"
        )
        reason += f"; but {decision}"
        name, mult, estimate = "linear", None, 0.0
        image_size = chosen.image_size
    elif chosen is not None and not near_perfect(probe_acc, chance):
        # Measured, not read off the chart: a short two-phase against the linear head on the same rows (gain.py);
        # the chart's cell stays in the reason as the explanation
        left = cfg.train.budget * 60 - spent
        # `linear` would extract every image once at the chosen size: the run the short fine-tune is scored against
        # on the same rows, and what measuring is weighed against when the probe is already good and the chart names
        # linear or the data is small (gain.py: on all four small sets measured, a fine-tune never beat `linear` on
        # a good probe; medium and large data, where fine-tuning gains most, are measured whatever the cost)
        n_all = sum(len(v) for v in d.splits.values())
        trusted = good_probe(probe_acc, chance) and (name == "linear" or size == "small")
        linear_run = estimate_seconds(n_all * chosen.gflops, cfg.runtime.device) if trusted else None
        name, rung, epochs, why, g = decide_by_gain(
            d, cfg, chosen, table, probe_acc, chance, left, reporter, linear_run=linear_run, linear=(ff, cfg)
        )
        reason, decision = f"{why}; the chart: {reason}", why
        mult = mult if name != "linear" else None
        if rung is not None:
            spent += rung.measure_seconds
            gained = {**dataclasses.asdict(g), "gain": g.gain} if g is not None else None
        if name != "linear":
            estimate = rung.train_seconds
            found = [
                c
                for c in table
                if (c.backbone, c.image_size, c.features) == (chosen.backbone, rung.image_size, rung.features)
            ]
            if found and found[0] is not chosen:
                for c in table:
                    c.chosen = c is found[0]
                chosen, cfg = found[0], with_candidate(cfg, found[0])
        image_size = chosen.image_size
    elif chosen is not None:
        strategy = dataclasses.replace(parse_strategy(name), backbone_lr_mult=mult)
        n_val = len(d.splits["val"])
        estimate = estimate_training(chosen, strategy, cfg, n_train, n_val)
        left = cfg.train.budget * 60 - spent
        if cfg.train.budget and estimate > left:
            fits = [
                c
                for c in sorted((c for c in table if c.score is not None), key=lambda c: -c.score)
                if estimate_training(c, strategy, cfg, n_train, n_val) <= left
            ]
            over = f"{name} at {chosen.backbone} {chosen.image_size}px is estimated at ~{duration(estimate)}"
            if fits:
                for c in table:
                    c.chosen = c is fits[0]
                chosen, cfg = fits[0], with_candidate(cfg, fits[0])
                estimate = estimate_training(chosen, strategy, cfg, n_train, n_val)
                decision = (
                    f"{over}, over the --budget's {duration(left)} left: {chosen.backbone} at "
                    f"{chosen.image_size}px instead (~{duration(estimate)})"
                )
                reason += f"; {decision}"
            else:
                name, mult, estimate = "linear", None, 0.0
                decision = f"{over}, over the --budget's {duration(left)} left: linear instead"
                reason += f"; {decision}"
        image_size = chosen.image_size
    counts = Counter(i for s in d.splits["train"] for i in label_classes(s.label))
    d.nets.clear()  # the networks measured are not held through the training that follows
    return Advice(
        strategy=name,
        backbone_lr_mult=mult,
        reason=reason,
        decision=decision,
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
        candidates=[c.to_dict() for c in table],
        budget_minutes=cfg.train.budget,
        train_estimate_seconds=estimate,
        measure_estimate_seconds=spent,
        epochs=epochs,
        gain=gained,
        features=cfg.model.features,
        task=cfg.train.task,
    )


def _choice_text(chosen, table, task: str = "classification") -> str:
    """'efficientnet_lite1 at 224px: probe 96.2% (5-fold), best of 3 measured (lite0 224px 94.9%, ...)'; R² as
    0.525."""
    from ..tasks import get_task

    def score(c) -> str:
        return get_task(task).format_score(c.score)

    def name(c) -> str:
        return f"{c.backbone} {c.image_size}px" + (f" {c.features}" if c.features != "last" else "")

    others = [f"{name(c)} {score(c)}" for c in table if c.score is not None and not c.chosen]
    over = sum(c.skipped is not None and c.skipped.startswith("--budget") for c in table)
    below = sum(c.skipped is not None for c in table) - over  # larger inputs of backbones that ranked lower
    how = f"{chosen.folds}-fold" if chosen.folds else "on val"
    text = f"{name(chosen)}: frozen-feature probe {score(chosen)} ({how})"
    if others:
        text += f", best of {len(others) + 1} measured ({', '.join(others)})"
    if below:
        text += f"; {below} larger input(s) of lower-ranked backbones not measured"
    if over:
        text += f"; {over} not measured (--budget)"
    return text


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
    each = " per class" if probe_name != "R²" else ""  # a regression's one target: every image counts
    why = [f"{per_class:.0f} training images{each} ({_band_text(per_class)})"]
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
            why.append(f"frozen features reach {probe_acc:.1%} probe accuracy (commonest class {chance:.1%})")
        else:  # regression R², multi-label mAP: against what knowing nothing scores
            why.append(f"frozen features reach probe {probe_name} {probe_acc:.3f} (knowing nothing: {chance:.3f})")
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
    reason = f"{chart_cell(size, similar, name)}: " + "; ".join(why)
    return name, mult, size, similar, reason


def chart_cell(size: str, similar: bool, name: str) -> str:
    """The chart's cell that named the strategy, e.g. "small data, different -> freeze:2"."""
    return f"{size} data, {'similar' if similar else 'different'} -> {name}"


def _band_text(per_class: float) -> str:
    if per_class < SMALL:
        return f"< {SMALL}: small"
    return f"{SMALL}-{LARGE}: medium" if per_class < LARGE else f">= {LARGE}: large"


def print_advice(advice: Advice, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    from ..tasks import get_task
    from .cost import duration
    from .gain import points

    console = console or Console()
    task = get_task(advice.task)  # accuracy and mAP as their task shows them, R² as a number
    a = advice
    if len(a.candidates) > 1:
        c = Table(
            "backbone",
            "input px",
            "GFLOP",
            "probe",
            "folds",
            "cost: estimated / took",
            "",
            title="Backbones and input sizes measured",
            caption="GFLOP: counted forward work per image. Estimated: from that work, what the budget counts; "
            "took: measured here, shown only.",
        )
        for row in a.candidates:
            score, spread = row["score"], row.get("spread")
            shown = "-" if score is None else task.format_score(score)
            if score is not None and spread is not None:
                shown += f" ± {task.format_score(spread)}"
            c.add_row(
                row["backbone"],
                str(row["image_size"]),
                f"{row['gflops']:.3g}" if "gflops" in row else "-",  # advice saved before work was counted: none
                shown,
                str(row["folds"] or "val"),
                f"{duration(row['estimate']) if 'estimate' in row else '-'} / "
                + ("-" if row["skipped"] else duration(row["seconds"])),
                "chosen" if row["chosen"] else (f"not measured: {row['skipped']}" if row["skipped"] else ""),
            )
        console.print(c)
    t = Table("measured", "value", title=f"Strategy advice ({advice.backbone})")
    t.add_row(
        "training images",
        f"{a.n_train} in {a.n_classes} classes ({a.per_class:.0f} per class, rarest {a.smallest_class})"
        if a.n_classes > 1
        else f"{a.n_train}",
    )
    t.add_row("image size", f"median short side {a.median_side:.0f}px, trained at {a.image_size}px")
    t.add_row(
        "domain shift from ImageNet", "-" if a.shift is None else f"{a.shift:.3f} (different at >= {SHIFT_DIFFERENT})"
    )
    if a.probe_acc is not None:
        nothing = "commonest class" if task.class_logits else "knowing nothing"
        shown = f"{task.score_label} {task.format_score(a.probe_acc)} ({nothing}: {task.format_score(a.chance_acc)})"
        t.add_row("frozen-feature probe", shown)
    t.add_row("chart cell", f"{a.size} / {'similar' if a.similar else 'different'}")
    t.add_row(
        "measuring",
        f"estimated {duration(a.measure_estimate_seconds)} of --budget {a.budget_minutes:g} min; "
        f"took {duration(a.seconds)} here",
    )
    if a.gain:
        g = a.gain
        # what the fine-tune epochs were scored against (gain.GainResult.reference): the better frozen head, the
        # linear head on the chosen features or the two-phase's own head epoch (older advice: no linear)
        linear = g.get("linear")
        before, name = (g["frozen"], "frozen head") if linear is None or g["frozen"] > linear else (linear, "linear")
        t.add_row(
            "fine-tuning gain (measured)",
            f"{task.format_score(before)} {name} -> {task.format_score(g['finetuned'])} after a short "
            f"two-phase ({points(task, g['gain'])}, {g['n_train']} train / {g['n_val']} val images)",
        )
    if a.train_estimate_seconds:
        t.add_row("training estimate", f"at most {duration(a.train_estimate_seconds)} (every epoch)")
    console.print(t)
    lr = f" --backbone-lr-mult {a.backbone_lr_mult}" if a.backbone_lr_mult is not None else ""
    lr += f" --epochs {a.epochs}" if getattr(a, "epochs", None) else ""
    console.print(f"[bold]Strategy: {a.strategy}{lr}[/bold] - {a.reason}.", highlight=False)
