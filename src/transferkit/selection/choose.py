"""What `auto` measures before it picks a strategy: which backbone and which input size, by a cross-validated probe
on frozen features, within the run's time budget.

    chosen, table, ff = choose_candidate(data, cfg, reporter)   # ff: the chosen candidate's train/val features
    chosen.backbone, chosen.image_size, chosen.score             # 'efficientnet_lite1', 224, 0.962

Candidates: the backbones (`--backbones a,b,c`; by default the three built-in ones when `--backbone` is left as it
is, else that one alone) times the input sizes (`--image-size` when given; else the size that follows the data and,
for images smaller than the backbone's input, twice that, up to the backbone's size and at most 4x the images' own
side: upscaling further invents no detail). EuroSAT's 64 px tiles: 64 and 128 px; ants/bees photos: the backbone's
224-260 px alone; 8 px digits: 64 px alone.

Each candidate costs one forward pass over train and val (cached on disk under the key `linear` uses, so a `linear`
run that follows extracts nothing) and is scored by LogME's ridge probe, cross-validated over train+val in 5 folds
when they hold at most 2,000 images (one val split of 150 images measures an accuracy to +-5 points; five folds over
all 400 of ants/bees to about +-2), on val alone above that. The best mean wins; exact ties go to the one given
first (lite0 before lite1 before lite2).

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
# A training step (forward + backward + update) is reckoned at this many forward passes of the same batch: 87.9 img/s
# forward vs 23.5 img/s training for efficientnet_lite0 at 224 px on 2 cores (BENCHMARKS.md, "Jobs").
STEP_COST = 3.7
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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def backbone_names(cfg: RunConfig) -> list[str]:
    """The backbones `auto` chooses among: --backbones; else the built-in three when --backbone is the default."""
    from ..backbones import list_backbones
    from ..config import DEFAULT_BACKBONE

    if cfg.model.backbones:
        return comma_names(cfg.model.backbones)
    return list_backbones("builtin") if cfg.model.backbone == DEFAULT_BACKBONE else [cfg.model.backbone]


def input_sizes(cfg: RunConfig, median_side: float, native: int) -> list[int]:
    """--image-size; else the size that follows the data and, for smaller images, twice that (see the top)."""
    from ..data.sizes import choose_image_size

    if cfg.data.image_size:
        return [cfg.data.image_size]
    own = choose_image_size(median_side, native)
    up = min(native, 2 * own, 32 * math.floor(MAX_UPSCALE * median_side / 32))
    return [own] + ([up] if up > own else [])


def candidate_grid(cfg: RunConfig, median_side: float, built: dict) -> list[Candidate]:
    """Every (backbone, input size) pair with its forward work counted; `built`: name -> frozen.frozen_backbone."""
    return [
        Candidate(name, size, forward_gflops(b[0], size))
        for name, b in built.items()
        for size in input_sizes(cfg, median_side, b[1].input_size)
    ]


def choose_candidate(d, cfg: RunConfig, reporter=None, budget_seconds: float | None = None):
    """(the chosen Candidate, every Candidate, the chosen one's FrozenFeatures). One candidate: measured as before
    (its features feed the strategy rule), nothing to choose."""
    from .frozen import frozen_backbone, frozen_features

    budget = budget_seconds if budget_seconds is not None else cfg.train.budget * 60
    limit = budget * MEASURE_SHARE if budget else math.inf
    probed = _subset(d, cfg.train.seed)
    n = sum(len(probed.splits[s]) for s in ("train", "val"))
    built = {name: frozen_backbone(name, cfg) for name in backbone_names(cfg)}  # weights loaded once per backbone
    # Counted work, not timings: every process of a launched run, busy or quiet, gets the same table and choice
    table = candidate_grid(cfg, d.median_side, built)
    for c in table:
        c.estimate = estimate_seconds(n * c.gflops, cfg.runtime.device)
    given = {id(c): i for i, c in enumerate(table)}  # exact score ties go to the earlier in the given order
    table.sort(key=lambda c: c.gflops)  # least work first (stable): what the budget leaves out is the dearest
    spent, found = 0.0, {}  # spent: the estimates of the candidates measured so far
    for i, c in enumerate(table):
        if found and spent + c.estimate > limit:
            c.skipped = (
                f"--budget: ~{duration(c.estimate)} estimated, {duration(max(0.0, limit - spent))} left of the "
                f"{duration(limit)} for measuring (a third of {cfg.train.budget:g} min)"
            )
            continue
        start = time.perf_counter()
        ff = frozen_features(probed, c.backbone, with_candidate(cfg, c), reporter, built=built[c.backbone])
        c.score, c.spread, c.folds = cv_probe(ff, d.src.task, cfg.train.seed)
        c.seconds = time.perf_counter() - start  # shown in the table; the budget counts c.estimate
        spent += c.estimate
        found[i] = ff
    best = max(found, key=lambda i: (table[i].score, -given[id(table[i])]))
    table[best].chosen = True
    return table[best], table, found[best]


def with_candidate(cfg: RunConfig, c) -> RunConfig:
    """The run's config with the backbone and input size of `c` (a Candidate, or the Advice `fit` trains with): the
    cache key of the candidate's features is `fit`'s."""
    return dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, backbone=c.backbone),
        data=dataclasses.replace(cfg.data, image_size=c.image_size),
    )


def _subset(d, seed: int):
    """Data with at most PROBE_CAP train/val images (a seeded choice); the data itself when it is smaller."""
    rng = np.random.default_rng(seed)
    splits = dict(d.splits)
    for split, cap in zip(("train", "val"), PROBE_CAP):
        if len(splits[split]) > cap:
            keep = np.sort(rng.choice(len(splits[split]), cap, replace=False))
            splits[split] = [splits[split][i] for i in keep]
    return d if splits == d.splits else dataclasses.replace(d, splits=splits, decoded={}, skipped={})


def cv_probe(ff, task: str, seed: int) -> tuple[float, float | None, int]:
    """(mean score, standard deviation over folds or None, folds; 0 folds = scored on val) of the task's ridge probe
    (probes.probe_for) on train+val features, in folds stratified by class."""
    from types import SimpleNamespace

    probe = probe_for(task)
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


def _folds(y: np.ndarray, task: str, k: int, seed: int) -> np.ndarray:
    """Fold index per row: each stratum of the task (a class; a target decile; a row's first label) dealt
    round-robin over the folds in a seeded order, so every fold holds its share of each."""
    from ..tasks import get_task

    rng = np.random.default_rng(seed)
    strata = get_task(task).strata(y)
    fold = np.empty(len(y), dtype=int)
    start = 0
    for s in np.unique(strata):
        rows = rng.permutation(np.flatnonzero(strata == s))
        fold[rows] = (start + np.arange(len(rows))) % k  # continue the deal where the last class ended
        start += len(rows)
    return fold


def estimate_training(c: Candidate, strategy, cfg: RunConfig, n_train: int, n_val: int) -> float:
    """Seconds the strategy's loop phases are reckoned to take at most (every epoch; early stopping usually ends
    sooner): epochs x (train images x STEP_COST + val images) x the candidate's forward work / nominal throughput.
    Phases on cached features cost nothing here: their features are the ones measuring extracted."""
    loop_epochs = sum(p.epochs for p in strategy.phases(cfg.train.epochs, cfg.train.head_epochs) if not p.cached)
    return estimate_seconds(loop_epochs * (n_train * STEP_COST + n_val) * c.gflops, cfg.runtime.device)
