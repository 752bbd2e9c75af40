"""What `auto` measures before it picks a strategy: which backbone and which input size, by a cross-validated probe
on frozen features, within the run's time budget.

    chosen, table, ff = choose_candidate(data, cfg, reporter)   # ff: the chosen candidate's train/val features
    chosen.backbone, chosen.image_size, chosen.score             # 'efficientnet_lite1', 224, 0.962

Candidates: the backbones (`--backbones a,b,c`; by default the three built-in ones when `--backbone` is left as it
is, else that one alone) times the input sizes (`--image-size` when given; else the size that follows the data and,
for images smaller than the backbone's input, twice that, up to the backbone's size and at most 4x the images' own
side: upscaling further invents no detail; for photos at least the backbone's input, FIXRES = 1.25x that input where
the photos hold the pixels). EuroSAT's 64 px tiles: 64 and 128 px; ants/bees photos (374 px short side): the
backbone's 224-260 px and 288-320 px; 8 px digits: 64 px alone. Every backbone is measured at the data's own size,
the larger input only for the best of them.

Each candidate costs one forward pass over a seeded subsample of train+val (`measure_sample`: all candidates
together at most half the cheapest one's full extraction, at least 200 images) and is scored by LogME's ridge probe,
cross-validated over it in 5 folds when it holds at most 2,000 images (one val split of 150 images measures an
accuracy to +-5 points; five folds over all 400 of ants/bees to about +-2), on val alone above that. The best mean
wins; exact ties go to the one given first (lite0 before lite1 before lite2). With --features left at `last`, the
cheapest backbone's `stages` variant (backbones/depth.py; the best last layer does not say whose stages fit best,
see choose_candidate) is measured on the same images, at the larger input that
`train` gives features from every depth (depth.input_side: 3x the data's side, up to the backbone's input; EuroSAT's
tiles at 192 px; where that is the size its last layer is measured at, photos and the digits, both come from one
forward pass), and wins when it beats the best one with both standardised per feature (the plain ridge
under-rated EuroSAT's 744 stage features: 81.0 vs 84.0%). Only the winner is then
extracted on all of train+val (cached on disk under the key `linear` uses, so the `linear` run that follows extracts
nothing) and re-scored there: the score the strategy rule reads. Extracting every candidate in full cost 2.6-3.6x
the run `auto` picked; now the subsample's floor of 200 images is what measuring costs on sets this small
(BENCHMARKS.md, "Features from every depth").

The budget (`--budget` minutes) is kept in estimated seconds, never in seconds read off a clock mid-run, so that a
busy machine makes the same choice as a quiet one (cost.py). Each candidate's work is counted once: the FLOPs of its
forward pass at its size (efficientnet_lite0 at 224 px: 0.77 GFLOP). Measuring it is reckoned at train+val images x
that work / the device's nominal throughput (CPU: 67.5 GFLOP/s, lite0's 87.9 img/s on 2 cores); candidates are
measured least work first, and one that would take the estimates past a third of the budget is skipped (the table
says so). `estimate_training` reckons a strategy's training the same way (x STEP_COST per training image), and
`advise` checks it against the budget less the measuring's estimate. The seconds measuring took are shown, not used.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np

from ..config import RunConfig, comma_names
from .cost import duration, estimate_seconds, forward_gflops
from .probes import probe_for

CV_FOLDS, CV_MAX_IMAGES = 5, 2000  # cross-validate the probe up to this many train+val images
MEASURE_SHARE = 1 / 3  # of the budget, at most, for measuring candidates (the rest is for training)
MAX_UPSCALE = 4  # an input side at most 4x the images' own median side
# Photos larger than the backbone's input are also measured at 1.25x that input (rounded to 32 px): a network trained
# on random-resized crops sees objects larger in training than in a centre crop at the same size, and a larger test
# input matches them again (FixRes: Touvron et al., NeurIPS 2019, ResNet-50 224 px best tested at ~288). ants/bees,
# `linear` on the last layer, val accuracy: lite0 224 -> 288 px 94.8 -> 97.4, lite1 240 -> 288 px 96.7 -> 97.4,
# lite2 260 -> 320 px 96.7 -> 98.0; 1.1-1.3x all gained, 1.35x less (BENCHMARKS.md, "Larger inputs for photos")
FIXRES = 1.25
# A training step (forward + backward + update) is reckoned at this many forward passes of the same batch: 87.9 img/s
# forward vs 23.5 img/s training for efficientnet_lite0 at 224 px on 2 cores (BENCHMARKS.md, "Jobs").
STEP_COST = 3.7
# `auto` costs what it picks: candidates are measured on a subsample whose extraction, all candidates together, is at
# most half the cheapest candidate's full one (so measuring + the run stay within ~1.5x the run), but never on fewer
# than MIN_SAMPLE train+val images (5 folds of 40: the probe still tells 90% from 94%, +-3 points a fold)
MEASURE_SHARE_OF_RUN, MIN_SAMPLE = 0.5, 200
PROBE_CAP = (4000, 1000)  # train, val images probed at most (a seeded subset beyond: large data fine-tunes anyway)


@dataclass
class Candidate:
    backbone: str
    image_size: int
    gflops: float  # forward work per image at this size, counted (cost.py): what its estimates are made of
    estimate: float = 0.0  # seconds measuring it is reckoned at (train+val x gflops / nominal throughput): the budget's
    score: float | None = None  # the probe's mean over folds (or on val); None: not measured
    spread: float | None = None  # the folds' standard deviation
    folds: int = 0  # 0: scored on val alone
    seconds: float = 0.0  # what measuring it took here (features, probe): shown, never decides (it follows the load)
    skipped: str | None = None  # why it was not measured
    chosen: bool = False
    features: str = "last"  # --features: the last layer, or pooled from several depths (backbones/depth.py)
    sampled: int = 0  # train+val images it was measured on (a subsample: MEASURE_SHARE_OF_RUN); the winner's score
    sample_score: float | None = None  # is then re-measured on them all, this one ranked it

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def backbone_names(cfg: RunConfig) -> list[str]:
    """The backbones `auto` chooses among: --backbones; else the built-in three when --backbone is the default."""
    from ..backbones import list_backbones
    from ..config import DEFAULT_BACKBONE

    if cfg.model.backbones:
        return comma_names(cfg.model.backbones)
    return list_backbones("builtin") if cfg.model.backbone == DEFAULT_BACKBONE else [cfg.model.backbone]


def input_sizes(
    cfg: RunConfig, median_side: float, native: int, crop_pct: float = 0.875, smallest: int = 0
) -> list[int]:
    """--image-size; else the size that follows the data and a larger one: for images smaller than the backbone's
    input twice that; for photos at least that large FIXRES x the backbone's input, where the photos hold the pixels
    (its resize, size / crop_pct, at most their median short side). See the top."""
    from ..data.sizes import choose_image_size

    if cfg.data.image_size:
        return [cfg.data.image_size]
    own = choose_image_size(median_side, native, smallest)
    if smallest >= native:  # a network of one input size (a ViT): no other to measure
        return [own]
    if own < native:
        up = min(native, 2 * own, 32 * math.floor(MAX_UPSCALE * median_side / 32))
    else:
        up = min(32 * round(FIXRES * native / 32), 32 * math.floor(median_side * crop_pct / 32))
    return [own] + ([up] if up > own else [])


def candidate_grid(cfg: RunConfig, median_side: float, built: dict) -> list[Candidate]:
    """Every (backbone, input size) pair with its forward work counted; `built`: name -> frozen.frozen_backbone."""
    return [
        Candidate(name, size, forward_gflops(b[0], size))
        for name, b in built.items()
        for size in input_sizes(cfg, median_side, b[1].input_size, b[1].crop_pct, b[1].min_input)
    ]


def choose_candidate(d, cfg: RunConfig, reporter=None, budget_seconds: float | None = None):
    """(the chosen Candidate, every Candidate, the chosen one's FrozenFeatures on all of train+val). One candidate:
    measured as before (its features feed the strategy rule), nothing to choose.

    Candidates are ranked on a seeded subsample (`measure_sample`), then the best one's `--features stages`
    variant on the same images (when --features is left at `last`); only the winner is extracted in full (rows the
    subsample stored are not extracted again) and re-scored there: its features are the ones `linear` then reads."""
    from ..backbones.depth import frozen_input_size, standardises
    from .frozen import frozen_backbone, frozen_features

    budget = budget_seconds if budget_seconds is not None else cfg.train.budget * 60
    limit = budget * MEASURE_SHARE if budget else math.inf
    probed = _subset(d, cfg.train.seed)
    n = sum(len(probed.splits[s]) for s in ("train", "val"))
    built = {name: frozen_backbone(name, cfg, d.nets) for name in backbone_names(cfg)}  # weights loaded once each
    # Counted work, not timings: every process of a launched run, busy or quiet, gets the same table and choice
    table = candidate_grid(cfg, d.median_side, built)
    for c in table:
        c.features = cfg.model.features
    deeper = cfg.model.features == "last"  # the cheapest one's stages variant is measured too
    works = [c.gflops for c in table] + ([max(c.gflops for c in table)] if deeper else [])  # at most
    sample = measure_sample(probed, works, cfg.train.seed)
    m = sum(len(sample.splits[s]) for s in ("train", "val"))
    for c in table:
        c.estimate, c.sampled = estimate_seconds(m * c.gflops, cfg.runtime.device), m
    given = {id(c): i for i, c in enumerate(table)}  # exact score ties go to the earlier in the given order
    table.sort(key=lambda c: c.gflops)  # least work first (stable): what the budget leaves out is the dearest
    spent, found = 0.0, {}  # spent: the estimates of the candidates measured so far

    variant = None
    if deeper:  # the cheapest backbone from every depth: the same forward pass, other features
        # The cheapest, not the best last layer: which network's last layer fits the data does not tell whose
        # stages do, and the ranking of 200 images is noisy. EuroSAT, 5 splits: the best last layer's stages
        # (lite1 on 3 splits) scored 94.9%, lite0's stages 96.0% on the same splits (92.7 / 96.7 where lite1's
        # scored 90.0 / 93.3); the digits 98.6% -> 98.9%, cat/non-cat 98.8% both ways; and it costs the least.
        # table[0], the least work (given order on ties), is measured first whatever the budget.
        top = table[0]
        variant = dataclasses.replace(top, features="stages", score=None, spread=None, skipped=None)
        deep = frozen_backbone(top.backbone, with_candidate(cfg, variant), d.nets)
        if not cfg.data.image_size:  # features from every depth follow a larger side (depth.input_side: EuroSAT's
            # 64 px tiles at 192 px, +4.4 points over 64 px with `linear`, 5 splits), as `train` then sizes them
            size = frozen_input_size(d.median_side, deep[1])
            variant.image_size, variant.gflops = size, forward_gflops(deep[0], size)
            variant.estimate = estimate_seconds(m * variant.gflops, cfg.runtime.device)

    def measure(c, at=None) -> None:
        start = time.perf_counter()
        net = at or built[c.backbone]
        # the stages variant at this candidate's input size (ants/bees' photos, the digits) comes from its pass
        shared = variant is not None and c is top and variant.image_size == c.image_size
        ff = frozen_features(
            sample, c.backbone, with_candidate(cfg, c), reporter, built=net, stages=deep if shared else None,
            timing=False,
        )  # fmt: skip
        c.score, c.spread, c.folds = cv_probe(ff, d.src.task, cfg.train.seed, standardise=standardises(c.features))
        c.sample_score = c.score
        c.seconds = time.perf_counter() - start  # shown in the table; the budget counts c.estimate
        found[id(c)] = ff

    def rank(c):
        return (c.score, -given.get(id(c), len(given)))

    # Each backbone at the data's own size first; the larger inputs of the best of them only (the dearest
    # candidates, 4x the work at twice the side, are measured where they can win): EuroSAT 5 measurements, not 7
    own = {b: min(c.image_size for c in table if c.backbone == b) for b in built}
    for first in (True, False):
        if not first and found:
            lead = max((c for c in table if id(c) in found), key=rank).backbone
        for c in table:
            if (c.image_size == own[c.backbone]) != first or id(c) in found:
                continue
            if not first and c.backbone != lead:
                c.skipped = f"{c.backbone} ranked below {lead} at the data's own size: its larger inputs not measured"
            elif found and spent + c.estimate > limit:
                c.skipped = (
                    f"--budget: ~{duration(c.estimate)} estimated, {duration(max(0.0, limit - spent))} left of the "
                    f"{duration(limit)} for measuring (a third of {cfg.train.budget:g} min)"
                )
            else:
                measure(c)
                spent += c.estimate

    if deeper and spent + variant.estimate <= limit:  # read from the store when its pass was shared
        measure(variant, at=deep)
        spent += variant.estimate
        table.append(variant)
    best = max((c for c in table if id(c) in found and c.features == cfg.model.features), key=rank)
    if deeper and id(variant) in found:
        # stages against last, both standardised per feature on the same folds: the plain ridge's one L2 for all
        # 744 stage features ranked EuroSAT's stages 81.0% under last's 84.0% (full splits: stages +4.5 points)
        paired = cv_probe(found[id(best)], d.src.task, cfg.train.seed, standardise=True)[0]
        if variant.score > paired:
            best = variant
    best.chosen = True
    ff = found[id(best)]
    if m < n:  # the winner on every train+val image: the features the run trains on, the score the rule reads
        cfg_best = with_candidate(cfg, best)
        net = frozen_backbone(best.backbone, cfg_best, d.nets)  # built when it was measured
        ff = frozen_features(probed, best.backbone, cfg_best, reporter, built=net)
        best.score, best.spread, best.folds = cv_probe(ff, d.src.task, cfg.train.seed, standardises(best.features))
        best.estimate += estimate_seconds((n - m) * best.gflops, cfg.runtime.device)
    return best, table, ff


def measure_sample(d, works: list[float], seed: int):
    """The train+val images candidates are measured on: all of them when measuring every candidate on all costs at
    most MEASURE_SHARE_OF_RUN of the cheapest one's full extraction, else a seeded subsample of that size (at least
    MIN_SAMPLE). `works`: each measurement's forward work per image. EuroSAT's 850 train+val at 64/128 px x 3
    backbones + the stages variant: ~21x lite0 at 64 px per image, so 0.5 x 850 / 21 = 20 -> MIN_SAMPLE images."""
    n = sum(len(d.splits[s]) for s in ("train", "val"))
    m = max(MIN_SAMPLE, int(MEASURE_SHARE_OF_RUN * n * min(works) / max(sum(works), 1e-12)))
    if m >= n:
        return d
    share = len(d.splits["train"]) / n
    return _subset(d, seed, (round(m * share), m - round(m * share)))


def with_candidate(cfg: RunConfig, c) -> RunConfig:
    """The run's config with the backbone and input size of `c` (a Candidate, or the Advice `fit` trains with): the
    cache key of the candidate's features is `fit`'s."""
    epochs = getattr(c, "epochs", None)  # the Advice of a cheaper fine-tune (gain.py): fewer epochs than asked
    return dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, backbone=c.backbone, features=getattr(c, "features", cfg.model.features)),
        data=dataclasses.replace(cfg.data, image_size=c.image_size),
        train=dataclasses.replace(cfg.train, epochs=epochs) if epochs else cfg.train,
    )


def _subset(d, seed: int, caps: tuple[int, int] = PROBE_CAP):
    """Data with at most `caps` train/val images (a seeded choice); the data itself when it is smaller."""
    rng = np.random.default_rng(seed)
    splits = dict(d.splits)
    for split, cap in zip(("train", "val"), caps):
        if len(splits[split]) > cap:
            keep = np.sort(rng.choice(len(splits[split]), cap, replace=False))
            splits[split] = [splits[split][i] for i in keep]
    return d if splits == d.splits else dataclasses.replace(d, splits=splits, decoded={}, skipped={})


def cv_probe(ff, task: str, seed: int, standardise: bool = False) -> tuple[float, float | None, int]:
    """(mean score, standard deviation over folds or None, folds; 0 folds = scored on val) of the task's ridge probe
    (probes.probe_for) on train+val features, in folds stratified by class. standardise: each feature to mean 0, std
    1 on the fold's training rows first (the ridge's one L2 then weighs every stage's features alike)."""
    from types import SimpleNamespace

    probe = probe_for(task) if not standardise else standardised(probe_for(task))
    x = np.concatenate([ff.train, ff.val])
    y = np.concatenate([ff.train_labels, ff.val_labels])
    if len(x) > CV_MAX_IMAGES:
        return probe(ff)[0], None, 0
    fold = _folds(y, task, CV_FOLDS, seed)
    scores = []
    for k in range(CV_FOLDS):
        held = fold == k
        if not held.any() or held.all():
            continue
        part = SimpleNamespace(train=x[~held], train_labels=y[~held], val=x[held], val_labels=y[held])
        scores.append(probe(part)[0])
    return float(np.mean(scores)), float(np.std(scores, ddof=1)) if len(scores) > 1 else None, len(scores)


def standardised(probe):
    """`probe` on features scaled to mean 0, std 1 per feature by the training rows' statistics."""
    from types import SimpleNamespace

    def run(ff):
        mean, std = ff.train.mean(0), ff.train.std(0) + 1e-6
        return probe(
            SimpleNamespace(
                train=(ff.train - mean) / std, train_labels=ff.train_labels, val=(ff.val - mean) / std,
                val_labels=ff.val_labels,
            )
        )  # fmt: skip

    return run


def _folds(y: np.ndarray, task: str, k: int, seed: int) -> np.ndarray:
    """Fold index per row, each stratum of the task (a class; a target decile; a row's first label) in proportion."""
    from ..data.folds import fold_indices
    from ..tasks import get_task

    return fold_indices(y, k, seed, strata=get_task(task).strata(y), strict=False)


def estimate_training(c: Candidate, strategy, cfg: RunConfig, n_train: int, n_val: int) -> float:
    """Seconds the strategy's loop phases are reckoned to take at most (every epoch; early stopping usually ends
    sooner): epochs x (train images x STEP_COST + val images) x the candidate's forward work / nominal throughput.
    Phases on cached features cost nothing here: their features are the ones measuring extracted."""
    loop_epochs = sum(p.epochs for p in strategy.phases(cfg.train.epochs, cfg.train.head_epochs) if not p.cached)
    return estimate_seconds(loop_epochs * (n_train * STEP_COST + n_val) * c.gflops, cfg.runtime.device)
