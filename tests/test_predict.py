"""Bundles load without pickle and stand alone; predict agrees with evaluate; every image mode is read."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import transferkit
from transferkit.data.images import open_rgb

from .conftest import FAST


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from .conftest import write_folder

    root = tmp_path_factory.mktemp("pred")
    data = write_folder(root / "colours", per_class=12)
    run = transferkit.fit(data, strategy="linear", out=str(root / "runs"), cache_dir=str(root / "cache"), **FAST)
    return data, run


def test_predict_agrees_with_evaluate(trained):
    data, run = trained
    metrics = transferkit.evaluate(run.best, data)  # the run's own test split, read from split.csv
    assert metrics["split"] == "test" and metrics["n"] == 5
    assert metrics["accuracy"] == pytest.approx(run.test_metrics["accuracy"])
    test_rows = [
        ln.split(",") for ln in (run.path / "split.csv").read_text().splitlines()[1:] if ln.startswith("test,")
    ]
    preds = transferkit.load(run.best).predict([r[1] for r in test_rows], top_k=2)
    acc = np.mean([p["label"] == r[3] for p, r in zip(preds, test_rows)])
    assert acc == pytest.approx(metrics["accuracy"])
    assert all(len(p["top_k"]) == 2 and p["top_k"][0]["label"] == p["label"] for p in preds)
    assert all(
        abs(sum(t["probability"] for t in transferkit.load(run.best).predict(r[1], top_k=3)["top_k"]) - 1) < 1e-4
        for r in test_rows[:2]
    )


def test_bundle_is_safetensors_and_json_only(trained):
    _, run = trained
    assert sorted(p.name for p in run.best.iterdir()) == ["model.safetensors", "transferkit.json"]
    meta = json.loads((run.best / "transferkit.json").read_text())
    assert meta["classes"] == ["blue", "green", "red"] and meta["task"] == "classification"
    assert meta["preprocessing"]["image_size"] == 32 and meta["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    assert meta["metrics"]["split"] == "test"


def test_bundle_from_a_file_backbone_needs_no_weights_file(tmp_path, tiny_folder):
    import torch
    import torchvision

    w = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(num_classes=5).state_dict(), w)
    run = transferkit.fit(
        tiny_folder,
        backbone=f"file:{w}",
        arch="torchvision:resnet18",
        strategy="linear",
        out=str(tmp_path / "runs"),
        **FAST,
    )
    w.unlink()
    p = transferkit.load(run.path)  # the run folder works too
    assert p.meta["arch"] == "torchvision:resnet18"
    assert p.predict(str(next((tiny_folder / "red").iterdir())))["label"] in p.classes


def _modes(tmp_path):
    rgb = Image.new("RGB", (40, 30), (200, 30, 30))
    paths = {}
    rgba = rgb.convert("RGBA")
    rgba.putalpha(0)  # fully transparent: alpha must be dropped, not composited to black
    paths["rgba"] = tmp_path / "a.png"
    rgba.save(paths["rgba"])
    paths["grey"] = tmp_path / "g.png"
    rgb.convert("L").save(paths["grey"])
    paths["palette"] = tmp_path / "p.gif"
    rgb.convert("P").save(paths["palette"])
    paths["cmyk"] = tmp_path / "c.jpg"
    rgb.convert("CMYK").save(paths["cmyk"])
    paths["16bit"] = tmp_path / "d.png"
    Image.fromarray((np.ones((30, 40)) * 40000).astype(np.uint16)).save(paths["16bit"])
    exif = rgb.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    paths["exif"] = tmp_path / "e.jpg"
    rgb.save(paths["exif"], exif=exif)
    return paths


def test_every_image_mode_is_read_as_rgb(tmp_path):
    paths = _modes(tmp_path)
    for name, p in paths.items():
        img = open_rgb(p)
        assert img.mode == "RGB", name
    assert open_rgb(paths["rgba"]).getpixel((5, 5)) == (200, 30, 30)
    assert open_rgb(paths["16bit"]).getpixel((0, 0))[0] == round(40000 / 65535 * 255)
    assert open_rgb(paths["exif"]).size == (30, 40)  # EXIF orientation honoured: portrait
    assert open_rgb(paths["cmyk"]).getpixel((5, 5))[0] > 150


def test_predict_any_mode_and_a_folder(trained, tmp_path):
    _, run = trained
    paths = _modes(tmp_path)
    p = transferkit.load(run.best)
    out = p.predict(str(tmp_path))
    assert len(out) == len(paths) and all("label" in r for r in out)
    assert [r["path"] for r in out] == sorted(r["path"] for r in out)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    out = p.predict(str(tmp_path))
    assert [r for r in out if "error" in r][0]["path"].endswith("bad.png")
    from .conftest import COLOURS, make_image

    red = make_image(np.random.default_rng(9), COLOURS["red"])  # an image like the training ones, never seen
    pil = p.predict(red)
    assert pil["label"] == "red"
    red.save(tmp_path / "red.png")
    assert p.predict(str(tmp_path / "red.png"))["probability"] == pytest.approx(pil["probability"], abs=1e-6)


@pytest.mark.parametrize("overlap", [False, True])  # decode between forwards (CPU) or during them (GPU)
def test_folder_streams_in_order_with_bad_files_between_chunks(trained, tmp_path, overlap):
    """Several chunks (batch 4), a bad file inside one and a chunk of only bad files: every result sits at its
    file's place and equals that file predicted alone; errors read as `decode_samples` reports them."""
    from pathlib import Path

    import torch

    from transferkit.data.decode import decode_samples
    from transferkit.data.sources import DataSource, Sample

    from .conftest import COLOURS, make_image

    _, run = trained
    rng = np.random.default_rng(5)
    bad = {5, 8, 9, 10, 11}  # chunks of 4: [0-3], [4-7] with one bad, [8-11] all bad, [12-13] short
    for i in range(14):
        f = tmp_path / f"img_{i:02d}.png"
        if i in bad:
            f.write_bytes(b"\x89PNG broken" if i % 2 else b"not an image at all")
        else:
            make_image(rng, list(COLOURS.values())[i % 3], size=40 + i).save(f)  # odd sizes: crops at odd offsets
    p = transferkit.load(run.best)
    p.batch_size, p.overlap = 4, overlap
    files = sorted(str(f) for f in tmp_path.iterdir())
    out = p.predict(str(tmp_path), top_k=3)
    assert [r["path"] for r in out] == files
    assert [i for i, r in enumerate(out) if "error" in r] == sorted(bad)
    _, _, skipped = decode_samples(DataSource(Path("."), "files", [], {}), [Sample(f, 0) for f in files], p.short_side)
    assert [{"path": k, "error": why} for k, why in skipped] == [r for r in out if "error" in r]
    for f, r in zip(files, out):
        alone = p.predict(f, top_k=3)
        if "error" in r:
            assert alone == r
            continue
        assert [t["label"] for t in r["top_k"]] == [t["label"] for t in alone["top_k"]]
        assert r["probability"] == pytest.approx(alone["probability"], abs=1e-5)
    # evaluate's path: the same chunks, so the same samples kept and skipped and the same numbers as predict
    samples = [Sample(f, 0) for f in files]
    logits, kept, skipped_eval = p.logits_for(DataSource(Path("."), "files", [], {}), samples, batch_size=4)
    assert skipped_eval == skipped and [s.key for s in kept] == [r["path"] for r in out if "error" not in r]
    probs = torch.softmax(logits / p.temperature, dim=1).max(1).values.numpy()
    assert np.allclose(probs, [r["probability"] for r in out if "error" not in r], atol=1e-6)


def test_batched_preprocessing_equals_the_eval_transform(trained):
    """The batch path (crop on uint8, scale once per batch) gives bit-for-bit the per-image eval transform."""
    import torch

    _, run = trained
    p = transferkit.load(run.best)
    rng = np.random.default_rng(2)
    sizes = [(40, 40), (41, 67), (90, 37), (36, 36)]  # odd sizes: crops at odd offsets
    imgs = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]
    arrays = [p.pre.load(im)[0] for im in imgs]
    per_image = torch.stack([p.transform(torch.from_numpy(a).permute(2, 0, 1)) for a in arrays])
    assert torch.equal(p.pre.batch(arrays, tta=False), per_image)


def test_a_grey_batch_as_from_arrays_takes_it_is_a_batch_and_a_numpy_3_by_h_by_w_is_asked_about():
    """(N, H, W) is what from_arrays trains on: predict read it as one image (N != 3: refused with a message that
    listed the shape; N == 3: one answer for three digits). A tensor's (3, H, W) stays one image (torch's layout)."""
    import torch

    from transferkit.errors import TransferkitError
    from transferkit.predict import user_inputs

    items, one = user_inputs(np.zeros((5, 8, 8), np.float32))
    assert len(items) == 5 and not one
    items, one = user_inputs(np.zeros((8, 8, 3), np.uint8))
    assert len(items) == 1 and one
    items, one = user_inputs(torch.zeros(3, 8, 8))
    assert len(items) == 1 and one and items[0].shape == (8, 8, 3)
    with pytest.raises(TransferkitError, match=r"3 grey 8x8 images, or one 8x8 image.*x\[\.\.\., None\]"):
        user_inputs(np.zeros((3, 8, 8), np.float32))
    items, one = user_inputs(np.zeros((3, 8, 8, 1), np.float32))  # the fix it names works
    assert len(items) == 3 and not one


def test_predict_refuses_top_k_under_1_and_load_of_no_path(trained):
    from transferkit.errors import ConfigError

    _, run = trained
    p = transferkit.load(run.best)
    for k in (0, -1, 1.5):  # 0 and -1 answered one class, unsaid
        with pytest.raises(ConfigError, match="top_k=.*1 or more"):
            p.predict(np.zeros((8, 8, 3), np.uint8), top_k=k)
    with pytest.raises(ConfigError, match=r"load\(None\): give the path of a model"):
        transferkit.load(None)
