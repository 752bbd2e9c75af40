"""What to label next: rank unlabelled images (their features) for labelling, given the ones labelled so far.

    from transferkit.core.suggest import rank
    s = rank(pool_features, labelled_features, labels, n=20)        # strategy "auto"
    s.indices, s.scores, s.why, s.strategy                           # pool rows best first, and why each

A plain function on arrays (how the features were made is the caller's business: `suggest`, the labelling page and
benchmarks/suggest.py stand on it). Strategies are rows of STRATEGIES:

- random     the pool in a seeded random order (the baseline).
- margin     smallest gap between the two most probable classes of a head fitted on the labelled features (L-BFGS).
- entropy    highest entropy of the same head's probabilities.
- diversity  k-center greedy on L2-normalised features: each pick the image farthest from the labelled set and the
             picks so far (Sener & Savarese, 2018).
- typical    TypiClust (Hacohen et al., ICML 2022): k-means into L + n clusters; in the clusters that hold the fewest
             labelled images (the largest first), the most typical image: the highest inverse mean distance to its
             nearest neighbours. Dense, representative images: what a head with few labels learns most from.
- mix        margin then diversity: the 10 n most uncertain images, k-center greedy among them (cluster-margin-like),
             so a batch of uncertain picks does not ask the same question n times.
- cluster-margin  margin, one per region: the 10 n most uncertain images (at most a quarter of the pool) in n
             k-means clusters, the most uncertain of each (Zhdanov, 2019, "Diverse mini-batch active learning";
             Citovsky et al., 2021, cluster-margin), so a batch of 20 is not 20 near-identical images on one boundary.
- badge      BADGE (Ash et al., 2020): k-means++ seeding on the head's gradient embeddings (uncertain and unlike).
- auto       TCM (Doucet et al., 2024): typical while labels are few, margin once the head is decent. The switch:
             at least 5 labels per class on average and 20 in all (and two classes seen); see BENCHMARKS.md.

With no labels (a cold start) or a single class labelled, the uncertainty strategies have no head to ask: they fall
back to `typical` and `strategy` says so. Nothing here is quadratic in the pool: 50,000 x 1,280 features rank in
0.3-0.7 s of one core (typical 0.69, badge 0.64, mix 0.48, diversity 0.40, margin 0.30, cluster-margin 0.29;
measured on the 2 shared cores, which took 1.1-3 s of wall time beside other jobs), with at most ~90 MiB beside the
pool's 244 MiB: distances in blocks, k-means on a sample in a 64-dimensional projection for large pools.

`suggest_images(pool, labelled, model=...)` is the same on images: both sets through the feature store at one image
size, pool images that are in the labelled set left out (`transferkit suggest` and the labelling page call it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# auto: typical below 5 labels per class on average or 20 labels in all, margin from there. Measured (BENCHMARKS.md,
# "What to label next", rounds of 20, 5 seeds): typical for longer loses once a class has ~5 labels (the digits at
# 200 labels: switching at 10 a class -0.009, at 20 -0.031; EuroSAT at 20 a class -0.035); on the 2-class sets 5 per
# class is 10 labels, where margin's first round lost to typical's in an earlier run, hence the floor of 20 (chosen
# on the same sets: not an independent test).
AUTO_SWITCH_PER_CLASS = 5
AUTO_SWITCH_MIN = 20
MAX_CLUSTERS = 500  # TypiClust caps its k-means at 500 clusters: more only splits dense regions (and costs time)
MIN_CLUSTER = 5  # clusters smaller than this are outliers, not regions: picked from last (TypiClust's rule)
TYPICAL_NEIGHBOURS = 20  # typicality = 1 / mean distance to the 20 nearest neighbours in the cluster (the paper's k)
MIX_CANDIDATES = 10  # mix: k-center greedy among the 10 n most uncertain images
CLUSTER_CANDIDATES = 10  # cluster-margin: the 10 n most uncertain images in n k-means clusters (Zhdanov's beta = 10)
# ... but at most a quarter of the pool: with more, the candidates are the pool and cluster-margin is k-means diversity
# (cat/non-cat, 30 picks from 189 with 300 candidates: 0.896 at 50 labels against margin's 0.964)
CLUSTER_POOL_SHARE = 4
# past the switch: margin. cluster-margin there (benchmark row auto:5/20:cluster-margin) was no better, same seeds:
# EuroSAT at 100 labels +0.010 ± 0.014, cat/non-cat at 50 -0.016 ± 0.011, ants/bees -0.007 (BENCHMARKS.md)
AUTO_AFTER = "margin"
PROJECT_DIMS = 64  # large pools cluster in a 64-d PCA projection (the ordering of distances barely moves)
PROJECT_ABOVE = 5_000  # ... from this many pool images up; smaller pools use the features as they are
KMEANS_SAMPLE = 20_000  # k-means fits its centres on at most this many rows, then assigns every row once
TYPICAL_SAMPLE = 1_000  # a large cluster's typicality: 1,000 candidates against 1,000 members (4 MB of distances)
CHUNK = 8_192  # rows per distance block: memory stays flat (8,192 x 500 floats = 16 MB)


@dataclass
class Suggestion:
    indices: np.ndarray  # (n,) pool rows, best first
    scores: np.ndarray  # (n,) the strategy's score of each pick (higher: asked first)
    why: list[str]  # one short reason per pick
    strategy: str  # the strategy that ranked (auto and the fallbacks name the one used)
    note: str = ""  # why that strategy (auto's switch, a cold start)
    extra: dict = field(default_factory=dict)


def rank(
    pool: np.ndarray,
    labelled: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    *,
    strategy: str = "auto",
    n: int = 20,
    seed: int = 0,
    num_classes: int | None = None,
    classes: list[str] | None = None,
    probabilities: np.ndarray | None = None,
    standardise: bool = False,
) -> Suggestion:
    """The n pool rows to label next, best first. pool (P, F) and labelled (L, F) features of the same backbone;
    labels (L,) class indices; num_classes: the classes' count where some have no label yet; classes: their names,
    for the reasons; probabilities (P, K): a trained model's answers for the pool, which the uncertainty strategies
    then use instead of fitting a head on the labels; standardise: the head fitted on the labels standardises each
    feature first (features from every depth, as `train` fits them: core/heads.py HeadSettings.standardise)."""
    from ..errors import ConfigError, unknown_choice

    if strategy not in STRATEGIES:
        raise unknown_choice("--strategy", strategy, STRATEGIES)
    pool = np.asarray(pool, dtype=np.float32)
    if pool.ndim != 2:
        raise ConfigError(f"rank: pool features must be (images, features), got shape {pool.shape}.")
    labelled = np.zeros((0, pool.shape[1]), np.float32) if labelled is None else np.asarray(labelled, np.float32)
    labels = np.zeros(0, np.int64) if labels is None else np.asarray(labels).astype(np.int64)
    if len(labelled) != len(labels):
        raise ConfigError(f"rank: {len(labelled)} labelled feature rows but {len(labels)} labels.")
    if len(labelled) and labelled.shape[1] != pool.shape[1]:
        raise ConfigError(
            f"rank: pool features have {pool.shape[1]} columns, labelled {labelled.shape[1]}: embed both with the "
            "same backbone."
        )
    n = max(0, min(int(n), len(pool)))
    if n == 0:
        return Suggestion(np.zeros(0, np.int64), np.zeros(0, np.float32), [], strategy, "nothing to rank")
    k = max(int(num_classes or 0), int(labels.max()) + 1 if len(labels) else 0)
    if probabilities is not None:
        probabilities = np.asarray(probabilities, np.float32)
        k = max(k, probabilities.shape[1])
    ctx = Context(
        pool, labelled, labels, n, seed, k, classes or [f"class {i}" for i in range(k)], probabilities, standardise
    )
    name, note = strategy, ""
    if name == "auto" and probabilities is not None:
        name, note = AUTO_AFTER, f"auto: a trained model answers: {AUTO_AFTER}"
    elif name == "auto":
        name, note = auto_choice(labels, k)
    if STRATEGIES[name].needs_head and probabilities is None and len(np.unique(labels)) < 2:
        note = f"{name} needs a head on two classes at least; {len(labels)} labels so far: cold start with typical"
        name = "typical"
    from threadpoolctl import threadpool_limits  # scikit-learn's dependency

    # one BLAS thread: beside another busy process, a multi-threaded QR of 5,000 x 80 took 5 s instead of 0.08 s
    with threadpool_limits(limits=1, user_api="blas"):
        idx, scores, why = STRATEGIES[name].pick(ctx)
    return Suggestion(np.asarray(idx, np.int64), np.asarray(scores, np.float32), why, name, note)


def auto_choice(labels: np.ndarray, num_classes: int) -> tuple[str, str]:
    """TCM's switch: ('typical' | 'margin', why)."""
    seen = len(np.unique(labels))
    per_class = len(labels) / max(num_classes, 1)
    said = f"auto: {len(labels)} labels, {per_class:.1f} per class"
    rule = f"{AUTO_SWITCH_PER_CLASS} per class and {AUTO_SWITCH_MIN} in all"
    if seen >= 2 and per_class >= AUTO_SWITCH_PER_CLASS and len(labels) >= AUTO_SWITCH_MIN:
        return AUTO_AFTER, f"{said} (at least {rule}): {AUTO_AFTER}"
    return "typical", f"{said} (fewer than {rule}): typical"


@dataclass
class Context:
    pool: np.ndarray
    labelled: np.ndarray
    labels: np.ndarray
    n: int
    seed: int
    num_classes: int
    classes: list[str]
    probabilities: np.ndarray | None = None
    standardise: bool = False  # the head on the labels standardises each feature (multi-depth features)


# ---- uncertainty ----------------------------------------------------------------------------------------------
def fit_on_labels(
    x: np.ndarray, y: np.ndarray, num_classes: int, seed: int = 0, head: str = "linear", standardise: bool = False
):
    """The head the uncertainty strategies ask (and the benchmark scores): L-BFGS logistic regression (or the
    prototypes head), K outputs even for classes without a label yet. With 3 labels or more in every class seen, the
    L2 is chosen on a 15% holdout and the head then refitted on all the labels at it; with fewer, a holdout would
    leave classes without a training row, so the L2 (the temperature) is chosen on the training rows.
    standardise: each feature to mean 0, std 1 on the labelled rows first (on for `stages` features, as `train`)."""
    from ..backbones.heads import build_head
    from .heads import fit_head

    counts = np.bincount(y, minlength=num_classes)
    val = None if counts[counts > 0].min() >= 3 else (x, y)
    module = build_head(head, x.shape[1], num_classes)
    fitted = fit_head(
        x, y, "classification", val=val, solver="lbfgs", module=module, seed=seed, standardise=standardise
    )
    if val is None and fitted.solver == "lbfgs":
        _refit_on_all(fitted, x, y, standardise)
    return fitted


def _refit_on_all(fitted, x: np.ndarray, y: np.ndarray, standardise: bool) -> None:
    """The logistic head again on every labelled row at the L2 its 15% holdout chose (scikit-learn's
    LogisticRegressionCV refits so too): with 100 labels the holdout kept 15 of them out of the weights."""
    import torch

    from .heads import feature_scaling, fold_scaling, one_thread
    from .solvers import fit_logistic

    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y).long()
    scaling = feature_scaling(xt) if standardise else None
    if scaling is not None:
        xt = (xt - scaling[0]) / scaling[1]
    with one_thread():
        fit_logistic(fitted.module, (xt, yt), (xt, yt), l2_grid=(fitted.results["lbfgs"]["l2"],))
    if scaling is not None:
        fold_scaling(fitted.module, *scaling)
    fitted.module.eval()


def pool_probabilities(ctx: Context) -> np.ndarray:
    """(P, K) class probabilities: the caller's (a trained model's), else a head fitted on the labelled features."""
    if ctx.probabilities is not None:
        return ctx.probabilities
    fitted = fit_on_labels(ctx.labelled, ctx.labels, ctx.num_classes, ctx.seed, standardise=ctx.standardise)
    return np.concatenate([fitted.predict(ctx.pool[i : i + CHUNK]) for i in range(0, len(ctx.pool), CHUNK)])


def _top2(ctx: Context, p: np.ndarray, rows: np.ndarray) -> list[str]:
    order = np.argsort(-p[rows], axis=1)[:, :2]
    return [
        f"unsure: {ctx.classes[a]} {p[r, a]:.2f} vs {ctx.classes[b]} {p[r, b]:.2f}" for r, (a, b) in zip(rows, order)
    ]


def margin_pick(ctx: Context):
    p = pool_probabilities(ctx)
    score = _margin(p)
    idx = np.argsort(-score, kind="stable")[: ctx.n]
    return idx, score[idx], _top2(ctx, p, idx)


def entropy_pick(ctx: Context):
    p = pool_probabilities(ctx)
    h = -(p * np.log(np.clip(p, 1e-12, 1))).sum(1) / np.log(max(p.shape[1], 2))  # 0..1
    idx = np.argsort(-h, kind="stable")[: ctx.n]
    return idx, h[idx], [f"entropy {h[i]:.2f}; " + w for i, w in zip(idx, _top2(ctx, p, idx))]


def random_pick(ctx: Context):
    idx = np.random.default_rng(ctx.seed).permutation(len(ctx.pool))[: ctx.n]
    return idx, np.zeros(len(idx), np.float32), ["random order"] * len(idx)


# ---- diversity ------------------------------------------------------------------------------------------------
def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.sqrt(np.einsum("ij,ij->i", x, x)), 1e-12)[:, None]


def min_distance(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Each row's smallest Euclidean distance to `centres` (rows of unit length), in blocks."""
    out = np.full(len(x), np.inf, np.float32)
    if not len(centres):
        return out
    for i in range(0, len(x), CHUNK):
        d2 = 2.0 - 2.0 * (x[i : i + CHUNK] @ centres.T)
        out[i : i + CHUNK] = np.sqrt(np.clip(d2.min(1), 0, None))
    return out


def k_center(x: np.ndarray, centres: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """k-center greedy: n rows of x, each the farthest from `centres` and the picks before it; (rows, distances).
    With no centres the first pick is the row nearest the mean (the most central image, not an outlier)."""
    dist = min_distance(x, centres)
    picks, gaps = [], []
    if not len(centres):
        first = int(np.argmax(x @ normalise(x.mean(0, keepdims=True))[0]))
        picks.append(first), gaps.append(0.0)
        dist = np.minimum(dist, np.sqrt(np.clip(2.0 - 2.0 * x @ x[first], 0, None)))
    while len(picks) < n:
        i = int(np.argmax(dist))
        picks.append(i), gaps.append(float(dist[i]))
        dist = np.minimum(dist, np.sqrt(np.clip(2.0 - 2.0 * x @ x[i], 0, None)))
    return np.array(picks, np.int64), np.array(gaps, np.float32)


def diversity_pick(ctx: Context):
    x, c = space(ctx.pool, ctx.labelled, ctx.seed)
    idx, gaps = k_center(x, c, ctx.n)
    why = [f"far from the labelled and earlier picks (distance {g:.2f})" for g in gaps]
    if not len(c):
        why[0] = "the most central image (no labels yet)"
    return idx, gaps, why


def mix_pick(ctx: Context):
    p = pool_probabilities(ctx)
    unsure = _margin(p)
    cand = np.argsort(-unsure, kind="stable")[: max(ctx.n, MIX_CANDIDATES * ctx.n)]
    x, c = space(ctx.pool, ctx.labelled, ctx.seed)
    rows, gaps = k_center(x[cand], c, ctx.n)
    idx = cand[rows]
    why = [f"{w}; distance {g:.2f} from the labelled" for w, g in zip(_top2(ctx, p, idx), gaps)]
    return idx, unsure[idx], why


def cluster_margin_pick(ctx: Context):
    """The CLUSTER_CANDIDATES n most uncertain images (margin; at most a quarter of the pool) in n k-means clusters
    on L2-normalised features; each cluster's most uncertain image, the most uncertain cluster first (past
    MAX_CLUSTERS clusters: round robin). Plain margin's batch is the n images nearest one stretch of one boundary,
    which the first of them mostly settles."""
    p = pool_probabilities(ctx)
    unsure = _margin(p)
    many = max(ctx.n, min(CLUSTER_CANDIDATES * ctx.n, len(ctx.pool) // CLUSTER_POOL_SHARE))
    cand = np.argsort(-unsure, kind="stable")[:many]
    k = min(ctx.n, MAX_CLUSTERS, len(cand))
    x, _ = space(ctx.pool[cand], ctx.pool[:0], ctx.seed)  # candidates only: 200 rows for n = 20
    cluster = kmeans(x, k, ctx.seed)
    # rank within each cluster by uncertainty (cand is sorted, so a stable sort by cluster keeps that order), then
    # take the first of every cluster, then the second, ...: `turn` is a row's place within its cluster
    order = np.argsort(cluster, kind="stable")
    turn = np.empty(len(cand), np.int64)
    starts = np.searchsorted(cluster[order], np.arange(k))
    turn[order] = np.arange(len(cand)) - starts[cluster[order]]
    rows = np.lexsort((np.arange(len(cand)), turn))[: ctx.n]
    idx = cand[rows]
    size = np.bincount(cluster, minlength=k)
    why = [f"{w}; the most uncertain of {size[cluster[r]]} similar" if turn[r] == 0 else f"{w}; round {turn[r] + 1}"
           for w, r in zip(_top2(ctx, p, idx), rows)]  # fmt: skip
    return idx, unsure[idx], why


def badge_pick(ctx: Context):
    """BADGE (Ash et al., ICLR 2020): k-means++ seeding on the gradient embeddings g = (p - onehot(argmax p)) x, the
    last layer's loss gradient were the head's guess the label: long for uncertain images, pointing apart for unlike
    ones. Never built (P x K x F floats): |g_i - g_j|^2 = |a_i|^2 |x_i|^2 + |a_j|^2 |x_j|^2 - 2 (a_i . a_j)(x_i . x_j)
    with a = p - onehot, so each pick costs P x (K + F)."""
    p = pool_probabilities(ctx)
    x, _ = space(ctx.pool, ctx.pool[:0], ctx.seed)  # unit rows: |x_i|^2 = 1
    a = p.astype(np.float32).copy()
    a[np.arange(len(a)), a.argmax(1)] -= 1.0
    sq = np.einsum("ij,ij->i", a, a)  # |g_i|^2
    rng = np.random.default_rng(ctx.seed)
    first = int(np.argmax(sq))  # BADGE's first pick: the longest gradient
    picks, d2 = [first], np.maximum(sq + sq[first] - 2 * (a @ a[first]) * (x @ x[first]), 0)
    while len(picks) < ctx.n:
        d2[picks] = 0
        i = int(rng.choice(len(d2), p=d2 / d2.sum())) if d2.sum() > 0 else int(rng.choice(np.flatnonzero(d2 == 0)))
        picks.append(i)
        d2 = np.minimum(d2, np.maximum(sq + sq[i] - 2 * (a @ a[i]) * (x @ x[i]), 0))
    idx = np.array(picks, np.int64)
    return idx, np.sqrt(sq[idx]), [f"{w}; unlike the other picks" for w in _top2(ctx, p, idx)]


def _margin(p: np.ndarray) -> np.ndarray:
    top = np.sort(p, axis=1)[:, -2:]
    return 1.0 - (top[:, 1] - top[:, 0])  # 1: a coin toss between two classes; 0: sure


# ---- typicality (TypiClust) -----------------------------------------------------------------------------------
def space(x: np.ndarray, other: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Both sets L2-normalised, and for large pools in the pool's top PROJECT_DIMS principal directions (randomised
    PCA on a sample, re-normalised), so distances cost P x 64 instead of P x 1,280. The pool is never copied at full
    width: its norms divide the projection (50,000 x 1,280 floats are 256 MB)."""
    if len(x) < PROJECT_ABOVE or x.shape[1] <= PROJECT_DIMS:
        return normalise(x), normalise(other)
    norms = np.maximum(np.sqrt(np.einsum("ij,ij->i", x, x)), 1e-12)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(x), min(len(x), 5_000), replace=False))
    sample = x[pick] / norms[pick, None]
    mean = sample.mean(0)
    centred = sample - mean
    q, _ = np.linalg.qr(centred @ rng.standard_normal((x.shape[1], PROJECT_DIMS + 16)).astype(np.float32))
    _, _, vt = np.linalg.svd(q.T @ centred, full_matrices=False)
    basis = vt[:PROJECT_DIMS].T.astype(np.float32)
    shift = mean @ basis  # (x / |x| - mean) @ basis, without a normalised or centred copy of the pool
    px = np.concatenate([(x[i : i + CHUNK] @ basis) / norms[i : i + CHUNK, None] for i in range(0, len(x), CHUNK)])
    return normalise(px - shift), normalise(normalise(other) @ basis - shift) if len(other) else other[:, :0]


def kmeans(x: np.ndarray, k: int, seed: int, iterations: int = 25) -> np.ndarray:
    """Cluster of each row: k-means++ then Lloyd on a sample of at most KMEANS_SAMPLE rows, every row assigned."""
    rng = np.random.default_rng(seed)
    fit = x if len(x) <= KMEANS_SAMPLE else x[rng.choice(len(x), KMEANS_SAMPLE, replace=False)]
    sq = (fit * fit).sum(1)
    centres = [fit[rng.integers(len(fit))]]
    d2 = np.maximum(sq - 2 * fit @ centres[0] + centres[0] @ centres[0], 0)
    for _ in range(1, k):  # k-means++: the next centre drawn in proportion to the squared distance
        i = rng.choice(len(fit), p=d2 / d2.sum()) if d2.sum() > 0 else rng.integers(len(fit))
        centres.append(fit[i])
        d2 = np.minimum(d2, np.maximum(sq - 2 * fit @ fit[i] + fit[i] @ fit[i], 0))
    c = np.stack(centres)
    for _ in range(iterations):
        a = assign(fit, c)
        order = np.argsort(a, kind="stable")
        counts = np.bincount(a, minlength=k)
        new = np.zeros_like(c)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        new[counts > 0] = np.add.reduceat(fit[order], starts[counts > 0])  # each cluster's sum (np.add.at is slow)
        moved = counts > 0
        new[moved] /= counts[moved, None]
        new[~moved] = c[~moved]
        if np.allclose(new, c, atol=1e-6):
            break
        c = new
    return assign(x, c)


def assign(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    csq = (c * c).sum(1)
    return np.concatenate([np.argmin(csq - 2 * x[i : i + CHUNK] @ c.T, 1) for i in range(0, len(x), CHUNK)])


def typicality(x: np.ndarray, k: int = TYPICAL_NEIGHBOURS) -> np.ndarray:
    """1 / mean distance to the k nearest other rows (TypiClust's density)."""
    if len(x) < 2:
        return np.ones(len(x), np.float32)
    k = min(k, len(x) - 1)
    sq = (x * x).sum(1)
    d = np.sqrt(np.maximum(sq[:, None] - 2 * x @ x.T + sq[None, :], 0))
    np.fill_diagonal(d, np.inf)
    near = np.partition(d, k - 1, axis=1)[:, :k]
    return 1.0 / (near.mean(1) + 1e-8)


def typical_pick(ctx: Context):
    x, c = space(ctx.pool, ctx.labelled, ctx.seed)
    both = np.concatenate([x, c]) if len(c) else x
    k = max(1, min(len(ctx.labelled) + ctx.n, MAX_CLUSTERS, len(both)))
    cluster = kmeans(both, k, ctx.seed)
    size = np.bincount(cluster, minlength=k)
    labelled = np.bincount(cluster[len(x) :], minlength=k)  # labelled images per cluster
    covered = labelled.copy()  # and those picked in this batch: the next pick goes where the fewest are
    rng = np.random.default_rng(ctx.seed)
    members = [np.flatnonzero(cluster[: len(x)] == j) for j in range(k)]
    taken = np.zeros(len(x), bool)
    idx, scores, why = [], [], []
    while len(idx) < ctx.n:
        # regions of at least MIN_CLUSTER images first (smaller ones are outliers), then the fewest labelled, the largest
        open_ = [j for j in range(k) if (~taken[members[j]]).any()]
        j = min(open_, key=lambda j: (size[j] < MIN_CLUSTER, covered[j], -size[j]))
        rows = members[j][~taken[members[j]]]
        if len(rows) > TYPICAL_SAMPLE:  # a large cluster: its most typical image is in any large sample of it
            rows = rng.choice(rows, TYPICAL_SAMPLE, replace=False)
        ref = members[j] if len(members[j]) <= TYPICAL_SAMPLE else rng.choice(members[j], TYPICAL_SAMPLE, replace=False)
        t = _typicality_of(x[rows], x[ref])
        best = rows[int(np.argmax(t))]
        taken[best] = True
        covered[j] += 1
        idx.append(best), scores.append(float(t.max()))
        n = int(size[j])  # "a region of 1 image", "of 12 images"
        before = int(covered[j] - 1 - labelled[j])  # picked earlier in this batch: not labelled yet
        why.append(
            f"typical of a region of {n} image{'s' * (n != 1)} with {labelled[j]} labelled"
            + (f" and {before} picked before it" if before else "")
        )
    return np.array(idx), np.array(scores, np.float32), why


def _typicality_of(rows: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Typicality of each of `rows` among `ref` (the cluster, or a sample of it; a row in `ref` is its own nearest
    neighbour at distance 0, left out)."""
    k = min(TYPICAL_NEIGHBOURS, max(len(ref) - 1, 1))
    sq_r, sq_f = (rows * rows).sum(1), (ref * ref).sum(1)
    d = np.sqrt(np.maximum(sq_r[:, None] - 2 * rows @ ref.T + sq_f[None, :], 0))
    near = np.partition(d, min(k, d.shape[1] - 1), axis=1)[:, : k + 1]  # includes the row itself (distance 0)
    return 1.0 / (np.sort(near, axis=1)[:, 1:].mean(1) + 1e-8) if near.shape[1] > 1 else np.ones(len(rows))


# ---- images in, picks out (what `transferkit suggest` and the page call) ------------------------------------------
# ---- which features: --features auto -------------------------------------------------------------------------------
# auto = `stages` below a 100 px median short side, else `last`. Tiny images are far from ImageNet's photos, where
# features from every depth (read at 3x the side: depth.input_side) won on all three sets measured (`train --strategy
# linear`, 5 splits, BENCHMARKS.md "Features from every depth"): EuroSAT 64 px tiles 87.3 -> 96.0, digits 8 px
# 94.4 -> 98.9, cat/non-cat 64 px 92.8 -> 99.6; on photos the last layer won (ants/bees, ~300 px and more: 94.6 vs
# 92.5 for stages). 100 px sits between the two kinds measured; nothing between 64 and ~300 px was.
TINY_SIDE = 100


def auto_features(median_side: float, features: str = "auto") -> str:
    """The features `suggest` and `label` embed with: `features` as given, or for auto `stages` when the pool's median
    short side is under TINY_SIDE px (tiny images), else `last` (photos)."""
    from ..backbones.depth import FEATURES
    from ..errors import unknown_choice

    if features == "auto":
        return "stages" if median_side < TINY_SIDE else "last"
    if features not in FEATURES:
        raise unknown_choice("--features", features, ("auto", *FEATURES))
    return features


def pool_settings(images, backbone: str, features: str = "auto", image_size: int | None = None) -> tuple[str, int]:
    """(features, input size) for a pool (an ImageSet): `auto_features` on its median short side, and the size that
    side gives as `train` chooses it (depth.input_side: 3x the side for multi-depth features, up to the backbone's)."""
    from ..backbones import create_backbone
    from ..backbones.depth import frozen_input_size
    from ..data.sizes import survey_sides
    from ..data.sources import Sample

    side = survey_sides(images, [Sample(k, 0) for k in images.keys])[0]
    features = auto_features(side, features)
    if image_size:
        return features, int(image_size)
    _, bcfg = create_backbone(backbone, pretrained=False, features=features)  # the cfg only: input size and depth
    return features, frozen_input_size(side, bcfg)


@dataclass
class Picks:
    keys: list[str]  # the images to label next, best first
    scores: list[float]
    why: list[str]
    strategy: str
    note: str
    pool: int  # images in POOL
    left_out: int  # ... of them labelled already (in --labelled), left out
    labelled: int  # labelled images used
    classes: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (key, why) unreadable pool images
    features: str = "last"  # what the pool was embedded with (--features, auto resolved)
    image_size: int = 0


def suggest_images(
    pool,
    labelled=None,
    *,
    model=None,
    strategy: str = "auto",
    n: int = 20,
    backbone: str | None = None,
    image_size: int | None = None,
    features: str = "auto",
    device: str = "auto",
    cache_dir: str | None = None,
    seed: int = 0,
    reporter=None,
) -> Picks:
    """The images of `pool` (a folder or list, labels not needed) to label next. labelled: a labelled folder or list
    (its images leave the pool; its labels train the head); model: a classification bundle whose backbone embeds and
    whose head answers. Both sets are embedded through the feature store at one image size, with `features`
    (auto: `auto_features` on the pool; with --model, `last`: what the bundle's pooled output is)."""
    from ..backbones.depth import standardises
    from ..config import DEFAULT_BACKBONE
    from ..data.imageset import ImageSet
    from ..data.sources import open_images, open_source
    from ..errors import DataError
    from ..tasks import get_task
    from .embed import embed

    images = open_images(pool)
    classes: list[str] = []
    lab_keys, lab_labels = [], []
    if model is not None:
        from ..bundle import read_meta

        meta = read_meta(model)
        if not get_task(meta.get("task", "classification")).class_logits:
            raise DataError(f"--model {model}: a {meta['task']} bundle; suggest asks a head that picks one class.")
        classes = list(meta["classes"])
        backbone = f"bundle:{model}"
        if features == "auto":  # the bundle's head answers on its backbone's pooled output (its last layer)
            features = "last"
    if labelled is not None:
        src = open_source(labelled)
        if not get_task(src.task).class_logits:
            raise DataError(f"--labelled {labelled}: {src.task} labels; suggest ranks for one class per image.")
        names = classes or list(src.classes)
        unknown = sorted(set(src.classes) - set(names))
        if unknown:
            raise DataError(
                f"--labelled {labelled} has classes the model does not know: {', '.join(unknown[:10])}. "
                f"The model's classes: {', '.join(names[:20])}."
            )
        classes = names
        for s in (s for v in src.splits.values() for s in v):
            lab_keys.append(s.key)
            lab_labels.append(names.index(src.classes[s.label]))
    # a pool image that is labelled already (the same file, by its resolved path) is not asked again
    known = {_real(k) for k in lab_keys}
    keep = [k for k in images.keys if _real(k) not in known]
    left_out = len(images) - len(keep)
    if not keep:
        raise DataError(
            f"Every one of the {len(images)} images of '{pool}' is in --labelled already: nothing left to suggest. "
            "Give a pool of unlabelled images."
        )
    pool_set = ImageSet(images.root, keep, images.arrays)
    features, size = pool_settings(pool_set, backbone or DEFAULT_BACKBONE, features, image_size)
    emb = embed(pool_set, backbone or DEFAULT_BACKBONE, image_size=size, features=features, device=device,
                cache_dir=cache_dir, reporter=reporter)  # fmt: skip
    x_lab = np.zeros((0, emb.features.shape[1]), np.float32)
    y_lab = np.zeros(0, np.int64)
    if lab_keys:
        lab = open_source(labelled).images()
        le = embed(lab, emb.backbone, image_size=emb.image_size, features=features, device=device, cache_dir=cache_dir,
                   reporter=reporter)  # fmt: skip
        row = dict(zip(lab_keys, lab_labels))
        x_lab, y_lab = le.features, np.array([row[k] for k in le.keys], np.int64)
    probs = None
    if model is not None:
        probs = _bundle_probabilities(model, emb.features)
    s = rank(emb.features, x_lab, y_lab, strategy=strategy, n=n, seed=seed, num_classes=len(classes) or None,
             classes=classes or None, probabilities=probs, standardise=standardises(features))  # fmt: skip
    return Picks(
        [emb.keys[i] for i in s.indices],
        [float(v) for v in s.scores],
        s.why,
        s.strategy,
        s.note,
        len(images),
        left_out,
        len(y_lab),
        classes,
        emb.skipped,
        features,
        emb.image_size,
    )


def _real(key: str) -> str:
    import os

    return key if "#" in key else os.path.realpath(key)


def _bundle_probabilities(model, features: np.ndarray) -> np.ndarray:
    """The bundle's head on pooled features of its own backbone: its class probabilities (with its temperature)."""
    import torch

    from ..backbones.modules import in_features
    from ..bundle import load_bundle
    from ..errors import DataError

    net, meta = load_bundle(model)
    if in_features(net.head) != features.shape[1]:  # a head on other features (e.g. --features stages)
        raise DataError(
            f"--model {model}: its head reads {in_features(net.head)} features, its backbone's pooled output has "
            f"{features.shape[1]}. Use --labelled with the images it was trained on instead."
        )
    with torch.no_grad():
        logits = net.head(torch.as_tensor(features)).double() / float(
            meta.get("calibration", {}).get("temperature", 1.0)
        )
    return torch.softmax(logits, 1).numpy()


@dataclass(frozen=True)
class Strategy:
    pick: Callable  # Context -> (pool rows, scores, reasons)
    needs_head: bool  # asks a head fitted on the labels: needs two classes labelled
    help: str


STRATEGIES: dict[str, Strategy] = {
    "auto": Strategy(None, False, f"typical while labels are few, then {AUTO_AFTER} (TCM)"),
    "random": Strategy(random_pick, False, "a seeded random order (the baseline)"),
    "margin": Strategy(margin_pick, True, "smallest gap between the two most probable classes"),
    "entropy": Strategy(entropy_pick, True, "most spread-out class probabilities"),
    "diversity": Strategy(diversity_pick, False, "k-center greedy: farthest from what is labelled"),
    "typical": Strategy(typical_pick, False, "TypiClust: the most typical image of each uncovered cluster"),
    "mix": Strategy(mix_pick, True, "margin, then k-center greedy among the most uncertain"),
    "badge": Strategy(badge_pick, True, "BADGE: k-means++ on the head's gradient embeddings"),
    "cluster-margin": Strategy(cluster_margin_pick, True, "margin, the most uncertain of each of n k-means clusters"),
}
