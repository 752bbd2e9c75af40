"""Rank candidate backbones for a dataset from one forward pass each, before training any of them.

    rows = transferkit.rank("data/hymenoptera", candidates=["efficientnet_lite0", "efficientnet_lite2"])
    rows[0].backbone, rows[0].reason          # the recommendation comes first
    print_ranking(rows)                        # the table `transferkit rank` prints

Per candidate: pooled features of the train and val splits (the feature cache `linear` uses, so a later
`fit(strategy="linear")` with the winner extracts nothing), then LogME, LEEP, NCE and H-score on the training
features, the val accuracy of the ridge classifier LogME fits on the way (a linear probe that costs nothing: with
efficientnet_lite0 on digits, ants/bees and cat/non-cat it lands within 0.4 points of the head `linear` trains), the
forward work per image (counted FLOPs: equal scores go to less of it) and the time per image (measured, shown only:
it follows the machine's load). Benchmarks disagree on which estimator ranks best (SFDA 0.71 vs LogME 0.51 mean
weighted Kendall tau on one, H-score 0.67 vs LogME 0.665 on another) and the ImageNet accuracy prior is competitive,
so the recommendation is a vote: LogME, LEEP, the probe and the prior get one vote each. NCE and H-score are shown,
not counted: NCE is LEEP with hard labels, and H-score would give the features a second vote next to LogME.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

from ..config import RunConfig
from ..errors import TransferkitError

VOTERS = ("logme", "leep", "probe_acc", "imagenet_top1")  # the signals the combined score averages
NAMES = {"logme": "LogME", "leep": "LEEP", "probe_acc": "probe", "imagenet_top1": "ImageNet prior"}


@dataclass
class RankRow:
    backbone: str  # registry name, usable as --backbone
    logme: float | None  # LogME (You et al. 2021) of the train features: evidence per image, higher is better
    leep: float | None  # LEEP (Nguyen et al. 2020) from the ImageNet head's predictions; None without a head
    nce: float | None  # NCE (Tran et al. 2019): -H(label | ImageNet's top-1 class); 0 is the maximum
    hscore: float | None  # H-score (Bao et al. 2019), shrinkage-regularised: between-class / total feature variance
    probe_acc: float | None  # val score of LogME's ridge probe (a free linear probe): accuracy, R² or mAP
    feature_dim: int  # width of the pooled features the new head sees
    params_m: float  # millions of backbone parameters (without the ImageNet classifier)
    ms_per_image: float  # measured forward time per image here, at the run's batch size and feature precision
    imagenet_top1: float | None  # published ImageNet top-1 (%): the prior; None when the registry does not know it
    image_size: int  # input side the candidate was measured at (the one training would use)
    score: float  # combined: mean over VOTERS of the candidate's rank score (1 best, 0 worst); missing signals 0.5
    recommended: bool  # the first row: highest score (ties: less forward work)
    reason: str  # where it placed on each signal, and for the recommendation why it won
    seconds: float  # what measuring it cost here: model, features (or cache), estimators, probe
    error: str | None = None  # why it could not be measured (then it ranks last and its numbers are empty)
    gflops: float | None = None  # forward work per image at image_size, counted: what ties and "cheaper" go by

    def to_dict(self) -> dict:
        return asdict(self)


def rank(
    data, candidates: list[str] | str | None = None, config: RunConfig | None = None, reporter=None, **overrides
) -> list[RankRow]:
    """Rows best first. `candidates`: registry names (default: every built-in, offline backbone). Keyword
    arguments set config fields as in `fit` (image_size, split, seed, batch_size, device, cache_dir, ...)."""
    from ..backbones import check_backbone_name, list_backbones
    from ..engine.runtime import refuse_multiprocess
    from ..options import apply_overrides, validate
    from ..progress import make_reporter
    from .frozen import open_data

    refuse_multiprocess("rank", "a forward pass per backbone: more processes would each measure and print the same")
    cfg = apply_overrides(config or RunConfig(), dict(overrides))
    names = candidates.split(",") if isinstance(candidates, str) else list(candidates or list_backbones())
    names = list(dict.fromkeys(n.strip() for n in names if n.strip()))  # in order, each once
    validate(cfg, names)  # --arch may be a file: candidate's (frozen_backbone hands it to each)
    if not names:
        raise TransferkitError("rank needs at least one candidate backbone, e.g. --candidates efficientnet_lite0.")
    for name in names:
        check_backbone_name(name)  # a typo fails now, before minutes of forward passes
    reporter = reporter or make_reporter(cfg.quiet)
    d = open_data(data, cfg)
    rows = []
    for name in names:
        reporter.message(f"Measuring {name} ...")
        rows.append(_measure(d, name, cfg, reporter))
    return _vote(rows)


def _measure(d, name: str, cfg: RunConfig, reporter) -> RankRow:
    from ..tasks import get_task
    from .frozen import frozen_features

    start = time.perf_counter()
    try:
        ff = frozen_features(d, name, cfg, reporter)
    except (TransferkitError, ImportError, OSError) as e:  # weights that cannot be had here: a row that says why
        return RankRow(
            name,
            None,
            None,
            None,
            None,
            None,
            0,
            0.0,
            float("nan"),
            None,
            0,
            0.0,
            False,
            "",
            time.perf_counter() - start,
            error=str(e),
        )
    return RankRow(
        backbone=name,
        **SIGNALS[get_task(d.src.task).probe](ff),
        feature_dim=int(ff.train.shape[1]),
        params_m=ff.params / 1e6,
        ms_per_image=ff.seconds_per_image * 1000,
        imagenet_top1=ff.cfg.imagenet_top1,
        image_size=ff.image_size,
        score=0.0,
        recommended=False,
        reason="",
        seconds=time.perf_counter() - start,
        gflops=ff.gflops,
    )


def class_signals(ff) -> dict:
    """Classification: LogME per class, LEEP and NCE from the ImageNet head, H-score, LogME's ridge probe accuracy."""
    from . import estimators as E

    probs = ff.imagenet_train
    fitted = E.logme_fit(ff.train, ff.train_labels)
    return {
        "logme": fitted.score,
        "leep": E.leep(probs, ff.train_labels) if probs is not None else None,
        "nce": E.nce(probs, ff.train_labels) if probs is not None else None,
        "hscore": E.hscore(ff.train, ff.train_labels),
        "probe_acc": float((fitted.predict(ff.val) == ff.val_labels).mean()),
    }


def regression_signals(ff) -> dict:
    """Regression: LogME's regression form and its probe's val R² (in `probe_acc`); LEEP, NCE and H-score need
    classes."""
    from ..evaluation.regression import r2
    from . import estimators as E

    fitted = E.logme_regression(ff.train, ff.train_labels)
    return {
        "logme": fitted.score,
        "leep": None,
        "nce": None,
        "hscore": None,
        "probe_acc": r2(fitted.predict(ff.val), ff.val_labels),
    }


def multilabel_signals(ff) -> dict:
    """Multi-label: LogME over the label columns and its probe's val mAP (in `probe_acc`)."""
    from ..evaluation.multilabel import mean_average_precision
    from . import estimators as E

    fitted = E.logme_regression(ff.train, ff.train_labels)
    probe = mean_average_precision(fitted.predict(ff.val).reshape(len(ff.val), -1), ff.val_labels)
    return {"logme": fitted.score, "leep": None, "nce": None, "hscore": None, "probe_acc": probe}


# What each kind of label measures of a candidate's frozen features (probe_acc holds the task's own probe score),
# keyed like selection/probes.PROBES by the task's `probe`.
SIGNALS = {"classes": class_signals, "values": regression_signals, "label_sets": multilabel_signals}


def _places(rows: list[RankRow], signal: str) -> dict[str, tuple[float, int]]:
    """backbone -> (rank score in [0, 1], place 1..n) on one signal; ties share the average score."""
    values = {r.backbone: getattr(r, signal) for r in rows if getattr(r, signal) is not None}
    out = {}
    for name, v in values.items():
        below = sum(w < v for w in values.values())
        ties = sum(w == v for w in values.values()) - 1
        above = sum(w > v for w in values.values())
        out[name] = ((below + ties / 2) / (len(values) - 1) if len(values) > 1 else 1.0, above + 1)
    return out


def _vote(rows: list[RankRow]) -> list[RankRow]:
    ok = [r for r in rows if r.error is None]
    places = {s: _places(ok, s) for s in VOTERS}
    for r in ok:
        # one vote per signal; a signal this candidate lacks (no ImageNet head, unknown prior) counts as neutral
        r.score = sum(places[s].get(r.backbone, (0.5, 0))[0] for s in VOTERS) / len(VOTERS)
        r.reason = ", ".join(
            f"{NAMES[s]} {places[s][r.backbone][1]}/{len(places[s])}" if r.backbone in places[s] else f"no {NAMES[s]}"
            for s in VOTERS
        )
    # equal scores: less work first, else the given order (stable); never the measured ms, which follow the load
    ok.sort(key=lambda r: (-r.score, r.gflops if r.gflops is not None else math.inf))
    for r in rows:
        if r.error is not None:
            r.reason = f"not measured: {r.error}"
    if ok:
        best = ok[0]
        best.recommended = True
        best.reason = (
            f"highest combined score {best.score:.2f} of {len(ok)} ({best.reason}); {best.ms_per_image:.1f} ms/image"
        )
        faster = [
            r
            for r in ok[1:]
            if r.probe_acc is not None
            and best.probe_acc is not None
            and r.gflops is not None
            and best.gflops is not None
            and r.gflops * 1.5 < best.gflops
            and r.probe_acc >= best.probe_acc - 0.01
        ]
        if faster:
            f = min(faster, key=lambda r: r.gflops)
            best.reason += (
                f". {f.backbone} does {best.gflops / f.gflops:.1f}x less work per image ({f.gflops:.3g} vs "
                f"{best.gflops:.3g} GFLOP; {f.ms_per_image:.1f} vs {best.ms_per_image:.1f} ms here) with a probe "
                f"accuracy within 1 point ({f.probe_acc:.1%}): prefer it where speed matters"
            )
    return ok + [r for r in rows if r.error is not None]


def ranking_table(rows: list[RankRow], title: str = "Backbones for this data", task: str = "classification"):
    """The ranking as a table; the probe column in the task's score (accuracy as a share, R² and mAP as numbers)."""
    from rich.table import Table

    from ..tasks import get_task

    scored = get_task(task)

    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    t = Table(
        title=title,
        caption=f"probe: val {scored.score_label} of a ridge probe on frozen features. score: mean rank score "
        "over LogME, LEEP, probe and ImageNet prior (1 = first on all). GFLOP: counted forward work per image "
        "(ties go to less); ms/img: measured here, shown only.",
    )
    for col in (
        "backbone",
        "LogME",
        "LEEP",
        "NCE",
        "H-score",
        "probe",
        "dim",
        "params",
        "GFLOP",
        "ms/img",
        "IN top-1",
        "size",
        "score",
    ):
        t.add_column(col, justify="left" if col == "backbone" else "right")
    for r in rows:
        if r.error is not None:
            t.add_row(r.backbone, *["-"] * 11, "[red]error[/red]")
            continue
        t.add_row(
            ("[bold]* " if r.recommended else "") + r.backbone + ("[/bold]" if r.recommended else ""),
            num(r.logme, ".3f"),
            num(r.leep, ".3f"),
            num(r.nce, ".3f"),
            num(r.hscore, ".2f"),
            "-" if r.probe_acc is None else scored.format_score(r.probe_acc),
            str(r.feature_dim),
            f"{r.params_m:.1f}M",
            num(r.gflops, ".3g"),
            f"{r.ms_per_image:.1f}",
            num(r.imagenet_top1, ".1f"),
            str(r.image_size),
            f"{r.score:.2f}",
        )
    return t


def print_ranking(
    rows: list[RankRow], console=None, title: str = "Backbones for this data", task: str = "classification"
) -> None:
    import sys

    from rich.console import Console

    console = console or Console(width=None if sys.stdout.isatty() else 150)  # 13 columns: 80 would squash them in logs
    console.print(ranking_table(rows, title, task))
    for r in rows:
        if r.recommended:
            console.print(f"[bold]Recommended: {r.backbone}[/bold] - {r.reason}.", highlight=False)
        elif r.error is not None:
            console.print(f"{r.backbone}: {r.reason}", highlight=False)
