"""Inputs a hostile (or hurried) user passes (issue 21): arrays that would decode to something else than the user sees,
labels in other shapes, what `predict` is handed in Python, images too small to say anything about, class names that
differ only in case, and an export whose contract a client can follow to `predict`'s answers."""

from __future__ import annotations

import io
import json
import runpy
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import transferkit
from transferkit.data.sources import from_arrays, open_source
from transferkit.errors import DataError, TransferkitError

from .conftest import FAST, write_folder
from .deploy_models import run_cli, tiny_bundle, tiny_export, tiny_images

ROOT = Path(__file__).resolve().parents[1]
RULE = "uint8 0-255, or of floats in"  # the sentence every refused image array ends with


def _x(n: int = 40, size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, size, size, 3)).astype(np.float32)


def _y(n: int = 40) -> np.ndarray:
    return np.arange(n) % 2


# ---- item 4: from_arrays checks images and labels -----------------------------------------------------------------
def _nan(x):
    x = x.copy()
    x[3, 0, 0, 0] = np.nan
    return x


def _inf(x):
    x = x.copy()
    x[5, 1, 1, 1] = np.inf
    return x


@pytest.mark.parametrize(
    "make, message",
    [
        (_nan, r"x\[3\] holds NaN or infinite"),
        (_inf, r"x\[5\] holds NaN or infinite"),
        (lambda x: x.reshape(len(x), -1), r"flat row.*x.reshape\(-1, 16, 16, 3\)"),
        (lambda x: (x * 65535).astype(np.uint16), r"uint16.*not 8-bit.*x // 257"),
        (lambda x: x * 2 - 1, r"negative values.*x \* 0.5 \+ 0.5"),
        (lambda x: x.astype(bool), "dtype bool"),
        (lambda x: x[..., :2], r"shape \(40, 16, 16, 2\)"),
    ],
    ids=["nan", "inf", "flat", "uint16", "minus-one-to-one", "bool", "two-channels"],
)
def test_image_arrays_that_would_decode_to_something_else_are_refused_with_the_rule(make, message):
    with pytest.raises(DataError, match=message) as e:
        from_arrays(make(_x()), _y())
    assert RULE in str(e.value)


def test_image_arrays_users_hold_are_read_as_they_see_them():
    x = _x()
    as_uint8 = from_arrays(np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8), _y())
    key = as_uint8.splits["all"][0].key
    want = np.asarray(as_uint8.load(key))
    for other in (x, x * 255, x.transpose(0, 3, 1, 2)):  # [0, 1], 0-255 floats, NCHW
        src = from_arrays(other, _y())
        assert np.abs(np.asarray(src.load(key)).astype(int) - want).max() <= 1
    # a dark 0-255 float image (every value under 1) beside bright ones is not read as [0, 1] and made 255x brighter
    dark = x * 255
    dark[0] = 0.5
    assert np.asarray(from_arrays(dark, _y()).load(key)).max() <= 1


def test_labels_as_one_hot_rows_or_names_are_taken_and_bad_ones_refused():
    x, y = _x(), _y()
    one_hot = from_arrays(x, np.eye(2)[y])  # was: 80 labels for 40 images
    assert len(one_hot.splits["all"]) == 40 and [s.label for s in one_hot.splits["all"]] == y.tolist()
    assert one_hot.classes == ["0", "1"]
    named = from_arrays(x, np.array(["ants", "bees"])[y])
    assert named.classes == ["ants", "bees"] and [s.label for s in named.splits["all"]] == y.tolist()
    with pytest.raises(DataError, match=r"row 0 is \[1.0, 1.0\], not one-hot.*task='multilabel'"):
        from_arrays(x, np.ones((40, 2)))
    with pytest.raises(DataError, match=r"y\[0\] is -1; class indices run from 0 to 1.*x\[y >= 0\]"):
        from_arrays(x, np.r_[-1, y[1:]])
    with pytest.raises(DataError, match=r"y\[1\] is 2.*only 2 class names"):
        from_arrays(x, y * 2, ["a", "b"])
    with pytest.raises(DataError, match="wasps, not in classes"):
        from_arrays(x, np.array(["ants", "wasps"])[y], ["ants", "bees"])
    with pytest.raises(DataError, match=r"y\[0\] is a; give one finite number"):
        from_arrays(x, np.array(["a"] * 40), task="regression")
    with pytest.raises(DataError, match=r"for one colour image give x\[None\]"):
        from_arrays(x[0], [0])


# ---- items 5 and 12: what predict is handed ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(data, bundle): the smallest linear run, 3 colours x 8 images of 40 px, at 32 px."""
    root = tmp_path_factory.mktemp("hostile")
    data = write_folder(root / "colours", per_class=8)
    run = transferkit.fit(data, strategy="linear", out=str(root / "runs"), cache_dir=str(root / "cache"), **FAST)
    return data, run.best


@pytest.fixture(scope="module")
def bundle(trained) -> Path:
    return trained[1]


@pytest.fixture(scope="module")
def model(bundle):
    return transferkit.load(bundle, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def red(trained) -> tuple[Path, Image.Image]:
    path = trained[0] / "red" / "red_00.png"
    return path, Image.open(path).convert("RGB")


def test_predict_takes_tensors_batches_bytes_and_images(model, red):
    import torch

    path, img = red
    a = np.asarray(img)
    want = model.predict(path)
    png = io.BytesIO()
    img.save(png, "PNG")
    chw = torch.from_numpy(a.copy()).permute(2, 0, 1)
    singles = {
        "CHW float tensor": chw.float() / 255,
        "HWC uint8 tensor": torch.from_numpy(a.copy()),
        "PNG bytes": png.getvalue(),
        "PIL image": img,
        "HWC array": a,
        "path string": str(path),
    }
    for name, x in singles.items():
        got = model.predict(x)
        assert isinstance(got, dict) and got["label"] == want["label"], name
        assert got["probability"] == pytest.approx(want["probability"], abs=1e-4), name
    for name, x in {"NCHW batch": torch.stack([chw, chw]).float() / 255, "(1, H, W, 3) array": a[None]}.items():
        got = model.predict(x)
        assert isinstance(got, list) and len(got) == len(x) and {r["label"] for r in got} == {want["label"]}, name


@pytest.mark.parametrize(
    "x, message",
    [
        (None, "got None"),
        (np.zeros((0,)), r"empty array \(0,\)"),
        (np.zeros((0, 8, 8, 3), np.uint8), "empty array"),
        (b"", "empty bytes"),
        (42, "cannot read a int"),
    ],
)
def test_predict_refuses_what_it_cannot_read_saying_what_it_takes(model, x, message):
    with pytest.raises(TransferkitError, match=message) as e:
        model.predict(x)
    assert "predict takes image paths or folders" in str(e.value)


def test_predict_refuses_arrays_from_arrays_refuses(model):
    with pytest.raises(DataError, match="the image holds NaN"):
        model.predict(np.full((8, 8, 3), np.nan, np.float32))
    with pytest.raises(DataError, match="negative values"):
        model.predict(np.full((8, 8, 3), -0.5, np.float32))


def test_a_tiny_image_is_answered_with_a_warning(bundle, model, red, tmp_path):
    path, img = red
    tiny = tmp_path / "one_pixel.png"
    img.resize((1, 1)).save(tiny)
    got = model.predict(tiny)
    assert "label" in got and "1x1 px" in got["warning"] and "under 16 px" in got["warning"]
    assert "warning" not in model.predict(path)  # 40 px: over half the 32 px input
    assert "1x1 px" in model.predict(np.zeros((1, 1, 3), np.uint8))["warning"]  # arrays too
    code, out, _ = run_cli("predict", bundle, tiny, path)
    assert code == 0 and "warning" in out and "one_pixel.png" in out and "1x1 px" in out
    assert out.count("1x1 px") == 1  # per image: the 40 px one has none
    code, out, _ = run_cli("predict", bundle, tiny, "--json")
    assert code == 0 and "1x1 px" in json.loads(out)[0]["warning"]


def test_the_too_small_bar_is_half_the_side_the_model_learnt_from(bundle):
    """A model of 64 px tiles reads them at 192 px (features from every depth): a 64 px tile is what it was made
    for, a 20 px one is not; bundles without the training images' side keep the input's bar."""
    from transferkit.bundle import read_meta
    from transferkit.predict import tiny_warning

    assert read_meta(bundle)["data_side"] == 40.0  # the fixture's 40 px squares, read at 32 px
    assert tiny_warning((64, 64), 192, data_side=64.0) is None
    assert "under 32 px" in tiny_warning((20, 20), 192, data_side=64.0)
    assert "under 96 px" in tiny_warning((64, 64), 192)  # an older bundle: half its input
    assert tiny_warning((300, 300), 224, data_side=500.0) is None  # photos: the input bounds the bar


# ---- item 16: class names that differ only in case ---------------------------------------------------------------
def test_class_names_that_differ_only_in_case_are_named_with_a_rename(tmp_path):
    root = tmp_path / "presplit"
    write_folder(root / "train", per_class=3, classes=("red", "green"))
    write_folder(root / "val", per_class=2, classes=("red", "green"))
    (root / "train" / "red").rename(root / "train" / "Red")
    with pytest.raises(DataError, match=r"only in case: 'red' \(training: 'Red'\). Rename them to match, e.g. mv") as e:
        open_source(root)
    assert "remove them from val/" not in str(e.value)  # not a foreign class: renaming is the fix
    lenient = open_source(root, lenient=True)
    assert any("only in case" in p.message for p in lenient.problems)  # what doctor shows
    # the same in list files
    lists = tmp_path / "lists"
    lists.mkdir()
    files = sorted((root / "train" / "Red").iterdir()) + sorted((root / "train" / "green").iterdir())
    (lists / "train.txt").write_text("".join(f"{f}\t{f.parent.name}\n" for f in files))
    (lists / "val.txt").write_text(f"{files[0]}\tred\n{files[-1]}\tgreen\n")
    with pytest.raises(DataError, match=r"only in case: 'red' \(training: 'Red'\)"):
        open_source(lists)


# ---- item 19: the export's contract includes the JPEG decode ------------------------------------------------------
def test_a_client_following_the_export_contract_decodes_jpegs_as_predict_does(tmp_path, capsys, monkeypatch):
    import onnx
    from PIL import ImageFilter

    from transferkit.predict import Predictor

    report = tiny_export("regression")
    props = {p.key: p.value for p in onnx.load(report["export"]).metadata_props}
    decode, pre = json.loads(props["decode"]), json.loads(props["preprocessing"])  # stated in the metadata
    assert decode["jpeg_draft"] is True and decode["exif_transpose"] is True
    assert "Image.draft('RGB', (short_side, short_side))" in props["contract"]  # and in the contract's text
    # A photo big enough for libjpeg to scale while decoding (640x480 -> 80x60 for a 36 px short side), EXIF-rotated.
    rng = np.random.default_rng(0)
    photo = Image.fromarray((rng.random((480, 640, 3)) * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(3))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    jpeg = tmp_path / "photo.jpg"
    photo.save(jpeg, quality=90, exif=exif)
    client = runpy.run_path(str(ROOT / "examples" / "onnx_client.py"))  # its functions, not its main
    predictor = Predictor(tiny_bundle("regression"), device="cpu", precision="fp32")
    seen, _ = predictor.pre.load(jpeg)
    followed = client["load"](jpeg, pre["short_side"], pre["interpolation"], decode["jpeg_draft"])
    assert followed.shape == seen.shape and (followed == seen).all()  # the pixels predict sees, to the bit
    skipped = client["load"](jpeg, pre["short_side"], pre["interpolation"], False)  # a client without the step
    assert skipped.shape == seen.shape and (skipped != seen).any()  # decodes other pixels: the step is contract
    for name in ("torch", "transferkit"):  # the client needs neither
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(sys, "argv", ["onnx_client.py", report["export"], str(jpeg), "--json"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(ROOT / "examples" / "onnx_client.py"), run_name="__main__")
    assert done.value.code == 0
    monkeypatch.undo()
    got = json.loads(capsys.readouterr().out)[0]["value"]
    assert got == pytest.approx(predictor.predict(jpeg)["value"], rel=1e-4, abs=1e-4)


# ---- item 20: predict --runtime onnx on a regression bundle without an export -------------------------------------
def test_predict_runtime_onnx_advice_works_for_a_regression_bundle(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_bundle("regression").parent, run)
    for name in ("model.onnx", "model.parity.json"):  # as trained: no export yet
        (run / "best" / name).unlink(missing_ok=True)
    image = tiny_images("regression")[0]
    code, _, err = run_cli("predict", run / "best", image, "--runtime", "onnx")
    assert code == 2 and f"export it first with `transferkit export {run / 'best'}`" in err
    code, _, _ = run_cli("export", run / "best")  # the advice: export works for a regression bundle
    assert code == 0 and (run / "best" / "model.onnx").is_file()
    code, out, _ = run_cli("predict", run / "best", image, "--runtime", "onnx", "--json")
    assert code == 0 and "value" in json.loads(out)[0]
