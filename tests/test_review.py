"""review: confident learning finds planted flips; duplicates, conflicts, leaks and outliers; data without labels,
one class, a class of one image, a damaged store entry; the fix list; nothing of the user's changed."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import files_state, shared, write_folder
from transferkit.core.confident import (
    _round_keeping_sum,
    confident_joint,
    label_issues,
    multilabel_flips,
    residual_outliers,
    target_outliers,
)
from transferkit.core.review import review, save_review, suggested_decisions, write_fix_list
from transferkit.errors import DataError

FAST = {"image_size": 32}


def noisy_probs(n=600, k=4, flip=0.1, seed=0):
    """Out-of-sample-like probabilities for true classes, and labels with `flip` of them changed."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), true] += 3.0
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    given = true.copy()
    flipped = rng.choice(n, int(flip * n), replace=False)
    given[flipped] = (true[flipped] + rng.integers(1, k, len(flipped))) % k
    return given, p, given != true


def test_confident_learning_finds_planted_flips_and_beats_random():
    given, p, wrong = noisy_probs()
    found = label_issues(given, p)
    tp = (found.flagged & wrong).sum()
    precision, recall = tp / found.flagged.sum(), tp / wrong.sum()
    assert precision > 0.8 and recall > 0.8  # random flagging would have precision 0.1
    assert (found.suggested[found.flagged & wrong] != given[found.flagged & wrong]).all()
    # the ranking puts the wrong labels first: AUROC of the score
    order = np.argsort(-found.score)
    assert wrong[order[: wrong.sum()]].mean() > 0.8


def test_confident_joint_rows_sum_to_class_sizes_and_normalized_margin_ranks():
    given, p, _ = noisy_probs(300, 3)
    joint, thresholds = confident_joint(given, p)
    np.testing.assert_allclose(joint.sum(1), np.bincount(given), rtol=1e-9)
    assert thresholds.shape == (3,) and (thresholds > 0.33).all()
    found = label_issues(given, p, by="normalized_margin")
    assert 0 <= found.score.min() and found.score.max() <= 1
    with pytest.raises(ValueError, match="self_confidence"):
        label_issues(given, p, by="margin")


def test_confident_joint_counts_an_image_over_several_thresholds_in_its_top_class_and_rounds_ties_by_class():
    # thresholds (mean self-confidence): class 0 (0.9 + 0.9 + 0.5) / 3 = 0.767, class 1 (0.3 + 0.3) / 2 = 0.3, class 2
    # (0.2 + 0.2) / 2 = 0.2. The last class-0 image, (0.5, 0.3, 0.2), misses class 0's threshold but reaches 1's and 2's:
    # it counts in its top class overall, 0 (the argmax among those above would have put it in C[0, 1]), so row 0 of
    # the joint is 3 + 0 + 0, not 2 + 1 + 0.
    given = np.array([0, 0, 0, 1, 1, 2, 2])
    p = np.array(
        [
            [0.9, 0.05, 0.05],
            [0.9, 0.05, 0.05],
            [0.5, 0.3, 0.2],
            [0.6, 0.3, 0.1],
            [0.1, 0.3, 0.6],
            [0.7, 0.1, 0.2],
            [0.1, 0.7, 0.2],
        ]
    )
    joint, thresholds = confident_joint(given, p)
    np.testing.assert_allclose(thresholds, [2.3 / 3, 0.3, 0.2])
    assert joint[0].tolist() == [3, 0, 0]
    assert not label_issues(given, p).flagged[2]  # and its top class is its label: never flagged
    # calibrated rows rounded to whole counts that keep the row's sum: nearest (halves to even) first, then the cell
    # rounding moved furthest the other way gives or takes the difference; equal remainders without images to judge
    # them by go by class order
    assert _round_keeping_sum(np.array([2.5, 1.5, 1.0])).tolist() == [2, 2, 1]  # 2 + 2 + 1 = 5 already
    assert _round_keeping_sum(np.array([2.7, 1.6, 0.7])).tolist() == [3, 1, 1]  # 3 + 2 + 1 = 6: 1.6 gives one back
    assert _round_keeping_sum(np.array([1.4, 1.4, 2.2])).tolist() == [1, 2, 2]  # 1 + 1 + 2 = 4: the later 1.4 takes it
    assert _round_keeping_sum(np.array([1.5, 1.5, 2.0])).tolist() == [1, 2, 2]  # 2 + 2 + 2 = 6: the earlier 1.5 gives


def test_equal_remainders_go_to_the_cell_whose_next_image_is_the_most_suspect():
    # thresholds: class 0 (0.9 * 3 + 0.05 + 0.05 + 0.1 + 0.4) / 7 = 0.471, classes 1 and 2: 0.8. Of the 7 images
    # labelled 0, three count as 0, d as 1, e as 2; x and y reach no threshold. Row 0: 3 + 1 + 1, calibrated to 7:
    # 4.2 + 1.4 + 1.4, rounded 4 + 1 + 1 = 6, one short, and cells (0, 1) and (0, 2) tie at 0.4. The disputed count
    # decides one image per cell, the second by margin: x in (0, 1) (margin 0.75 - 0.1; p(0) 0.1: suspicion 0.9),
    # y in (0, 2) (0.55 - 0.4; suspicion 0.6). x is the more suspect: (0, 1) takes it and x is flagged, y not. The
    # old rule (class order: the later class takes it) gave 4 + 1 + 2 and flagged y.
    given = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 2])
    p = np.array(
        [
            [0.9, 0.05, 0.05],
            [0.9, 0.05, 0.05],
            [0.9, 0.05, 0.05],
            [0.05, 0.9, 0.05],  # d: confidently 1
            [0.05, 0.05, 0.9],  # e: confidently 2
            [0.1, 0.75, 0.15],  # x: no threshold reached, p(given) 0.1
            [0.4, 0.05, 0.55],  # y: no threshold reached, p(given) 0.4
            [0.1, 0.8, 0.1],
            [0.1, 0.8, 0.1],
            [0.1, 0.1, 0.8],
            [0.1, 0.1, 0.8],
        ]
    )
    joint, _ = confident_joint(given, p)
    assert joint[0].tolist() == [4, 2, 1]
    assert np.flatnonzero(label_issues(given, p).flagged).tolist() == [3, 4, 5]  # d, e and x; not y
    # giving back: 1.6 + 1.6 + 1.8 (5) -> 2 + 2 + 2 = 6; the tied 1.6s' last images have suspicion 0.3 and 0.7: the
    # less suspect cell gives it back
    row = np.array([1.6, 1.6, 1.8])
    assert _round_keeping_sum(row, lambda whole, taking: np.array([0.3, 0.7, -1.0])).tolist() == [1, 2, 2]
    assert _round_keeping_sum(row, lambda whole, taking: np.array([0.7, 0.3, -1.0])).tolist() == [2, 1, 2]


def test_clean_labels_flag_almost_nothing():
    given, p, _ = noisy_probs(flip=0.0)
    assert label_issues(given, p).flagged.mean() < 0.03


def test_multilabel_flips_and_regression_residuals():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, (400, 3))
    p = np.clip(y * 0.85 + 0.05 + rng.normal(0, 0.05, y.shape), 0, 1)
    noisy = y.copy()
    noisy[:20, 1] = 1 - noisy[:20, 1]
    flagged, score = multilabel_flips(noisy, p)
    assert flagged[:20, 1].mean() >= 0.85 and flagged[20:].mean() < 0.02
    target = rng.normal(0, 1, 300)
    pred = target + rng.normal(0, 0.1, 300)
    target[[5, 77]] += 3.0
    flagged, z = residual_outliers(target, pred)
    assert set(np.flatnonzero(flagged)) == {5, 77}


def test_target_outliers_on_log_for_spread_positive_targets_and_plain_otherwise():
    rng = np.random.default_rng(2)
    price = np.exp(rng.normal(np.log(500_000), 0.5, 500))  # skewed, positive: 100,000s to 2,000,000s
    price[7] = price[7] / 20  # a dropped digit and more: ~25,000
    pred = price * np.exp(rng.normal(0, 0.6, 500))  # a photo predicts a price to within a factor of ~2
    pred[7] = 500_000.0
    # the residual of the error is small next to the residuals of the expensive houses: residuals miss it ...
    assert not residual_outliers(price, pred)[0][7]
    flagged, z, on_log = target_outliers(price)
    assert on_log and z[7] < -4.5 and set(np.flatnonzero(flagged)) == {7}  # ... the targets' own distribution not
    # a target that is a log already (10 to 16) is not logged twice, and negative targets are taken as they are
    assert not target_outliers(np.log(price))[2] and not target_outliers(price - 600_000)[2]
    assert set(np.flatnonzero(target_outliers(np.log(price))[0])) == {7}


def test_regression_review_flags_a_target_far_out_in_the_targets_themselves(tmp_path):
    root = write_folder(tmp_path / "imgs", per_class=10)
    rng = np.random.default_rng(3)
    centre = {"red": 200_000.0, "green": 400_000.0, "blue": 800_000.0}
    lines = ["path,price"]
    for p in sorted(root.rglob("*.png")):
        v = centre[p.parent.name] * np.exp(rng.normal(0, 0.45))  # prices spread within a class: colour says little
        if p.name == "green_03.png":
            v = 4_000.0  # an entry error two digits short; its residual (~400,000) is one of many that size
        lines.append(f"{p.relative_to(tmp_path)},{v:.0f}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    r = review(tmp_path / "labels.csv", task="regression", target_column="price", k=4, **FAST)
    label = {Path(it.key).name: it for it in r.by_kind("label")}
    assert "green_03.png" in label
    assert "outlier of the targets" in label["green_03.png"].reason and "log(target)" in label["green_03.png"].reason
    assert label["green_03.png"].score >= 4.5 and len(label) <= 3  # not every expensive square as well


@pytest.fixture
def folder_with_defects(tmp_path) -> Path:
    """Three colour classes; a byte copy inside a class, a copy filed under another class (conflict), one unreadable file and one odd image (white noise) in a class."""
    root = write_folder(tmp_path / "data", per_class=12)
    shutil.copy(root / "red" / "red_00.png", root / "red" / "red_copy.png")
    shutil.copy(root / "green" / "green_03.png", root / "blue" / "looks_green.png")
    from PIL import Image

    (root / "red" / "broken.png").write_bytes(b"not a png at all")
    rng = np.random.default_rng(9)
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).resize((40, 40)).save(root / "green" / "odd.png")
    return root


def test_review_finds_duplicates_conflicts_unreadable_and_changes_nothing(folder_with_defects, tmp_path):
    before = files_state(folder_with_defects)
    # synthetic squares of one colour are closer to each other than real photos are: only copies count here
    r = review(folder_with_defects, k=3, duplicate_threshold=0.995, **FAST)
    assert files_state(folder_with_defects) == before
    assert r.task == "classification" and r.classes == ["blue", "green", "red"] and "label" in r.checks
    by = {}
    for it in r.items:
        by.setdefault(Path(it.key).name, []).append(it)
    # one group, both members: an exact duplicate, or a leak where train's split put them apart
    exact = {it.group for n in ("red_00.png", "red_copy.png") for it in by[n] if "identical bytes" in it.reason}
    assert len(exact) == 1 and None not in exact and by["red_copy.png"][0].kind in ("exact-duplicate", "leak")
    assert {it.kind for it in by["looks_green.png"]} >= {"conflict"}
    assert {it.kind for it in by["green_03.png"]} >= {"conflict"}
    assert any(it.kind == "outlier" and "Cannot be read" in it.reason for it in by["broken.png"])
    d = r.to_dict()
    json.dumps(d)
    assert {"classes", "task", "data", "items"} <= set(d) and d["counts"]["conflict"] >= 2
    for it in d["items"]:
        assert set(it) >= {"key", "kind", "score", "given", "suggested", "group", "reason"}

    paths = save_review(r, tmp_path / "out")
    rows = list(csv.DictReader(open(paths["csv"])))
    assert rows and set(rows[0]) >= {"path", "kind", "score", "given", "suggested"}
    save_review(r, tmp_path / "out")  # its own files: overwritten
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "issues.csv").write_text("my notes\n")
    with pytest.raises(DataError, match="not written by transferkit review"):
        save_review(r, tmp_path / "theirs")
    assert (tmp_path / "theirs" / "issues.csv").read_text() == "my notes\n"

    # the fix list: the page's decisions (and the automatic ones) applied; train reads it
    decisions = suggested_decisions(r)
    assert str(folder_with_defects / "red" / "broken.png") in decisions
    decisions[str(folder_with_defects / "blue" / "looks_green.png")] = ("relabel", "green")
    decisions[str(folder_with_defects / "green" / "odd.png")] = "exclude"  # the page's form
    counts = write_fix_list(r, decisions, tmp_path / "cleaned.csv")
    with open(tmp_path / "cleaned.csv") as f:  # paths relative to the list, as `train` reads them
        assert f.readline().startswith("# written by transferkit review")
        lines = {str((tmp_path / row["path"]).resolve()): row["label"] for row in csv.DictReader(f)}
    assert lines[str(folder_with_defects / "blue" / "looks_green.png")] == "green"
    assert str(folder_with_defects / "green" / "odd.png") not in lines
    assert counts["written"] == len(lines) == len(r.images) - counts["exclude"]
    from transferkit.data.sources import open_source

    src = open_source(tmp_path / "cleaned.csv")
    assert sum(len(v) for v in src.splits.values()) == len(lines)
    with pytest.raises(DataError, match="not a class"):
        write_fix_list(r, {str(folder_with_defects / "red" / "red_01.png"): ("relabel", "purple")}, tmp_path / "x.csv")


def test_a_fix_list_of_data_given_relative_to_here_reads_from_anywhere(tmp_path, monkeypatch):
    """DATA as typed (`review data`) keys images relative to the working folder; the list `train` reads resolves
    paths relative to the list itself: written relative to it, `train out/cleaned.csv` finds every image."""
    from transferkit.data.sources import open_source

    write_folder(tmp_path / "data", per_class=4)
    monkeypatch.chdir(tmp_path)
    r = review("data", k=2, **FAST)
    assert r.images and not Path(r.images[0]["key"]).is_absolute()
    write_fix_list(r, {}, Path("out") / "cleaned.csv")
    monkeypatch.chdir(tmp_path / "data")  # anywhere else
    src = open_source(tmp_path / "out" / "cleaned.csv")
    assert sum(len(v) for v in src.splits.values()) == len(r.images) == 12
    assert not src.problems
    write_fix_list(r, {}, tmp_path / "out" / "cleaned.csv")  # its own file: written again
    (tmp_path / "mine.csv").write_text("path,label\ndata/red/red_00.png,red\n")  # a user's list: never replaced
    with pytest.raises(DataError, match="not written by transferkit review"):
        write_fix_list(r, {}, tmp_path / "mine.csv")


def test_planted_label_flips_are_found_on_images(tmp_path):
    root = write_folder(tmp_path / "data", per_class=14)
    for name in ("red_00.png", "red_01.png"):  # red squares filed as blue
        shutil.move(root / "red" / name, root / "blue" / name)
    for features, scores_from in (("auto", "out-of-fold, stages features"), ("last", "out-of-fold, last features")):
        # auto: tiny images' label heads read features from every depth (suggest.auto_features), photos' the last layer
        r = review(root, k=4, features=features, **FAST)
        assert r.scores_from == scores_from
        flagged = {Path(it.key).name: it for it in r.by_kind("label")}
        assert {"red_00.png", "red_01.png"} <= set(flagged)
        assert flagged["red_00.png"].given == "blue" and flagged["red_00.png"].suggested == "red"
        # duplicates and outliers read the last layer whatever the heads read: its calibrated thresholds
        assert r.embedding.features.shape[1] == 1280


def test_a_model_that_is_no_bundle_is_refused_before_any_image_is_read(tmp_path):
    import os

    from transferkit.errors import TransferkitError

    root = write_folder(tmp_path / "data", per_class=6)
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(TransferkitError, match="transferkit.json"):
        review(root, model=tmp_path / "not-a-model", features="stages", **FAST)
    assert not (Path(os.environ["TRANSFERKIT_CACHE"]) / "store").exists()  # nothing was extracted first


def test_no_labels_one_class_and_a_class_of_one(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    write_folder(tmp_path / "src", per_class=6)
    for p in (tmp_path / "src").rglob("*.png"):
        shutil.copy(p, plain / p.name)
    shutil.copy(plain / "red_00.png", plain / "again.png")
    r = review(plain, **FAST)
    assert r.task == "none" and r.checks == ["duplicate", "outlier"] and "No labels" in r.notes[0]
    assert any(it.kind == "exact-duplicate" for it in r.items) and all(it.given is None for it in r.items)
    with pytest.raises(DataError, match="no labels"):
        write_fix_list(r, {}, tmp_path / "c.csv")

    one = write_folder(tmp_path / "one", per_class=8, classes=("red",))
    r = review(one, **FAST)
    assert "label" not in r.checks and any("One class" in n for n in r.notes)

    lonely = write_folder(tmp_path / "lonely", per_class=8, classes=("red", "green"))
    (lonely / "blue").mkdir()
    shutil.copy(tmp_path / "src" / "blue" / "blue_00.png", lonely / "blue" / "only.png")
    r = review(lonely, k=5, **FAST)
    assert "label" in r.checks and any("'blue' has 1 image" in n for n in r.notes)
    assert not any(it.kind == "label" and Path(it.key).name == "only.png" for it in r.items)


def test_a_damaged_store_entry_is_recomputed_and_the_review_is_the_same(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "data", per_class=8)
    first = review(root, k=3, **FAST)
    cache = Path(monkeypatch_env := __import__("os").environ["TRANSFERKIT_CACHE"])
    matrices = list((cache / "store").glob("*/features*"))
    assert matrices, f"no store matrix under {cache} ({monkeypatch_env})"
    for m in matrices:
        data = bytearray(m.read_bytes())
        data[100:140] = b"\x00\x00\xe0\x40" * 10  # finite numbers over one row: only its checksum can tell
        m.write_bytes(bytes(data))
    from transferkit.core.embed import embed

    assert embed(root, image_size=32).computed == 1  # the damaged row, found by its checksum, and only it
    again = review(root, k=3, **FAST)
    assert [(i.key, i.kind) for i in again.items] == [(i.key, i.kind) for i in first.items]


@pytest.mark.slow
def test_review_on_hymenoptera_lists_the_placeholder_gif(tmp_path):
    data = shared("hymenoptera")
    before = files_state(data)
    r = review(data)
    gif = [it for it in r.items if it.key.endswith("imageNotFound.gif")]
    assert gif and gif[0].kind == "outlier", [(i.kind, i.key) for i in r.items[:10]]
    assert files_state(data) == before


def test_regression_list_residuals_and_a_shared_photo_with_two_values(tmp_path):
    root = write_folder(tmp_path / "imgs", per_class=10)
    shutil.copy(root / "red" / "red_00.png", root / "red" / "red_00_again.png")
    value = {"red": 10.0, "green": 20.0, "blue": 30.0}
    rng = np.random.default_rng(0)
    lines = ["path,price"]
    for p in sorted(root.rglob("*.png")):
        v = value[p.parent.name] + rng.normal(0, 0.5)
        if p.name == "green_04.png":
            v = 95.0  # an entry error
        if p.name == "red_00_again.png":
            v = 14.0  # the same photo, another price
        lines.append(f"{p.relative_to(tmp_path)},{v:.2f}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    r = review(
        tmp_path / "labels.csv", task="regression", target_column="price", k=4, duplicate_threshold=0.995, **FAST
    )
    label = {Path(it.key).name for it in r.by_kind("label")}
    assert "green_04.png" in label
    assert {Path(it.key).name for it in r.by_kind("conflict")} == {"red_00.png", "red_00_again.png"}


def test_train_review_reports_counts_only(tmp_path):
    from transferkit.core.review import review_counts

    root = write_folder(tmp_path / "data", per_class=6)
    shutil.copy(root / "red" / "red_00.png", root / "green" / "red_00.png")
    line = review_counts(root, epochs=3, lr=0.1, **FAST)  # training's options are ignored, not refused
    assert "conflict" in line and "Labels are unchanged" in line


def test_multilabel_list_gets_per_label_flips(tmp_path):
    root = write_folder(tmp_path / "imgs", per_class=10)
    lines = ["path,labels"]
    for p in sorted(root.rglob("*.png")):
        tags = {"red": "warm", "green": "plant", "blue": "cold"}[p.parent.name]
        if p.name in ("blue_01.png", "blue_02.png"):
            tags = "warm"  # cold squares tagged warm
        lines.append(f"{p.relative_to(tmp_path)},{tags}")
    (tmp_path / "tags.csv").write_text("\n".join(lines) + "\n")
    r = review(tmp_path / "tags.csv", task="multilabel", k=4, **FAST)
    flagged = {Path(it.key).name: it for it in r.by_kind("label")}
    assert r.task == "multilabel" and {"blue_01.png", "blue_02.png"} <= set(flagged)
    assert "cold" in flagged["blue_01.png"].suggested and "Per-label flips" in flagged["blue_01.png"].reason


def test_near_duplicates_are_looked_for_where_features_or_pixels_tell_images_apart():
    """Features where a typical image has 10 others within the threshold (upscaled 8 px digits) separate nothing:
    single-linkage chained 396 of 500 digits into one conflict. There the pixels are compared (grey 16 px thumbnails):
    near-copies are grouped, distinct images are not; where the pixels are crowded too, nothing is, with a note.
    Distinct images with a few copies each are still grouped by their features: a set of duplicates is not a crowd."""
    from types import SimpleNamespace

    from PIL import Image

    from transferkit.core.review import _duplicate_items, _neighbours

    rng = np.random.default_rng(0)
    n = 60
    keys = [f"a.h5#train[{i}]" for i in range(n)]
    rows = [(k, i % 3, "train" if i % 2 else "test") for i, k in enumerate(keys)]
    given = [str(i % 3) for i in range(n)]
    at = {k: i for i, k in enumerate(keys)}
    crowd = SimpleNamespace(features=np.ones(32) + rng.normal(size=(n, 32)) * 0.1)  # all within cosine ~0.99

    def duplicates(emb, imgs, notes):  # the features' rows, their neighbours, then the groups, as `review` calls them
        held, x, near = _neighbours(rows, emb, at)
        return _duplicate_items(rows, given, held, x, imgs, False, 0.85, notes, near)

    def images(pixels):  # every image's pixels hash differently: no exact copies
        return SimpleNamespace(
            identity=lambda key: f"px:{key}", load=lambda key: Image.fromarray(pixels[at[key]]).convert("RGB")
        )

    noise = rng.integers(0, 256, (n, 24, 24), dtype=np.uint8)
    for i in (1, 11, 21):  # three near-copies: the image before them, a little noise added
        noise[i] = np.clip(noise[i - 1].astype(int) + rng.integers(-3, 4, (24, 24)), 0, 255)
    notes: list[str] = []
    found = duplicates(crowd, images(noise), notes)
    assert "by pixels" in notes[0] and {it.group for it in found} == {0, 1, 2}
    assert sorted(at[it.key] for it in found) == [0, 1, 10, 11, 20, 21] and "pixels within" in found[0].reason

    ramp = np.tile(np.linspace(0, 255, 24), (24, 1))
    flat = np.clip(ramp + rng.normal(size=(n, 24, 24)), 0, 255).astype(np.uint8)  # the pixels crowd too
    notes = []
    assert duplicates(crowd, images(flat), notes) == []
    assert "Near-duplicates not checked" in notes[0]

    base = rng.normal(size=(n // 3, 32))  # 20 distinct images, 3 near copies of each
    copies = SimpleNamespace(features=np.repeat(base, 3, axis=0) + rng.normal(size=(n, 32)) * 0.01)
    notes = []
    found = duplicates(copies, images(noise), notes)
    assert notes == [] and len({it.group for it in found}) == n // 3 and len(found) == n


def test_the_fix_list_of_a_pre_split_set_keeps_its_splits(tmp_path):
    """train/ val/ test/ folders: the fix list's `split` column keeps each image where the user put it, so `train` on
    it (make_splits) never moves a val or test image into training; a val the review carved (train + test only) goes
    back to train."""
    from transferkit.data.sources import open_source
    from transferkit.data.split import make_splits

    root = tmp_path / "presplit"
    for split, seed in (("train", 1), ("val", 2), ("test", 3)):
        write_folder(root / split, per_class=4, seed=seed)
    r = review(root, k=2, features="last", **FAST)
    assert r.data_splits == ["train", "val", "test"]
    odd = str(root / "val" / "red" / "red_01.png")
    write_fix_list(r, {odd: "exclude"}, tmp_path / "cleaned.csv")
    assert (tmp_path / "cleaned.csv").read_text().splitlines()[1] == "path,label,split"
    splits = make_splits(open_source(tmp_path / "cleaned.csv"), (0.7, 0.15, 0.15), 0)  # what train does with it
    assert {n: sorted(s.key for s in v) for n, v in splits.items()} == {
        n: sorted(str(p) for p in (root / n).rglob("*.png") if str(p) != odd) for n in ("train", "val", "test")
    }

    shutil.rmtree(root / "val")  # train + test: the review carves a val out of train, the list does not keep it
    r = review(root, k=2, features="last", **FAST)
    assert r.data_splits == ["train", "test"] and any(img["split"] == "val" for img in r.images)
    write_fix_list(r, {}, tmp_path / "cleaned.csv")
    src = open_source(tmp_path / "cleaned.csv")
    assert {n: len(v) for n, v in src.splits.items()} == {"train": 12, "test": 12}

    r = review(
        write_folder(tmp_path / "pool", per_class=3), k=2, features="last", **FAST
    )  # one pool: train splits it, as before
    assert r.data_splits == []
    write_fix_list(r, {}, tmp_path / "pool.csv")
    assert (tmp_path / "pool.csv").read_text().splitlines()[1] == "path,label"


def test_review_refuses_a_file_as_out_or_fix_out_before_the_review(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import transferkit.core.review
    from transferkit.cli.app import app
    from transferkit.errors import TransferkitError

    def reached(*a, **k):
        raise AssertionError("the review ran before the refusal")

    monkeypatch.setattr(transferkit.core.review, "review", reached)
    root = write_folder(tmp_path / "data", per_class=2)
    mine = tmp_path / "houses.csv"
    mine.write_text("path,price\n")
    for options, said in (
        (["-o", str(mine)], f"--out '{mine}' is a file, not a folder"),
        (["-o", str(mine / "sub")], f"--out '{mine / 'sub'}' cannot be made: '{mine}' is a file"),
        (["--fix-out", str(mine)], "not written by transferkit review: choose another --fix-out"),
        (["--fix-out", str(mine / "c.csv")], f"'{mine}' is a file, not a folder. Give another --fix-out"),
        (["--fix-out", str(root)], "is a folder: give the list file's name"),
    ):
        r = CliRunner().invoke(app, ["review", str(root), *options])
        assert isinstance(r.exception, TransferkitError) and said in str(r.exception), (options, r.output)
    assert mine.read_text() == "path,price\n"
    with pytest.raises(TransferkitError, match="is a file, not a folder"):  # the Python API says it too
        save_review(None, mine)


def test_a_small_set_is_crowded_by_a_tenth_of_its_images_not_by_ten():
    """30 upscaled digits, 15 a class: each has 3-9 others within 0.85, not 10, so the features were trusted and
    single-linkage chained each class into one 'leak' group (27 of 30 images). A set of 400 keeps the 10."""
    from transferkit.core.review import _crowded, crowd_size

    assert [crowd_size(n) for n in (5, 30, 99, 100, 400)] == [2, 3, 9, 10, 10]

    def near(n):  # every row: 4 others at 0.95, the rest at 0.5 (most similar first)
        sims = np.full((n, 10), 0.5, np.float32)
        sims[:, :4] = 0.95
        return sims, np.zeros((n, 10), np.int64)

    assert _crowded(near(30), 0.85) and not _crowded(near(400), 0.85)
