"""core/suggest.py (`rank`: what to label next) on synthetic features, and `transferkit suggest` on tiny folders."""

from __future__ import annotations

import csv
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from transferkit.core.suggest import AUTO_AFTER, AUTO_SWITCH_MIN, AUTO_SWITCH_PER_CLASS, STRATEGIES, auto_choice, rank
from transferkit.errors import ConfigError, DataError

from .conftest import write_folder


def blobs(k=5, per=60, dim=32, spread=0.3, seed=0):
    """k well-separated clusters: (features, labels)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * 3
    y = np.repeat(np.arange(k), per)
    return (centres[y] + spread * rng.normal(size=(len(y), dim))).astype(np.float32), y


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_every_strategy_returns_n_distinct_pool_rows_with_reasons(strategy):
    x, y = blobs()
    lab = np.concatenate([np.flatnonzero(y == c)[:6] for c in range(5)])
    pool = np.setdiff1d(np.arange(len(x)), lab)
    s = rank(x[pool], x[lab], y[lab], strategy=strategy, n=7, seed=1)
    assert len(s.indices) == len(set(s.indices.tolist())) == 7
    assert s.indices.min() >= 0 and s.indices.max() < len(pool)
    assert len(s.scores) == len(s.why) == 7 and all(s.why)
    assert s.strategy in STRATEGIES and s.strategy != "auto"


def test_unknown_strategy_lists_the_valid_ones():
    x, _ = blobs()
    with pytest.raises(ConfigError, match="Valid choices: .*typical"):
        rank(x, strategy="margins")


def test_cold_start_uncertainty_falls_back_to_typical_and_says_so():
    x, _ = blobs()
    s = rank(x, strategy="margin", n=5)
    assert s.strategy == "typical" and "cold start" in s.note


def test_typical_cold_start_covers_every_cluster_once():
    x, y = blobs(k=6, per=50)
    s = rank(x, strategy="typical", n=6, seed=3)
    assert sorted(y[s.indices].tolist()) == list(range(6))  # one image from each dense region
    # and the most typical of its cluster: closer to the cluster's mean than the cluster's median image is
    for i in s.indices:
        c = x[y == y[i]]
        d = np.linalg.norm(c - c.mean(0), axis=1)
        assert np.linalg.norm(x[i] - c.mean(0)) <= np.median(d)


def test_typical_says_how_many_are_labelled_apart_from_its_own_earlier_picks():
    """With no labels at all, the second pick of a region read "with 1 labelled" (the first pick of the batch)."""
    x = np.repeat(np.eye(2, 16, dtype=np.float32) * 5, 4, axis=0)  # 2 regions of 4 copies: 5 picks share them
    s = rank(x, strategy="typical", n=5, seed=0)
    assert all(" with 0 labelled" in w for w in s.why), s.why
    assert sum("picked before it" in w for w in s.why) == 3


def test_diversity_picks_outside_the_labelled_clusters():
    x, y = blobs(k=4, per=40)
    lab = np.flatnonzero(y < 2)[::4]  # clusters 0 and 1 labelled
    pool = np.flatnonzero(~np.isin(np.arange(len(x)), lab))
    s = rank(x[pool], x[lab], y[lab], strategy="diversity", n=2)
    assert set(y[pool][s.indices].tolist()) == {2, 3}


def test_margin_asks_about_the_images_between_two_classes():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(400, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    lab = np.concatenate([np.flatnonzero(y == 0)[:20], np.flatnonzero(y == 1)[:20]])
    pool = np.setdiff1d(np.arange(400), lab)
    s = rank(x[pool], x[lab], y[lab], strategy="margin", n=10)
    far = np.abs(x[pool][:, 0])
    assert np.abs(x[pool][s.indices, 0]).max() < np.quantile(far, 0.25)  # all from the band near x0 = 0
    assert "unsure" in s.why[0]


def test_auto_switches_from_typical_to_margin_at_the_stated_rule():
    k = 4
    few = np.repeat(np.arange(k), AUTO_SWITCH_PER_CLASS - 1)
    enough = np.repeat(np.arange(k), AUTO_SWITCH_PER_CLASS)
    assert auto_choice(few, k)[0] == "typical"
    assert auto_choice(enough, k)[0] == AUTO_AFTER
    assert auto_choice(np.zeros(50, int), k)[0] == "typical"  # one class seen: no head to ask yet
    assert auto_choice(np.repeat([0, 1], AUTO_SWITCH_PER_CLASS), 2)[0] == "typical"  # under AUTO_SWITCH_MIN in all
    assert auto_choice(np.repeat([0, 1], AUTO_SWITCH_MIN // 2), 2)[0] == AUTO_AFTER


def boundary_regions(seed=0):
    """Labels by the sign of feature 0; the pool's images near the boundary lie in 5 regions (feature j + 1 = 3 in
    region j): region 0 holds 30 near-identical images right on the boundary (|x0| < 0.01), regions 1-4 ten each a
    little off it (|x0| ~ 0.2), and 200 images far from it. (labelled x, y, pool x, pool region: -1 far)."""
    rng = np.random.default_rng(seed)
    dim = 8
    lab = rng.normal(size=(40, dim)).astype(np.float32) * 0.05
    lab[np.arange(40), 1 + np.arange(40) % 5] += 3.0  # labelled images in every region, away from the boundary
    y = np.repeat([0, 1], 20)
    lab[:, 0] = np.where(y == 1, 1.0, -1.0) + 0.1 * rng.normal(size=40)
    rows, region = [], []
    for j, (count, off) in enumerate([(30, 0.005), (10, 0.2), (10, 0.2), (10, 0.2), (10, 0.2)]):
        r = 0.05 * rng.normal(size=(count, dim))
        r[:, j + 1] += 3.0
        r[:, 0] = rng.choice([-1, 1], count) * off * rng.uniform(0.5, 1.5, count)
        rows.append(r), region.extend([j] * count)
    far = rng.normal(size=(200, dim)) * 0.3
    far[:, 0] = rng.choice([-1.5, 1.5], 200)
    rows.append(far), region.extend([-1] * 200)
    return lab, y, np.concatenate(rows).astype(np.float32), np.array(region)


def test_cluster_margin_spreads_a_batch_over_regions_where_margin_asks_one():
    """Plain margin's batch of 5 is 5 near-identical images of region 0; cluster-margin asks about the boundary in
    all 5 regions, still near it (no far image)."""
    lab, y, pool, region = boundary_regions()
    plain = rank(pool, lab, y, strategy="margin", n=5)
    assert set(region[plain.indices].tolist()) == {0}
    s = rank(pool, lab, y, strategy="cluster-margin", n=5)
    assert sorted(region[s.indices].tolist()) == [0, 1, 2, 3, 4]


def test_cluster_margin_keeps_to_the_uncertain_quarter_of_a_small_pool():
    """20 picks from 270 images: 10 n = 200 candidates would be most of the pool (k-means diversity, far images
    included); capped at a quarter, every pick is among margin's 67 most uncertain and none is far."""
    lab, y, pool, region = boundary_regions()
    top = set(rank(pool, lab, y, strategy="margin", n=len(pool) // 4).indices.tolist())
    s = rank(pool, lab, y, strategy="cluster-margin", n=20)
    assert set(s.indices.tolist()) <= top and (region[s.indices] >= 0).all()


def test_badge_covers_more_regions_than_margin():
    """BADGE trades uncertainty for spread (a sure image is |a_c| from every pick, so one far image may come too):
    more boundary regions than margin's one."""
    lab, y, pool, region = boundary_regions()
    s = rank(pool, lab, y, strategy="badge", n=5)
    assert len(set(region[s.indices].tolist()) - {-1}) >= 3 and (region[s.indices] >= 0).sum() >= 4


def test_cluster_margin_takes_each_regions_most_uncertain_first():
    lab, y, pool, region = boundary_regions(seed=1)
    s = rank(pool, lab, y, strategy="cluster-margin", n=5)
    plain = rank(pool, lab, y, strategy="margin", n=1)  # the most uncertain image of all (region 0)
    assert region[plain.indices[0]] == 0
    top = s.indices[region[s.indices] == 0]
    assert top.tolist() == [plain.indices[0]] == [s.indices[0]]  # region 0's one pick is its most uncertain, first
    assert "the most uncertain of" in s.why[0]


def test_a_class_without_labels_still_gets_a_probability_column():
    x, y = blobs(k=3)
    lab = np.concatenate([np.flatnonzero(y == c)[:5] for c in (0, 1)])
    s = rank(x, x[lab], y[lab], strategy="margin", n=3, num_classes=3, classes=["a", "b", "c"])
    assert len(s.indices) == 3 and any(name in s.why[0] for name in "abc")


def test_empty_and_small_pools():
    x, y = blobs()
    empty = rank(np.zeros((0, 32), np.float32), x[:5], y[:5], strategy="margin", n=5)
    assert len(empty.indices) == 0
    small = rank(x[:3], strategy="typical", n=10)
    assert sorted(small.indices.tolist()) == [0, 1, 2]


def test_mismatched_features_are_refused():
    x, y = blobs()
    with pytest.raises(ConfigError, match="same backbone"):
        rank(x, np.zeros((4, 8), np.float32), np.arange(4), strategy="margin")


@pytest.mark.slow
def test_50000_pool_ranks_under_two_seconds_with_flat_memory():
    """Issue 23 item 5: 50,000 images x 1,280 features (synthetic), time beyond extraction < 2 s; the memory on top
    of the pool itself stays a fraction of it (no P x P, P x L or full-width copy of the pool). Time is the process's
    CPU time (rank runs on one thread), so a busy shared machine does not decide the test."""
    rng = np.random.default_rng(0)
    pool = rng.standard_normal((50_000, 1280), dtype=np.float32)
    lab = rng.standard_normal((200, 1280), dtype=np.float32)
    y = np.arange(200) % 10
    rank(pool[:100], lab[:20], y[:20], strategy="margin", n=2)  # torch's import and first call: not ranking's time
    cases = (("typical", 0), ("margin", 200), ("diversity", 200), ("mix", 200), ("cluster-margin", 200), ("badge", 200))
    for strategy, labelled in cases:
        t0 = time.process_time()
        s = rank(pool, lab[:labelled], y[:labelled], strategy=strategy, n=20)
        seconds = time.process_time() - t0
        assert len(s.indices) == 20
        assert seconds < 2.0, f"{strategy}: {seconds:.2f} CPU s"
        tracemalloc.start()
        rank(pool, lab[:labelled], y[:labelled], strategy=strategy, n=20)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 0.5 * pool.nbytes, f"{strategy}: peak {peak / 2**20:.0f} MiB"


# ---- the command and the list it writes ----------------------------------------------------------------------
def pool_and_labels(tmp_path):
    pool = write_folder(tmp_path / "pool", per_class=6, seed=4)
    files = sorted(pool.rglob("*.png"))
    labelled = tmp_path / "labels.csv"
    with open(labelled, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for p in files[::3]:  # a third of the pool is labelled already
            w.writerow([p, p.parent.name])
    return pool, labelled, len(files), len(files[::3])


def test_suggest_images_leaves_out_labelled_ones_and_writes_a_list_train_reads(tmp_path):
    from typer.testing import CliRunner

    from transferkit.cli.app import app
    from transferkit.data.sources import open_source

    pool, labelled, total, known = pool_and_labels(tmp_path)
    out = tmp_path / "suggest.csv"
    r = CliRunner().invoke(
        app, ["suggest", str(pool), "--labelled", str(labelled), "-n", "5", "--image-size", "32", "-o", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert f"{known} of {total} pool images are labelled already" in r.output
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 5 and all(row["label"] == "" and row["why"] for row in rows)
    asked = {(out.parent / row["path"]).resolve() for row in rows}
    known_paths = {Path(row["path"]).resolve() for row in csv.DictReader(open(labelled))}
    assert asked and not asked & known_paths  # nothing labelled is asked again
    with pytest.raises(DataError, match="no label yet"):  # not filled in: refused, saying what to do
        open_source(out)
    for i, row in enumerate(rows):  # filled in (all but one): read, the empty line skipped with a notice
        row["label"] = "" if i == 0 else ("red" if i % 2 else "blue")
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "label", "score", "why"])
        w.writeheader()
        w.writerows(rows)
    src = open_source(out)
    assert sum(len(v) for v in src.splits.values()) == 4
    assert any("without a path or a label" in p.message for p in src.problems)

    # asked again into the same file: its labels are the user's now, as is any other file; refused, nothing read
    theirs = tmp_path / "notes.txt"
    theirs.write_text("my notes\n")
    for target, why in ((out, "holds 4 label"), (labelled, "not a list suggest wrote"), (theirs, "not a list")):
        before = target.read_bytes()
        r = CliRunner().invoke(app, ["suggest", str(pool), "-n", "2", "--image-size", "32", "-o", str(target)])
        message = str(r.exception)  # a ConfigError: main() prints it and exits 2
        assert isinstance(r.exception, ConfigError) and why in message and "not overwritten" in message
        assert target.read_bytes() == before


def test_suggest_refuses_an_empty_pool_and_a_pool_that_is_all_labelled(tmp_path):
    from transferkit.core.suggest import suggest_images

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no image files"):
        suggest_images(tmp_path / "empty")
    pool = write_folder(tmp_path / "pool", per_class=2)
    with pytest.raises(DataError, match="nothing left to suggest"):
        suggest_images(pool, pool)


def test_the_command_choices_are_the_strategy_table():
    import typing

    from transferkit.config import SuggestOptions

    hints = typing.get_type_hints(SuggestOptions)
    assert typing.get_args(hints["strategy"]) == tuple(STRATEGIES)


# ---- --features: what the pool is embedded with (auto: stages for tiny images, last for photos) ----
def test_features_auto_picks_stages_for_tiny_images_and_last_for_photos(tmp_path):
    from transferkit.core.suggest import TINY_SIDE, auto_features, pool_settings
    from transferkit.data.sources import open_images

    tiles = write_folder(tmp_path / "tiles", per_class=2, size=64)  # EuroSAT-like 64 px tiles
    photos = write_folder(tmp_path / "photos", per_class=1, size=300)  # photos: 300 px
    assert pool_settings(open_images(tiles), "efficientnet_lite0") == ("stages", 192)  # read at 3x the side
    assert pool_settings(open_images(photos), "efficientnet_lite0") == ("last", 224)  # the backbone's own size
    assert pool_settings(open_images(tiles), "efficientnet_lite0", "last") == ("last", 64)  # named: as given
    assert pool_settings(open_images(photos), "efficientnet_lite0", "stages", image_size=96) == ("stages", 96)
    assert auto_features(TINY_SIDE - 1) == "stages" and auto_features(TINY_SIDE) == "last"
    with pytest.raises(ConfigError, match="Valid choices: auto, last, stages, stages\\+last"):
        auto_features(64, "deep")


def test_suggest_and_label_take_features_and_refuse_a_bad_value_with_the_choices(tmp_path):
    import subprocess
    import sys
    import typing

    from transferkit.config import LabelOptions, SuggestOptions

    for options in (SuggestOptions, LabelOptions):  # one declaration, both commands
        assert typing.get_args(typing.get_type_hints(options)["features"]) == ("auto", "last", "stages", "stages+last")
    pool = write_folder(tmp_path / "pool", per_class=2)
    for extra in ([], ["--classes", "a,b"]):  # suggest, label
        cmd = "label" if extra else "suggest"
        r = subprocess.run(
            [sys.executable, "-m", "transferkit", cmd, str(pool), "--features", "deep", *extra],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 2, r.stderr  # refused before anything is embedded
        assert "--features" in r.stderr and "auto, last, stages, stages+last" in r.stderr
        assert "Traceback" not in r.stderr


def test_suggest_with_stages_features_embeds_at_3x_and_standardises(tmp_path):
    from transferkit.core.suggest import suggest_images

    pool, labelled, total, known = pool_and_labels(tmp_path)  # 40 px images: auto is stages, at 3x = 120 -> 128 px
    picks = suggest_images(pool, labelled, n=4, strategy="margin")
    assert (picks.features, picks.image_size) == ("stages", 128)
    assert len(picks.keys) == 4 and picks.strategy == "margin"
    last = suggest_images(pool, labelled, n=4, strategy="margin", features="last")
    assert (last.features, last.image_size) == ("last", 64)


@pytest.mark.parametrize("standardise", [False, True])
def test_the_head_on_the_labels_fits_every_label_at_the_l2_its_holdout_chose(standardise):
    """With 3+ labels a class, a 15% holdout picks the L2; the weights then fit all the labels (with 100 labels the
    holdout's 15 used to be left out of them), as LogisticRegressionCV refits."""
    import torch

    from transferkit.core.heads import fit_head
    from transferkit.core.solvers import fit_logistic
    from transferkit.core.suggest import fit_on_labels

    x, y = blobs(k=3, per=20, spread=2.0)  # overlapping: every row moves the weights
    fitted = fit_on_labels(x, y, 3, seed=0, standardise=standardise)
    l2 = fitted.results["lbfgs"]["l2"]
    held_out = fit_head(x, y, "classification", solver="lbfgs", seed=0, standardise=standardise)  # 85% of the rows
    assert held_out.results["lbfgs"]["l2"] == l2
    xt = torch.as_tensor(x)
    if standardise:
        xt = (xt - xt.mean(0)) / xt.std(0, unbiased=False)
    by_hand = torch.nn.Linear(x.shape[1], 3)
    fit_logistic(by_hand, (xt, torch.as_tensor(y).long()), (xt, torch.as_tensor(y).long()), l2_grid=(l2,))
    ours = fitted.logits(x)
    assert torch.allclose(ours, by_hand(xt).detach(), atol=1e-3)  # all 60 rows, the holdout's L2
    assert not torch.allclose(held_out.logits(x), ours, atol=1e-3)
