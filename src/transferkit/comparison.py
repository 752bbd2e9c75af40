"""Compare strategies (and backbones) side by side: every combination trained on repeated splits, the
mean of the task's score (accuracy, R², mAP) with its 95% interval per row, and a paired test of whether the
winner's lead is more than noise.

    result = transferkit.compare("data/eurosat", strategies=["linear", "two-phase", "finetune"], seeds=5)
    result.winner, result.verdict           # 'two-phase @ efficientnet_lite0', 'wins by 1.3 points; p = 0.04 ...'
    result.rows[0].low, result.rows[0].high # the 95% interval of the winner's mean over the 5 repeats
    print_comparison(result)                # the table `transferkit compare` prints; result.chart is the PNG

One test split of 150 images measures an accuracy to about ±5 points, more than strategies usually differ by, so
every row is repeated. Data that is not pre-split is split again for each seed (seed i: a seeded stratified
train/val/test split), so a row's spread includes which images happened to be in the test split; pre-split data keeps
its own split and repeats the training seed (initialisation, augmentation, batch order; val carved from train again
where the data has no val part). Within seed i every row gets the same split, so seed i of one row is paired with
seed i of another. With one seed the rows of a classification are paired image by image instead (McNemar's test on
the shared test split; a score that is not a share of right images has no such test). Frozen strategies on the
same backbone share the feature store, so linear and two-phase extract each image once for all seeds; a `linear` row
is no run at all: a head fitted on the stored features of this seed's rows (`_head_row`), seconds instead of a run.
"""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .config import RunConfig, comma_names
from .errors import ConfigError
from .tasks import DEFAULT

SIGNIFICANCE = 0.05  # two-sided p-value of the paired test below which a lead counts as real


@dataclass
class CompareRun:
    strategy: str  # as asked for ("auto" stays "auto"; `resolved` says what it chose)
    resolved: str  # the strategy that trained, e.g. auto -> "freeze:2"
    backbone: str
    seed: int
    score: float  # the task's (accuracy, R², mAP) on the test split, or on val when the data has none (`split`)
    split: str  # test | val
    seconds: float  # wall time of the whole fit (decoding, features, training, evaluation), or of a head row's work
    path: str  # the run directory
    n: int = 0  # images the score is measured on


@dataclass
class CompareRow:
    strategy: str  # as asked for, with what auto resolved to: "auto (freeze:2)"
    backbone: str
    scores: list[float]  # one per seed, in seed order (the pairing)
    mean: float
    std: float  # sample standard deviation over seeds; 0 with one seed
    seconds: float  # mean wall time per run
    p_vs_best: float | None  # paired test against the winner (t-test over seeds; one seed: McNemar); None: winner
    wins_vs_best: str  # "2/3": seeds on which this row beat the winner (ties count half)
    # 95% interval of the mean: Student's t over the repeats; with one repeat of an accuracy, Wilson's on its images
    low: float = float("nan")
    high: float = float("nan")

    @property
    def label(self) -> str:
        return f"{self.strategy} @ {self.backbone}"

    @property
    def half(self) -> float:
        """Half the interval's width (0 when unknown), the '±' people read."""
        half = (self.high - self.low) / 2
        return half if math.isfinite(half) else 0.0


@dataclass
class Comparison:
    rows: list[CompareRow]  # best mean score first (ties: faster)
    runs: list[CompareRun]
    seeds: list[int]
    winner: str  # label of the first row
    significant: bool | None  # the winner beats the runner-up at p < SIGNIFICANCE; None: not testable (one seed/row)
    verdict: str  # one sentence: who won, by how much, and whether that is more than seed noise
    chart: str | None = None  # bar chart PNG
    folder: str | None = None  # where the runs, compare.json and the chart are
    split_sizes: dict[str, int] = field(default_factory=dict)  # images per split (seed 0's; re-splits match it)
    resplit: bool = False  # True: each seed split the data anew; False: the data's own split, seeds retrain
    task: str = DEFAULT  # what was trained: its score is what the rows hold
    score: str = "accuracy"  # the task's score that rows hold (a key of the runs' metrics: accuracy, r2, map)
    score_label: str = "accuracy"  # the same for people (accuracy, R², mAP)

    def to_dict(self) -> dict:
        return asdict(self)


def compare(
    data,
    strategies=("linear", "two-phase", "finetune"),
    backbones=None,
    seeds=3,
    out: str = "runs",
    name: str | None = None,
    config: RunConfig | None = None,
    reporter=None,
    **overrides,
) -> Comparison:
    """Train every strategy x backbone for each seed. `seeds`: a count (0..n-1) or a list. Keyword arguments set
    config fields as in `fit` (epochs, image_size, lr, ...). Runs land in out/<name>/<strategy>-<backbone>-s<seed>
    (e.g. freeze-2-efficientnet_lite0-s0)."""
    import copy
    import dataclasses

    from .api import fit
    from .backbones import check_backbone_name
    from .data.sources import DataSource, open_source
    from .data.split import make_splits
    from .engine.runtime import refuse_multiprocess
    from .evaluation.plots import plot_comparison
    from .options import apply_overrides, validate
    from .progress import make_reporter
    from .rundir import RunDir
    from .strategies import parse_strategy
    from .tasks import get_task

    refuse_multiprocess("compare", "many short runs, one after another; launch `transferkit train` for one long run")
    cfg = apply_overrides(config or RunConfig(), dict(overrides))
    validate(cfg, comma_names(backbones))  # --arch may be a file: row's (each such row alone is given it)
    task = get_task(cfg.train.task)  # rows are of its score: accuracy, R², mAP
    strategies = comma_names(strategies)
    # Backbones given: each row keeps its own (`auto` chooses the strategy and input size only); not given: an
    # `auto` row chooses the backbone too, as `train` would
    pinned = bool(comma_names(backbones))
    backbones = comma_names(backbones) or [cfg.model.backbone]
    seeds = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not strategies or not seeds:
        raise ConfigError(
            "compare needs at least one strategy and one seed, e.g. --strategies linear,finetune --seeds 3."
        )
    for what, items in (("--strategies", strategies), ("--backbones", backbones), ("--seeds", seeds)):
        twice = sorted({str(i) for i in items if items.count(i) > 1})
        if twice:  # the same run twice pools into one row: a 95% interval of width 0 from a single measurement
            raise ConfigError(f"{what} names {', '.join(twice)} more than once: give each once.")
    for s in strategies:
        parse_strategy(s)  # typos fail before the first of many runs
        # and each row's options (two-phase --epochs 1)
        validate(apply_overrides(copy.deepcopy(cfg), {"strategy": s}), comma_names(backbones))
    for b in backbones:
        check_backbone_name(b)
    reporter = reporter or make_reporter(cfg.quiet)

    src = (
        data
        if isinstance(data, DataSource)
        else open_source(data, cfg.data.layout, task=task.name, **cfg.data.source_options())
    )
    resplit = "all" in src.splits  # not pre-split: every seed draws its own split
    folder = RunDir.create(out, name or f"compare-{Path(str(src.root)).name or 'data'}").path
    total = len(strategies) * len(backbones) * len(seeds)
    first = make_splits(src, cfg.data.split, seeds[0])
    how = "a seeded re-split per seed" if resplit else "the data's own split, training seeds repeated"
    reporter.message(
        f"Comparing {total} runs ({len(strategies)} strategies x {len(backbones)} backbones x "
        f"{len(seeds)} seeds) on {how}: " + ", ".join(f"{k} {len(v)}" for k, v in first.items())
    )
    runs = []
    embedded: dict = {}  # (backbone, size) -> the features of every image: one embedding serves every seed's rows
    for seed in seeds:
        splits = make_splits(src, cfg.data.split, seed) if resplit and seed != seeds[0] else first
        fixed = dataclasses.replace(src, splits=splits)  # this seed's split, the same for every row
        for backbone in backbones:
            for strategy in strategies:
                if _on_features(strategy, cfg):  # a head on stored features: fit_head on this seed's rows, no run
                    runs.append(_head_row(fixed, cfg, strategy, backbone, seed, folder, embedded, reporter))
                    reporter.message(
                        f"[{len(runs)}/{total}] {strategy} @ {backbone}, seed {seed}: {runs[-1].split} "
                        f"{task.score_label} {runs[-1].score:.4f} in {runs[-1].seconds:.1f} s (a head on stored features)"
                    )
                    continue
                row = copy.deepcopy(cfg)  # fit sets fields in place: each run gets a copy
                row.model.arch = cfg.model.arch if backbone.startswith("file:") else None  # a file: row's alone
                run = fit(
                    fixed,
                    config=row,
                    strategy=strategy,
                    backbone=backbone,
                    backbones=backbone if pinned else None,
                    seed=seed,
                    out=str(folder),
                    name=re.sub(r"[^\w.-]+", "-", f"{strategy}-{backbone}-s{seed}"),
                    quiet=True,
                )
                runs.append(
                    CompareRun(
                        strategy,
                        # what `auto` resolved to, with the backbone when it chose another
                        run.strategy
                        + (f" @ {run.config.model.backbone}" if run.config.model.backbone != backbone else ""),
                        backbone,
                        seed,
                        float(run.test_metrics[task.score_name]),
                        run.eval_split,
                        run.seconds,
                        str(run.path),
                        int(run.test_metrics.get("n", 0)),
                    )
                )
                reporter.message(
                    f"[{len(runs)}/{total}] {strategy} @ {backbone}, seed {seed}: "
                    f"{run.eval_split} {task.score_label} {runs[-1].score:.4f} in {run.seconds:.0f} s"
                )
    result = summarize(runs, seeds, task)
    result.folder = str(folder)
    result.split_sizes = {k: len(v) for k, v in first.items()}
    result.resplit = resplit
    result.chart = str(
        plot_comparison(
            result.rows,
            result.runs[0].split,
            len(result.seeds),
            folder / "compare.png",
            score=task.score_label,
            percent=task.proportion,
        )
    )
    (folder / "compare.json").write_text(json.dumps(result.to_dict(), indent=2))
    return result


def _on_features(strategy: str, cfg: RunConfig) -> bool:
    """True when every phase of the strategy fits a head on cached features (`linear`) and nothing asks for what
    only a run does (--aug-views draws augmented views of the training images)."""
    from .strategies import parse_strategy

    phases = parse_strategy(strategy).phases(cfg.train.epochs, cfg.train.head_epochs)
    return bool(phases) and all(p.cached for p in phases) and not cfg.train.aug_views


def _head_row(
    src, cfg: RunConfig, strategy: str, backbone: str, seed: int, folder: Path, embedded: dict, reporter=None
):
    """One row of `compare` for a strategy that trains only a head: the features of every image from the store
    (`embed`, once per backbone and input size, shared by the seeds), a head fitted on this seed's train rows with
    its L2 and solver picked on val (`fit_head`, as `train`'s linear phase fits it), scored on test. What `train
    --strategy linear` with the same seed scores (where L-BFGS wins; AdamW starts from another draw), without its run: no decoding of stored images, no bundle, no
    report. folder/<row>/ keeps split.csv, report.json and predictions.csv."""
    import time

    import numpy as np
    import torch

    from .backbones import create_backbone
    from .backbones.depth import frozen_input_size
    from .core.embed import embed
    from .core.heads import fit_head, run_settings
    from .data.sizes import survey_sides
    from .data.split import save_splits
    from .rundir import RunDir
    from .strategies import parse_strategy
    from .tasks import get_task

    started = time.perf_counter()
    splits = src.splits
    key = (backbone, cfg.data.image_size)
    if cfg.data.image_size is None:  # `train`'s choice for `linear`: from this split's training images' median side
        if backbone not in embedded:
            embedded[backbone] = create_backbone(
                backbone, pretrained=False, arch=cfg.model.arch, features=cfg.model.features
            )[1]
        bcfg = embedded[backbone]
        key = (backbone, frozen_input_size(survey_sides(src, splits["train"])[0], bcfg))
    if key not in embedded:
        emb = embed(
            src,
            backbone,
            image_size=key[1],
            features=cfg.model.features,
            precision=cfg.runtime.feature_precision,
            batch_size=cfg.data.batch_size,
            device=cfg.runtime.device,
            cache_dir=cfg.runtime.cache_dir,
            reporter=reporter,  # decoding and extraction show their progress, as a run's do
            arch=cfg.model.arch,  # a file: row's architecture (--arch)
        )
        embedded[key] = (emb.features, {k: i for i, k in enumerate(emb.keys)})
    x, row = embedded[key]
    readable = {s: [r for r in splits.get(s, []) if r.key in row] for s in ("train", "val", "test")}
    scored = "test" if readable["test"] else "val"
    rows = {s: np.array([row[r.key] for r in v], dtype=np.int64) for s, v in readable.items()}
    labels = {s: np.array([r.label for r in v]) for s, v in readable.items()}
    task = get_task(cfg.train.task).prepare(labels["train"], loss=cfg.train.loss)
    weights = task.loss_weights(labels["train"].tolist(), src.classes) if cfg.data.balance == "weights" else None
    (phase,) = parse_strategy(strategy).phases(cfg.train.epochs, cfg.train.head_epochs)
    settings = run_settings(cfg, phase.epochs, weights)
    settings.seed = seed
    fitted = fit_head(x[rows["train"]], labels["train"], task, val=(x[rows["val"]], labels["val"]), settings=settings)
    logits = fitted.logits(x[rows[scored]])
    metrics = task.metrics(logits, torch.as_tensor(labels[scored]), src.classes)
    out = RunDir.create(folder, re.sub(r"[^\w.-]+", "-", f"{strategy}-{backbone}-s{seed}"))
    save_splits(out / RunDir.SPLIT, splits, src.classes)
    out.write_json(RunDir.REPORT, {"task": task.name, "split": scored, "metrics": metrics, "solver": fitted.solver})
    if task.class_logits and labels[scored].ndim == 1:  # who is right on which image: McNemar's pairs (one seed)
        predicted = logits.argmax(1).numpy()
        with open(out / "predictions.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["key", "true", "predicted", "correct"])  # the columns of a run's predictions.csv
            for r, p in zip(readable[scored], predicted):
                w.writerow([r.key, src.classes[r.label], src.classes[p], int(p == r.label)])
    return CompareRun(
        strategy,
        strategy,
        backbone,
        seed,
        float(metrics[task.score_name]),
        scored,
        time.perf_counter() - started,
        str(out.path),
        len(rows[scored]),
    )


def summarize(runs: list[CompareRun], seeds: list[int], task=None) -> Comparison:
    """Rows from runs, the paired tests against the winner, and the verdict (no training: testable on its own).
    `task` (a Task; default classification) says what the runs' score is: a share of right images (accuracy) has
    Wilson intervals and McNemar's test for one repeat, and reads in points; other scores (R², mAP) need repeats."""
    from .evaluation.intervals import mean_interval, wilson
    from .tasks import get_task

    task = task or get_task()

    groups: dict[tuple[str, str], list[CompareRun]] = {}
    for r in runs:
        groups.setdefault((r.strategy, r.backbone), []).append(r)
    rows, members = [], {}
    for (strategy, backbone), group in groups.items():
        group.sort(key=lambda r: r.seed)
        scores = [r.score for r in group]
        resolved = {r.resolved for r in group} - {strategy}
        shown = f"{strategy} ({', '.join(sorted(resolved))})" if resolved else strategy
        mean, low, high = mean_interval(scores)
        if len(group) == 1 and group[0].n and task.proportion:  # one repeat: the interval of its one test split
            low, high = wilson(round(group[0].score * group[0].n), group[0].n)
        row = CompareRow(
            shown,
            backbone,
            scores,
            mean,
            statistics.stdev(scores) if len(scores) > 1 else 0.0,
            statistics.fmean(r.seconds for r in group),
            None,
            "",
            low,
            high,
        )
        rows.append(row)
        members[id(row)] = group
    rows.sort(key=lambda r: (-r.mean, r.seconds))
    best = rows[0]
    for r in rows[1:]:
        r.p_vs_best = paired_t_test(best.scores, r.scores)
        if r.p_vs_best is None and len(r.scores) == 1 and task.proportion:
            r.p_vs_best = paired_on_images(members[id(best)][0], members[id(r)][0])
        wins = sum((a > b) + 0.5 * (a == b) for a, b in zip(r.scores, best.scores))
        r.wins_vs_best = f"{wins:g}/{len(r.scores)}"
    significant, verdict = _verdict(rows, len(seeds), task)
    return Comparison(
        rows,
        runs,
        seeds,
        best.label,
        significant,
        verdict,
        task=task.name,
        score=task.score_name,
        score_label=task.score_label,
    )


def paired_on_images(a: CompareRun, b: CompareRun) -> float | None:
    """McNemar's exact test of two runs scored on the same test images (their predictions.csv); None when either
    has none or they were not scored on the same images."""
    from .evaluation.intervals import mcnemar

    right = []
    for run in (a, b):
        path = Path(run.path) / "predictions.csv" if run.path else None
        if path is None or not path.is_file():
            return None
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        if rows and "correct" not in rows[0]:
            return None  # not a classification's predictions: nothing is right or wrong per image
        right.append({row["key"]: row["correct"] == "1" for row in rows})
    if right[0].keys() != right[1].keys():
        return None
    keys = sorted(right[0])
    return mcnemar([right[0][k] for k in keys], [right[1][k] for k in keys])


def paired_t_test(a: list[float], b: list[float]) -> float | None:
    """Two-sided p-value of the paired t-test of a vs b (scipy's ttest_rel); 1.0 when they never differ; None with
    fewer than 2 pairs."""
    from scipy.stats import binomtest, ttest_rel

    if len(a) < 2 or len(a) != len(b):
        return None
    diffs = [x - y for x, y in zip(a, b)]
    if all(d == diffs[0] for d in diffs):  # the same difference on every seed: no variance for a t-test, so the
        # exact sign test answers (n seeds all one way: p = 2 * 0.5^n, 0.25 for 3 seeds)
        return 1.0 if diffs[0] == 0 else float(binomtest(len(diffs), len(diffs)).pvalue)
    return float(ttest_rel(a, b).pvalue)


def _verdict(rows: list[CompareRow], n_seeds: int, task) -> tuple[bool | None, str]:
    best = rows[0]
    if len(rows) == 1:
        return None, f"{best.label}: {task.format_score(best.mean)} (nothing to compare with)"
    second = rows[1]
    gap = best.mean - second.mean
    lead = f"{100 * gap:.1f} points" if task.proportion else f"{gap:.3f}"
    named = "" if task.proportion else f"{task.score_label} "  # "wins with 91.3%", "wins with R² 0.612"
    head = f"{best.label} wins with {named}{task.format_score(best.mean)}, {lead} ahead of {second.label}"
    if second.p_vs_best is None:
        return None, head + f"; with {n_seeds} seed no test is possible (use --seeds 3 or more)"
    significant = second.p_vs_best < SIGNIFICANCE
    paired = "paired image by image on the one test split (McNemar)" if n_seeds == 1 else f"paired over {n_seeds} seeds"
    return significant, head + (
        f"; {paired} p = {second.p_vs_best:.3f}: "
        + ("a real difference" if significant else f"not significant at {SIGNIFICANCE} (could be noise)")
    )


def print_comparison(result: Comparison, console=None) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    from .tasks import get_task

    console = console or Console(width=None if sys.stdout.isatty() else 120)
    split = result.runs[0].split if result.runs else "test"
    repeats = "re-splits" if result.resplit else "training seeds"
    label = result.score_label
    percent = get_task(result.task).proportion  # a share of images reads in %, other scores as they are
    t = Table(title=f"Strategies compared ({split} {label}, mean ± 95% interval over {len(result.seeds)} {repeats})")
    for col in ("strategy", "backbone", label, "per seed", "s / run", "p vs best", "wins vs best"):
        t.add_column(col, justify="left" if col in ("strategy", "backbone") else "right")
    for i, r in enumerate(result.rows):
        t.add_row(
            ("[bold]" if i == 0 else "") + r.strategy + ("[/bold]" if i == 0 else ""),
            r.backbone,
            f"{r.mean:.1%} ± {100 * r.half:.1f}" if percent else f"{r.mean:.3f} ± {r.half:.3f}",
            " ".join(f"{a:.3f}" for a in r.scores),
            f"{r.seconds:.0f}",
            "-" if r.p_vs_best is None else f"{r.p_vs_best:.3f}",
            r.wins_vs_best or "-",
        )
    console.print(t)
    console.print(f"[bold]{result.verdict}.[/bold]", highlight=False)
    if result.chart:
        console.print(f"Chart: {result.chart}", highlight=False)
