"""The core functions on tiny data: images apart from labels, `embed` through the feature store, `fit_head`,
`oof_predict`, and `fit`'s use of the store (a relabelled list extracts nothing)."""

from __future__ import annotations

import numpy as np
import pytest

import transferkit
from transferkit.core.heads import fit_head, holdout
from transferkit.core.oof import fold_indices, oof_predict
from transferkit.data.imageset import ImageSet, array_identity, file_identity

from .conftest import FAST, write_folder


def blobs(n=120, f=16, k=3, seed=0, spread=0.5):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, f)) * 3
    y = np.arange(n) % k
    return (centres[y] + spread * rng.normal(size=(n, f))).astype(np.float32), y


def count_extractions(monkeypatch) -> list[int]:
    from transferkit.engine import features as feats

    seen, original = [], feats.extract
    monkeypatch.setattr(feats, "extract", lambda net, ds, *a, **kw: seen.append(len(ds)) or original(net, ds, *a, **kw))
    return seen


# ---- images apart from labels ----------------------------------------------------------------------------------
def test_identity_follows_the_image_not_its_label_or_split(tmp_path):
    root = write_folder(tmp_path / "d", per_class=2)
    files = sorted(root.rglob("*.png"))
    a = file_identity(str(files[0]))
    assert a == file_identity(str(files[0].parent / ".." / files[0].parent.name / files[0].name))  # same file
    assert a != file_identity(str(files[1]))
    files[0].write_bytes(files[0].read_bytes() + b"\0")  # an edited file is another image
    assert file_identity(str(files[0])) != a
    px = np.zeros((2, 8, 8, 3), np.uint8)
    px[1, 0, 0, 0] = 1
    assert array_identity(px[0]) == array_identity(px[0].copy()) != array_identity(px[1])
    imgs = ImageSet(tmp_path, ["x#train[0]", "x#test[0]"], {"train": px[:1], "test": px[:1]})
    assert imgs.identity("x#train[0]") == imgs.identity("x#test[0]")  # the same pixels in two splits: one image


def test_a_plain_folder_of_unlabelled_images_opens(tmp_path):
    from transferkit.data.sources import open_images

    root = write_folder(tmp_path / "pool", per_class=2, classes=("red",))
    (root / "red" / "nested").mkdir()
    (root / "loose.png").write_bytes((root / "red" / "red_00.png").read_bytes())
    (root / "notes.txt").write_text("not an image")
    imgs = open_images(root)
    assert len(imgs) == 3 and all(k.startswith(str(root.resolve())) for k in imgs.keys)
    listed = tmp_path / "pool.csv"
    listed.write_text("path,label\npool/red/red_00.png,\npool/loose.png,\n")
    want = [str((tmp_path / p).resolve()) for p in ("pool/red/red_00.png", "pool/loose.png")]
    assert open_images(listed).keys == want


# ---- embed through the store ------------------------------------------------------------------------------------
def test_embed_extracts_each_image_once_and_fit_reuses_it(tmp_path, monkeypatch):
    from transferkit.core.embed import embed

    seen = count_extractions(monkeypatch)
    root = write_folder(tmp_path / "d", per_class=4)
    first = embed(root, image_size=32)
    assert first.features.shape[0] == 12 and first.computed == 12 and sum(seen) == 12
    again = embed(root, image_size=32)
    assert again.computed == 0 and sum(seen) == 12 and np.array_equal(again.features, first.features)
    assert first.features.std() > 0 and np.isfinite(first.features).all()
    extra = write_folder(tmp_path / "extra", per_class=1, seed=3)
    for f in extra.rglob("*.png"):  # one new image per class, the old ones untouched
        f.rename(root / f.parent.name / "new.png")
    more = embed(root, image_size=32)
    assert more.computed == 3 and sum(seen) == 15
    row = {k: i for i, k in enumerate(more.keys)}
    assert np.array_equal(more.features[[row[k] for k in first.keys]], first.features)


def test_relabelling_a_list_and_training_again_extracts_nothing(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "d", per_class=8)
    files = sorted(root.rglob("*.png"))
    listed = tmp_path / "labels.csv"
    rows = [f"{f.relative_to(tmp_path)},{f.parent.name}" for f in files]
    listed.write_text("path,label\n" + "\n".join(rows) + "\n")
    seen = count_extractions(monkeypatch)
    transferkit.fit(listed, strategy="linear", out=str(tmp_path / "runs"), **FAST)
    assert sum(seen) == len(files)
    rows[0] = rows[0].rsplit(",", 1)[0] + ",green" if not rows[0].endswith("green") else rows[0][:-5] + "red"
    listed.write_text("path,label\n" + "\n".join(rows) + "\n")
    seen.clear()
    run = transferkit.fit(listed, strategy="linear", seed=1, out=str(tmp_path / "runs"), **FAST)  # other split too
    assert seen == [] and run.test_metrics["n"] > 0


# ---- heads --------------------------------------------------------------------------------------------------------
def test_fit_head_learns_and_keeps_the_better_solver():
    x, y = blobs()
    fitted = fit_head(x[:90], y[:90], val=(x[90:], y[90:]))
    assert set(fitted.results) == {"lbfgs", "adamw", "prototypes"}  # a plain call measures prototypes too
    assert sum(r["kept"] for r in fitted.results.values()) == 1
    assert (fitted.predict(x[90:]).argmax(1) == y[90:]).mean() == 1.0
    kept = fitted.results[fitted.solver]
    assert all(kept["val_acc"] >= r["val_acc"] for r in fitted.results.values())
    mlp = fit_head(x, y, head="mlp:8", solver="lbfgs")  # the convex solve does not apply: AdamW trains it
    assert mlp.solver == "adamw"
    reg = fit_head(x, x[:, 0] * 2.0 + 1.0, task="regression", solver="lbfgs")
    assert reg.solver == "ridge" and np.corrcoef(reg.predict(x), x[:, 0])[0, 1] > 0.99
    with pytest.raises(transferkit.errors.ConfigError, match="head-solver"):
        fit_head(x, y, solver="sgd")


def test_holdout_is_stratified_and_seeded():
    y = np.array([0] * 20 + [1] * 4 + [2] * 2)
    tr, va = holdout(y, 0.15, 0)
    assert sorted(set(y[va])) == [0, 1, 2] and len(tr) + len(va) == len(y) and not set(tr) & set(va)
    assert np.array_equal(holdout(y, 0.15, 0)[1], va) and not np.array_equal(holdout(y, 0.15, 1)[1], va)


def test_oof_scores_come_from_heads_that_never_saw_the_row():
    x, y = blobs(n=90)
    noisy = y.copy()
    noisy[:6] = (y[:6] + 1) % 3  # six wrong labels: their own head would learn them, an out-of-fold one cannot
    oof = oof_predict(x, noisy, k=5)
    assert oof.scores.shape == (90, 3) and np.allclose(oof.scores.sum(1), 1, atol=1e-5)
    assert set(oof.fold) == set(range(5)) and all(np.bincount(noisy[oof.fold == i]).min() >= 3 for i in range(5))
    given = oof.scores[np.arange(90), noisy]
    assert given[:6].max() < 0.5 and given[6:].mean() > 0.8  # wrong labels score low, right ones high
    held = oof.fold == 2  # fold 2's rows are exactly what a head fitted without them says
    alone = fit_head(x[~held], noisy[~held], solver="lbfgs", seed=2)
    assert np.allclose(alone.predict(x[held]), oof.scores[held], atol=1e-5)
    assert oof.metrics["accuracy"] == pytest.approx((oof.scores.argmax(1) == noisy).mean())
    with pytest.raises(ValueError, match="rarest class has 2"):
        fold_indices(np.array([0] * 10 + [1] * 2), 5)


def test_train_fine_tunes_a_model_on_images_and_index_arrays(tmp_path):
    from transferkit.backbones import create_backbone
    from transferkit.backbones.model import TransferModel
    from transferkit.core.train import train
    from transferkit.data.sources import open_images

    root = write_folder(tmp_path / "d", per_class=6, classes=("red", "blue"))
    imgs = open_images(root)
    labels = [0 if "/red/" in k else 1 for k in imgs.keys]
    net, bcfg = create_backbone("efficientnet_lite0", pretrained=False)
    model = TransferModel(net, bcfg, num_outputs=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rows = np.arange(len(labels))
    done = train(
        model,
        imgs,
        labels,
        {"train": rows[rows % 3 != 0], "val": rows[rows % 3 == 0]},
        strategy="finetune",
        epochs=2,
        image_size=32,
        batch_size=4,
        quiet=True,
    )
    assert [r["phase"] for r in done.history] == ["finetune", "finetune"]
    assert all(np.isfinite(r["val_loss"]) for r in done.history)
    moved = [
        k
        for k, v in done.model.state_dict().items()
        if k.startswith("net.") and v.is_floating_point() and not torch_equal(v, before[k])
    ]
    assert moved  # the backbone trained, not only the head
    with pytest.raises(transferkit.errors.ConfigError, match="one strategy"):
        train(model, imgs, labels, {"train": rows, "val": rows}, strategy="auto")


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_fit_head_refuses_features_and_labels_that_do_not_match_or_labels_that_are_names():
    """5 rows with 2 labels fitted a head; 2 rows with 5 raised IndexError; names, a torch TypeError."""
    from transferkit import fit_head
    from transferkit.errors import DataError

    with pytest.raises(DataError, match=r"features \(5, 3\) and their labels \(2\) do not match"):
        fit_head(np.zeros((5, 3)), [0, 1])
    with pytest.raises(DataError, match=r"val \(2, 3\) and their labels \(3\)"):
        fit_head(np.zeros((4, 3)), [0, 1, 0, 1], val=(np.zeros((2, 3)), [0, 1, 1]))
    with pytest.raises(DataError, match="labels of dtype <U3.*return_inverse"):
        fit_head(np.zeros((4, 3)), ["ant", "bee", "ant", "bee"])
