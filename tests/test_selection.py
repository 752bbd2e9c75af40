"""Selection: the estimators against independent computations, rank/advise/compare on tiny generated images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import transferkit
from transferkit.comparison import CompareRun, paired_t_test, summarize
from transferkit.errors import ConfigError
from transferkit.selection import estimators as E
from transferkit.selection.advise import decide

from .conftest import FAST, store_rows, write_folder
from .test_cli import cli


def brute_force_evidence(f: np.ndarray, y: np.ndarray) -> float:
    """max over (alpha, beta) of log N(t; 0, I/beta + F F^T/alpha) per sample, averaged over classes: a grid over
    log alpha and log beta, then Nelder-Mead from the best grid point. No SVD, no fixed point."""
    from scipy.optimize import minimize

    n = len(f)
    gram = f @ f.T
    out = []
    for c in np.unique(y):
        t = (y == c).astype(float)

        def neg_log_evidence(p, t=t):  # bound now: the loop rebinds t
            a, b = np.exp(p)
            cov = np.eye(n) / b + gram / a
            _, logdet = np.linalg.slogdet(cov)
            return 0.5 * (logdet + t @ np.linalg.solve(cov, t) + n * np.log(2 * np.pi))

        grid = np.linspace(-8, 8, 33)
        start = min((neg_log_evidence(np.array([la, lb])), la, lb) for la in grid for lb in grid)[1:]
        best = minimize(
            neg_log_evidence, np.array(start), method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-11}
        )
        out.append(-best.fun / n)
    return float(np.mean(out))


# More images than features; and fewer, where a class that can be fitted exactly has its evidence rising towards a
# limit as beta -> infinity: the fixed point stops within 1e-5 of that supremum (the grid search finds beta ~ 1e16).
@pytest.mark.parametrize("n,d,tol", [(40, 6, 1e-9), (24, 50, 1e-5)])
def test_logme_equals_brute_force_evidence_maximisation(n, d, tol):
    rng = np.random.default_rng(n)
    y = rng.integers(0, 3, n)
    f = rng.normal(size=(n, d)) + 1.5 * np.eye(3)[y] @ rng.normal(size=(3, d))
    assert E.logme(f, y) == pytest.approx(brute_force_evidence(f, y), abs=tol)


@pytest.mark.parametrize("n,d", [(30, 8), (12, 40)])
def test_logme_on_features_that_say_nothing_is_the_mean_not_nan(n, d):
    """All-zero features (flat images whose every feature is constant, standardised): no direction to fit, so the
    probe answers the mean and the evidence is finite, where the fixed point used to divide 0 by 0."""
    import warnings

    rng = np.random.default_rng(0)
    t, y = rng.normal(size=n) * 3 + 7, rng.integers(0, 3, n)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        reg, cls = E.logme_regression(np.zeros((n, d)), t), E.logme_fit(np.zeros((n, d)), y)
    assert np.isfinite(reg.score) and np.isfinite(cls.score) and not reg.weights.any()
    assert np.allclose(reg.predict(np.ones((3, d))), t.mean())
    # and a feature that does say something still scores higher than none
    f = np.zeros((n, d))
    f[:, 0] = t + rng.normal(size=n) * 0.1
    assert E.logme_regression(f, t).score > reg.score


def separated(scale: float, n: int = 120, d: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    centres = rng.normal(size=(4, d))
    return rng.normal(size=(n, d)) + scale * centres[y], y


def test_better_separated_features_score_higher():
    scores = {s: separated(s) for s in (0.2, 1.0, 3.0)}
    logme = [E.logme(f, y) for f, y in scores.values()]
    hscore = [E.hscore(f, y) for f, y in scores.values()]
    assert logme == sorted(logme) and logme[0] < logme[-1]
    assert hscore == sorted(hscore)


def test_logme_ridge_probe_classifies_held_out_images():
    f, y = separated(2.0, n=240)
    assert (E.logme_fit(f[:120], y[:120]).predict(f[120:]) == y[120:]).mean() > 0.9


def test_leep_and_nce_extremes():
    y = np.repeat([0, 1, 2], 20)
    informative = np.eye(5)[y]  # the source head names the target class outright
    assert E.nce(informative, y) == pytest.approx(0.0)
    assert E.leep(informative, y) == pytest.approx(0.0, abs=1e-9)
    useless = np.full((60, 5), 0.2)  # the same prediction for every image: only the class frequencies remain
    assert E.nce(useless, y) == pytest.approx(-np.log(3))
    assert E.leep(useless, y) == pytest.approx(-np.log(3))


# ---- the chart, without measuring --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "per_class,shift,probe,chance,side,expected",
    [
        (122, 0.07, 0.941, 0.54, 369, "linear"),  # ants/bees as measured
        (86, 0.19, 0.973, 0.65, 64, "linear"),  # cat/non-cat
        (126, 0.63, 0.974, 0.10, 8, "finetune"),  # digits: never linear; upscaled 8 px images: nothing to freeze
        (126, 0.63, 0.974, 0.10, 200, "freeze:2"),  # small and different photos: keep the generic first stages
        (122, 0.07, 0.80, 0.54, 369, "two-phase"),  # similar, but frozen features leave many errors
        (500, 0.07, 0.90, 0.10, 300, "two-phase"),
        (500, 0.60, 0.90, 0.10, 300, "finetune"),
        (2000, 0.07, None, None, 300, "finetune"),
        (120, None, 0.95, 0.5, 20, "finetune"),  # no BatchNorm: tiny images count as different (and are upscaled)
    ],
)
def test_chart(per_class, shift, probe, chance, side, expected):
    name, mult, size, similar, reason = decide(per_class, shift, probe, chance, side, n_stages=7)
    assert name == expected, reason
    assert (mult is None) == similar and size in reason and name in reason


# ---- on tiny generated images ------------------------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["auto", "bf16"])  # the test split is evaluated on cached features at either
def test_rank_rows_and_shared_cache(tiny_folder, tmp_path, precision):
    cache = tmp_path / "cache"
    rows = transferkit.rank(
        tiny_folder,
        ["efficientnet_lite0", "file:/nowhere/weights.pth"],
        cache_dir=str(cache),
        feature_precision=precision,
        **FAST,
    )
    best, failed = rows
    assert best.recommended and best.backbone == "efficientnet_lite0" and "highest combined score" in best.reason
    assert best.feature_dim == 1280 and best.image_size == 32 and 3 < best.params_m < 4 and best.imagenet_top1 == 75.1
    assert best.ms_per_image > 0 and best.gflops > 0 and 0 <= best.probe_acc <= 1 and best.leep <= 0 and best.nce <= 0
    assert "--arch" in failed.error and not failed.recommended  # the reason it could not be measured, for people
    json.dumps([r.to_dict() for r in rows])  # plain data
    # The features rank extracted are the ones `linear` uses: fit reuses train and val and adds only the test
    # split's features (which it evaluates the head on, instead of a second forward pass of the backbone).
    before = store_rows(cache)
    assert len(before) == 1  # one backbone configuration: train and val's images
    transferkit.fit(
        tiny_folder,
        strategy="linear",
        cache_dir=str(cache),
        out=str(tmp_path / "runs"),
        feature_precision=precision,
        **FAST,
    )
    after = store_rows(cache)
    assert after.keys() == before.keys() and sum(after.values()) > sum(before.values())  # only test's were added


def test_rank_refuses_unknown_names(tiny_folder):
    with pytest.raises(ConfigError, match="efficientnet_lite0"):
        transferkit.rank(tiny_folder, "efficientnet_lite7", **FAST)


def test_vote_prefers_the_cheaper_of_equals_by_counted_work_not_by_the_clock():
    from transferkit.selection.rank import RankRow, _vote

    def row(name, gflops, probe, ms=5.0):  # ms: measured under whatever load there was; it decides nothing
        return RankRow(name, -0.5, -0.3, -0.1, 1.0, probe, 1280, 4.0, ms, 75.0, 224, 0, False, "", 1.0, gflops=gflops)

    rows = _vote([row("dear", 2.0, 0.9, ms=1.0), row("cheap", 0.5, 0.9, ms=50.0)])
    assert [r.backbone for r in rows] == ["cheap", "dear"] and rows[0].score == rows[1].score == 0.5
    rows = _vote([row("dear", 2.0, 0.95), row("cheap", 0.5, 0.945)])
    assert rows[0].backbone == "dear" and "cheap does 4.0x less work per image" in rows[0].reason


def test_advise_measures_and_auto_uses_it(tiny_folder, tmp_path):
    advice = transferkit.advise(tiny_folder, **FAST)
    assert advice.size == "small" and advice.n_classes == 3 and advice.image_size == 32
    assert advice.shift is not None and advice.shift > 0 and advice.probe_acc is not None
    # 40 px images of noise and squares: far from ImageNet (the shift is measured) and tiny (median side 40 < 64),
    # so the chart's rule for small, different, upscaled data would fine-tune everything; but the probe tells the
    # shapes apart without an error, and small data with a near-perfect probe stays linear
    assert not advice.similar and "tiny" in advice.reason and "fine-tune all" in advice.reason
    assert advice.probe_acc == 1.0 and advice.strategy == "linear" and "nothing for fine-tuning" in advice.reason
    run = transferkit.fit(tiny_folder, strategy="auto", epochs=1, out=str(tmp_path), **FAST)
    assert run.strategy == advice.strategy and run.strategy_reason == advice.reason


def test_paired_test_and_verdict():
    def runs(strategy, accs):
        return [CompareRun(strategy, strategy, "b", i, a, "test", 10.0 + i, "") for i, a in enumerate(accs)]

    from scipy.stats import ttest_rel

    a, b = [0.95, 0.96, 0.97, 0.96], [0.90, 0.93, 0.91, 0.92]
    result = summarize(runs("two-phase", a) + runs("linear", b), [0, 1, 2, 3])
    assert result.winner == "two-phase @ b" and result.significant
    assert result.rows[1].p_vs_best == pytest.approx(ttest_rel(a, b).pvalue) and result.rows[1].wins_vs_best == "0/4"
    assert result.rows[0].std == pytest.approx(np.std(a, ddof=1))
    close = summarize(runs("x", [0.90, 0.95, 0.92]) + runs("y", [0.93, 0.91, 0.92]), [0, 1, 2])
    assert close.significant is False and "not significant" in close.verdict
    one = summarize(runs("x", [0.9]) + runs("y", [0.8]), [0])
    assert one.significant is None and "--seeds" in one.verdict
    assert paired_t_test([0.9, 0.9], [0.9, 0.9]) == 1.0
    assert paired_t_test([0.9, 0.9, 0.9], [0.8, 0.8, 0.8]) == pytest.approx(0.25)  # sign test: 3 of 3 one way


@pytest.mark.parametrize(
    "given, words",
    [
        ({"strategies": "linear,linear"}, "--strategies names linear more than once"),
        ({"strategies": "linear", "seeds": [0, 0]}, "--seeds names 0 more than once"),
        ({"strategies": "linear,two-phase", "epochs": 1}, "--strategy two-phase --epochs 1"),
    ],
)
def test_compare_refuses_a_repeated_row_or_a_rows_options_before_making_its_folder(tmp_path, given, words):
    """linear,linear pooled one run twice into a 95% interval of width 0; two-phase --epochs 1 was refused only
    after the folder was made, which stayed behind empty."""
    data = write_folder(tmp_path / "colours", per_class=2)
    kw = {"seeds": 1, **given}
    with pytest.raises(ConfigError, match=words):
        transferkit.compare(data, out=str(tmp_path / "cmp"), **kw, **FAST)
    assert not (tmp_path / "cmp").exists()


def test_compare_on_repeated_splits(tmp_path):
    data = write_folder(tmp_path / "colours", per_class=10)
    result = transferkit.compare(
        data, strategies="linear,finetune", seeds=2, epochs=1, out=str(tmp_path / "cmp"), **FAST
    )
    assert len(result.runs) == 4 and len(result.rows) == 2 and result.winner == result.rows[0].label
    folder = tmp_path / "cmp" / "compare-colours"
    assert (folder / "compare.png").stat().st_size > 1000 and json.loads((folder / "compare.json").read_text())[
        "winner"
    ]
    # Un-split data: each seed draws its own split, and every strategy of that seed sees it (the pairing).
    assert result.resplit
    by_seed = {}
    for r in result.runs:
        by_seed.setdefault(r.seed, set()).add((Path(r.path) / "split.csv").read_text())
    assert all(len(v) == 1 for v in by_seed.values()) and by_seed[0] != by_seed[1]
    for row in result.rows:  # mean with its 95% t-interval over the 2 repeats (t = 12.7 for 1 degree of freedom)
        assert row.low <= row.mean <= row.high and row.half == pytest.approx(12.706 * row.std / 2**0.5, rel=1e-3)


def test_compare_pre_split_repeats_seeds_and_one_seed_pairs_images(tiny_presplit, tmp_path):
    result = transferkit.compare(
        tiny_presplit, strategies="linear,finetune", seeds=1, epochs=1, out=str(tmp_path / "cmp"), **FAST
    )
    assert not result.resplit and result.split_sizes == {"train": 30, "val": 15, "test": 15}
    for row in result.rows:  # one repeat: the Wilson interval of its 15 test images
        assert row.high - row.low > 0.1
    # One seed: no t-test, McNemar on the shared test images instead (a p-value, and the verdict says how).
    assert result.rows[1].p_vs_best is not None and "McNemar" in result.verdict


def test_cli_rank_and_advise(tmp_path):
    data = write_folder(tmp_path / "colours", per_class=8)
    rows = json.loads(cli("rank", data, "--candidates", "efficientnet_lite0", "--image-size", "32", "--json").stdout)
    assert rows[0]["backbone"] == "efficientnet_lite0" and rows[0]["recommended"]
    table = cli("advise", data, "--image-size", "32").stdout
    assert "Strategy:" in table and "domain shift" in table
    # auto's own options: which backbones it chooses among, and its budget
    two = "efficientnet_lite0,efficientnet_lite1"
    said = json.loads(cli("advise", data, "--image-size", "32", "--backbones", two, "--budget", "3", "--json").stdout)
    assert {c["backbone"] for c in said["candidates"]} == set(two.split(",")) and said["budget_minutes"] == 3
    bad = cli("rank", data, "--candidates", "efficientnet_lite9", check=False)
    assert bad.returncode == 2 and "Did you mean" in bad.stderr and "Traceback" not in bad.stderr


def test_compare_linear_row_is_trains_linear_without_the_run(tmp_path):
    """A `linear` row of compare is a head on stored features (no run, no bundle) that predicts, image by image,
    what `train --strategy linear` with the same seed predicts. Noise images with random labels: a head that is
    right on some and wrong on others, so the two agree on something that could differ."""
    import csv

    from PIL import Image

    rng = np.random.default_rng(3)
    for c in ("a", "b", "c"):
        (tmp_path / "noise" / c).mkdir(parents=True)
        for i in range(14):
            px = rng.integers(0, 256, (36, 36, 3), dtype=np.uint8)
            Image.fromarray(px).save(tmp_path / "noise" / c / f"{i}.png")
    common = dict(image_size=32, quiet=True, head_solver="lbfgs", cache_dir=str(tmp_path / "cache"))
    result = transferkit.compare(tmp_path / "noise", strategies="linear", seeds=1, out=str(tmp_path / "cmp"), **common)
    run = transferkit.fit(tmp_path / "noise", strategy="linear", seed=0, out=str(tmp_path / "runs"), **common)

    def predicted(folder):
        with open(Path(folder) / "predictions.csv", newline="") as f:
            return {r["key"]: (r["predicted"], r["correct"]) for r in csv.DictReader(f)}

    (row,) = result.runs
    ours, theirs = predicted(row.path), predicted(run.path)
    assert ours == theirs and 0 < sum(c == "1" for _, c in ours.values()) < len(ours)
    assert row.score == pytest.approx(run.test_metrics["accuracy"]) and row.n == run.test_metrics["n"]
    assert not (Path(row.path) / "best").exists() and (Path(row.path) / "split.csv").is_file()


@pytest.mark.parametrize(
    "task, shown, named", [("classification", "91.3%", "val accuracy"), ("regression", "0.029", "val R²")]
)
def test_rank_table_shows_the_probe_in_the_tasks_score(task, shown, named):
    """A regression probe's R² of 0.029 read "2.9%" under "val accuracy of a linear classifier"."""
    from io import StringIO

    from rich.console import Console

    from transferkit.selection.rank import RankRow, ranking_table

    score = 0.913 if task == "classification" else 0.029
    row = RankRow("efficientnet_lite0", -1.4, None, None, None, score, 1280, 3.4, 9.0, 75.1, 64, 1.0, True, "", 1.0)
    out = StringIO()
    Console(file=out, width=300, color_system=None).print(ranking_table([row], task=task))
    text = out.getvalue()
    assert shown in text and f"probe: {named} of a ridge probe" in text.replace("\n", " ")


def test_compare_rows_of_a_weights_file_take_arch_and_the_others_do_not(tmp_path):
    """--backbones efficientnet_lite0,file:W --arch A trained the first row, then stopped: the file's head row was
    built without --arch (and a fitted row of another backbone was refused for carrying it)."""
    import torch

    from transferkit import compare
    from transferkit.backbones import create_backbone

    data = write_folder(tmp_path / "d", per_class=8)
    torch.save(create_backbone("efficientnet_lite0", pretrained=False)[0].state_dict(), tmp_path / "w.pth")
    weights = f"file:{tmp_path / 'w.pth'}"
    result = compare(
        data, strategies="linear,two-phase", backbones=f"efficientnet_lite0,{weights}", seeds=1,
        out=str(tmp_path / "runs"), arch="efficientnet_lite0", epochs=2, image_size=32, quiet=True,
    )  # fmt: skip
    assert sorted({(r.strategy, r.backbone) for r in result.runs}) == sorted(
        (s, b) for s in ("linear", "two-phase") for b in ("efficientnet_lite0", weights)
    )


def test_rank_measures_a_weights_file_with_arch(tmp_path):
    """`rank --candidates ...,file:W --arch A`: rank had no --arch, and its row said to give one."""
    import torch

    from transferkit.backbones import create_backbone
    from transferkit.selection.rank import rank

    data = write_folder(tmp_path / "d", per_class=6)
    torch.save(create_backbone("efficientnet_lite0", pretrained=False)[0].state_dict(), tmp_path / "w.pth")
    rows = rank(data, f"file:{tmp_path / 'w.pth'}", arch="efficientnet_lite0", image_size=32, quiet=True)
    assert rows[0].error is None and rows[0].feature_dim == 1280
