"""`doctor` on a generated corpus of bad input (each kind asserted by code and message), training on what is left,
and the real data beside the repo."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import transferkit
from transferkit.cli.app import app
from transferkit.data.checks import class_checks, duplicates
from transferkit.data.decode import decode_samples
from transferkit.data.doctor import doctor, preflight
from transferkit.data.sources import open_source
from transferkit.data.survey import ImageInfo
from transferkit.errors import TransferkitError

from .conftest import COLOURS, make_image, shared, write_folder


# ---- the corpus ------------------------------------------------------------------------------------------------------
def png_header(width: int, height: int) -> bytes:
    """A PNG that only claims a size: a decompression bomb's header without the bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IEND", b"")
    )


def noise(rng, size=(40, 40)) -> np.ndarray:
    return rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)


def build_corpus(root: Path) -> Path:
    """train/{red (PNG), green (PNG), blue (JPEG)}, val/{red, green}: 10 good images per class in train, 4 in val,
    plus one or more files of every kind of trouble (see CASES)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 10), ("val", 4)):
        for name in ("red", "green", "blue") if split == "train" else ("red", "green"):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                img = make_image(rng, COLOURS[name])
                img.save(d / f"{name}_{i:02d}.jpg", quality=95) if name == "blue" else img.save(
                    d / f"{name}_{i:02d}.png"
                )
    red, green, blue = (root / "train" / c for c in ("red", "green", "blue"))
    # Files that cannot be used.
    (red / "empty.png").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(noise(rng, (64, 64))).save(buf, "JPEG", quality=90)
    (red / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) * 6 // 10])
    (red / "notes.jpg").write_text("these are my notes about the red images\n")
    (red / "page.png").write_text("<!DOCTYPE html><html><head><title>Sorry</title></head></html>")
    (red / "bomb.png").write_bytes(png_header(30_000, 30_000))  # 900M pixels claimed in 45 bytes
    os.symlink("loop.jpg", red / "loop.jpg")
    os.symlink("nowhere.png", red / "dangling.png")
    # Files to ignore silently, or to note.
    (red / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (red / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (red / "._red_00.png").write_bytes(b"\0\5\x16\7")
    (red / "desktop.ini").write_text("[.ShellClassInfo]\n")
    (root / "train" / "__MACOSX").mkdir()
    (red / "readme.txt").write_text("red things\n")
    (red / "sub").mkdir()
    os.symlink("..", red / "sub" / "up")
    (red / "album.jpg").mkdir()  # a folder named like an image, holding an image
    make_image(rng, COLOURS["red"]).save(red / "album.jpg" / "inside.png")
    make_image(rng, COLOURS["red"]).save(red / "rød ü 猫.png")
    make_image(rng, COLOURS["red"]).save(red / "red photo 1.png")
    make_image(rng, COLOURS["red"]).save(red / "placeholder.gif")  # the only GIF among PNGs
    (root / "train" / "empty_class").mkdir()
    # Modes and properties (green is all PNG, blue all JPEG, so only the intended format outliers exist).
    Image.fromarray(noise(rng)[..., 0]).convert("RGB").save(green / "gray.png")
    Image.fromarray(noise(rng)).convert("RGBA").save(green / "alpha.png")
    Image.fromarray(noise(rng)).convert("P").save(green / "palette.png")
    Image.fromarray(noise(rng)[..., 0].astype(np.uint16) * 257).save(green / "deep16.png")
    Image.fromarray(noise(rng, (6, 6))).save(green / "tiny.png")
    Image.fromarray(noise(rng, (400, 60))).save(green / "banner.png")
    make_image(rng, COLOURS["blue"]).convert("CMYK").save(blue / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    make_image(rng, COLOURS["blue"]).save(blue / "rotated.jpg", exif=exif)
    make_image(rng, COLOURS["blue"]).save(blue / "actually_png.jpg", format="PNG")
    frames = [make_image(rng, COLOURS["blue"]) for _ in range(3)]
    frames[0].save(blue / "anim.gif", save_all=True, append_images=frames[1:])
    # Duplicates: within a split, across splits, across classes, and a near copy (slightly brightened) across splits.
    (green / "dup_of_green_00.png").write_bytes((green / "green_00.png").read_bytes())
    (root / "val" / "red" / "leak.png").write_bytes((red / "red_01.png").read_bytes())
    (green / "stolen_red.png").write_bytes((red / "red_02.png").read_bytes())
    brighter = np.clip(np.asarray(Image.open(green / "green_03.png"), dtype=np.int16) + 6, 0, 255).astype(np.uint8)
    Image.fromarray(brighter).save(root / "val" / "green" / "near_green_03.png")
    return root


# (kind of bad input, problem code, the file it names (relative to the corpus), words in the message)
CASES = [
    ("zero-byte file", "zero-byte", "train/red/empty.png", "train/red/empty.png (train) is empty (0 bytes)."),
    ("truncated JPEG", "truncated", "train/red/truncated.jpg", "cannot be decoded (image file is truncated"),
    (
        "text named .jpg",
        "not-an-image",
        "train/red/notes.jpg",
        "is not an image Pillow can read (it starts with 'these are",
    ),
    ("HTML named .png", "not-an-image", "train/red/page.png", "(it starts with '<!DOCTYPE html><html><he')"),
    ("decompression bomb", "decompression-bomb", "train/red/bomb.png", "Image size (900000000 pixels) exceeds limit"),
    ("symlink loop", "symlink-loop", "train/red/loop.jpg", "is a symbolic link that loops back on itself."),
    (
        "dangling link",
        "broken-link",
        "train/red/dangling.png",
        "is a symbolic link to 'nowhere.png', which does not exist",
    ),
    (
        "GIF among PNGs",
        "format-outlier",
        "train/red/placeholder.gif",
        "1 of 19 'red' image(s) are GIF while 18 are PNG",
    ),
    ("PNG among JPEGs", "format-outlier", "train/blue/actually_png.jpg", "are PNG while 12 are JPEG"),
    ("text file in a class", "not-image-extension", "train/red/readme.txt", "without an image extension were not read"),
    ("folder link loop", "link-not-followed", "train/red/sub/up", "which is read already"),
    ("empty class folder", "empty-class", "train/empty_class", "has no images; the class is left out"),
    ("grayscale as RGB", "grayscale-as-rgb", "train/green/gray.png", "grayscale pictures stored as colour"),
    ("RGBA", "color-mode", "train/green/alpha.png", "have an alpha channel (dropped) (mode RGBA)"),
    ("palette", "color-mode", "train/green/palette.png", "are palette images (mode P)"),
    ("16-bit", "color-mode", "train/green/deep16.png", "are 16-bit (mode I;16)"),
    ("CMYK", "color-mode", "train/blue/cmyk.jpg", "are CMYK (print colours) (mode CMYK)"),
    ("EXIF rotation", "exif-rotation", "train/blue/rotated.jpg", "carry an EXIF rotation"),
    ("animated GIF", "animated", "train/blue/anim.gif", "are animated"),
    ("wrong extension", "extension-mismatch", "train/blue/actually_png.jpg", "extension that is not their format"),
    ("tiny image", "too-small", "train/green/tiny.png", "short side under 32 px, half the 64 px input"),
    ("banner", "size-outlier", "train/green/banner.png", "far smaller or more elongated"),
    ("duplicate in a split", "duplicate", "train/green/dup_of_green_00.png", "Identical images within train"),
    (
        "train/val leak",
        "duplicate-across-splits",
        "val/red/leak.png",
        "train/red/red_01.png (train/red); val/red/leak.png (val/red)",
    ),
    ("one image, two classes", "conflicting-labels", "train/green/stolen_red.png", "(train/green)"),
    (
        "near copy across splits",
        "near-duplicate-across-splits",
        "val/green/near_green_03.png",
        "Nearly identical images",
    ),
]
ERRORS = {
    "zero-byte",
    "truncated",
    "not-an-image",
    "decompression-bomb",
    "symlink-loop",
    "broken-link",
    "conflicting-labels",
}
UNREADABLE = {"empty.png", "truncated.jpg", "notes.jpg", "page.png", "bomb.png", "loop.jpg", "dangling.png"}


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under root, links not followed: kind, size, mtime and content hash (link target for links)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            if os.path.islink(p):
                out[p] = ("link", os.readlink(p))
            elif os.path.isfile(p):
                out[p] = ("file", st.st_size, st.st_mtime_ns, hashlib.sha256(Path(p).read_bytes()).hexdigest())
            else:
                out[p] = ("dir", st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return build_corpus(tmp_path_factory.mktemp("corpus") / "data")


@pytest.fixture(scope="module")
def report(corpus):
    before = snapshot(corpus)
    rep = doctor(corpus)
    assert snapshot(corpus) == before  # doctor reads; it never writes, moves or deletes
    return rep


def _find(report, code: str, file: str, corpus: Path):
    target = os.path.abspath(corpus / file)
    return [p for p in report.problems if p.code == code and any(os.path.abspath(f) == target for f in p.files)]


# ---- doctor on the corpus --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, code, file, words", CASES, ids=[c[0] for c in CASES])
def test_each_bad_input_is_reported(report, corpus, kind, code, file, words):
    found = _find(report, code, file, corpus)
    assert found, f"{kind}: no '{code}' problem names {file}; got {report.codes()}"
    assert any(words in p.message for p in found), [p.message for p in found]
    assert all(p.action for p in found)


def test_severities_and_nothing_else_flagged(report, corpus):
    assert {p.code for p in report.errors} == ERRORS
    assert {p.code for p in report.problems} == {c[1] for c in CASES} | {"class-missing-from-split"}
    (missing,) = [p for p in report.problems if p.code == "class-missing-from-split"]
    assert missing.severity == "warning" and missing.message == "val has no images of blue."
    involved = {"red_01.png", "red_02.png", "green_00.png", "green_03.png"}  # originals of the planted copies
    named = {os.path.basename(f) for p in report.problems for f in p.files}
    good = {f"{c}_{i:02d}.{'jpg' if c == 'blue' else 'png'}" for c in ("red", "green", "blue") for i in range(10)}
    assert named & good == involved  # no good image is accused of anything
    assert not named & {
        ".DS_Store",
        "Thumbs.db",
        "._red_00.png",
        "desktop.ini",
        "__MACOSX",
        "inside.png",
        "rød ü 猫.png",
        "red photo 1.png",
    }


def test_counts_and_stats(report):
    assert report.layout == "presplit" and report.classes == ["blue", "green", "red"]
    # red: 10 good + 7 unusable + album.jpg/inside + unicode + space + GIF; listed, whether readable or not
    assert report.counts == {"train": {"blue": 14, "green": 18, "red": 21}, "val": {"blue": 0, "green": 5, "red": 5}}
    assert report.imbalance == 1.5 and report.sizes["width"]["min"] == 6 and report.sizes["width"]["max"] == 400
    assert report.modes["CMYK"] == 1 and report.formats["GIF"] == 2


def test_doctor_cli_writes_json_and_exits_1_on_errors(corpus, tmp_path):
    out = tmp_path / "doctor.json"
    result = CliRunner().invoke(app, ["doctor", str(corpus), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "zero-byte" in result.output and "Full report" in result.output
    saved = json.loads(out.read_text())
    assert {p["code"] for p in saved["problems"] if p["severity"] == "error"} == ERRORS
    result = CliRunner().invoke(app, ["doctor", str(corpus), "--json", "--fast", "--out", str(out)])
    fast = json.loads(result.stdout)
    assert result.exit_code == 1 and fast["deep"] is False
    assert "truncated" not in {p["code"] for p in fast["problems"]}  # only decoding finds truncation


def test_doctor_cli_exits_0_without_errors(tiny_folder, tmp_path):
    result = CliRunner().invoke(app, ["doctor", str(tiny_folder), "--json", "--out", str(tmp_path / "d.json")])
    assert result.exit_code == 0 and json.loads(result.stdout)["problems"] == []


def test_training_on_the_rest(corpus, tmp_path):
    """One real run: unreadable files are skipped and listed, every readable image is used, no user file changes."""
    before = snapshot(corpus)
    with pytest.raises(TransferkitError, match="--strict: .* problem\\(s\\) with files, so nothing was trained"):
        transferkit.fit(
            corpus,
            strict=True,
            strategy="linear",
            epochs=1,
            image_size=32,
            quiet=True,
            out=str(tmp_path / "strict"),
            cache_dir=str(tmp_path / "cache"),
        )
    assert not (tmp_path / "strict").exists()  # stopped before anything was made
    # The planted copy filed under two classes is an error skipping cannot fix: it stops the run unless --force.
    with pytest.raises(TransferkitError, match=r"\[conflicting-labels\].*--force"):
        transferkit.fit(
            corpus,
            strategy="linear",
            epochs=1,
            image_size=32,
            quiet=True,
            out=str(tmp_path / "stopped"),
            cache_dir=str(tmp_path / "cache"),
        )
    assert not (tmp_path / "stopped").exists()
    run = transferkit.fit(
        corpus,
        strategy="linear",
        epochs=1,
        image_size=32,
        out=str(tmp_path / "runs"),
        quiet=True,
        cache_dir=str(tmp_path / "cache"),
        force=True,
    )
    assert {os.path.basename(k) for k, _ in run.skipped} == UNREADABLE
    assert run.eval_split == "val" and run.test_metrics["n"] == 10  # every val image, the planted copies included
    listed = (run.path / "skipped.csv").read_text()
    assert all(name in listed for name in UNREADABLE)
    checked = json.loads((run.path / "doctor.json").read_text())
    assert checked["deep"] is True and {"zero-byte", "decompression-bomb", "conflicting-labels"} <= {  # issue 21
        p["code"] for p in checked["problems"]
    }
    assert snapshot(corpus) == before


# ---- smaller cases ---------------------------------------------------------------------------------------------------
class Messages:
    def __init__(self):
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


def test_preflight_suggests_balance_for_imbalanced_classes(tmp_path):
    root = write_folder(tmp_path / "d", per_class=3, classes=("red",))
    write_folder(root, per_class=12, classes=("green",), seed=5)
    src = open_source(root)
    reporter = Messages()
    rep = preflight(src, src.splits, reporter)
    assert rep.imbalance == 4.0 and "imbalance" in rep.codes()
    assert reporter.lines == [
        "Checked 15 files in %.1f s: 1 warning (imbalance). Classes are 4.0:1 imbalanced: "
        "consider --balance weights." % rep.seconds
    ]
    assert "--balance" not in preflight(src, src.splits, Messages(), balance="weights").one_line()


def test_class_checks_on_counts():
    counts = {"train": {"Cat": 10, "cat ": 5, "dog": 0}, "test": {"Cat": 3, "cat ": 0, "dog": 2}}
    found = {p.code: p for p in class_checks(["Cat", "cat ", "dog"], counts)}
    assert found["class-not-in-train"].message == "test has images of dog, which train has none of."
    assert found["class-missing-from-split"].message == "test has no images of cat ."
    assert found["empty-class"].message == "train has no images of dog."
    assert "'Cat', 'cat '" in found["similar-class-names"].message
    assert found["class-not-in-train"].severity == "error"


def _infos(root: str, members: list[tuple[str, str, int]], near: bool) -> list[ImageInfo]:
    """One duplicate group: (file, split, label) each, the same bytes (or nearly the same picture when `near`)."""
    return [
        ImageInfo(f"{root}/{split}/{f}", split, label, sha=f"sha{n}" if near else "same", dhash=7 if near else None)
        for n, (f, split, label) in enumerate(members)
    ]


def test_duplicate_groups_name_one_member_of_each_label_and_split():
    """The first five of a large group can all be of one label: the message must show the conflict it reports."""
    root, classes = "/data", ["ants", "bees", "wasps"]
    group = [(f"a{n}.png", "train", 0) for n in range(7)] + [("b.png", "train", 1), ("w.png", "val", 2)]
    (p,) = duplicates(_infos(root, group, near=True), classes, root)
    assert p.code == "conflicting-labels" and p.severity == "warning" and len(p.files) == 9
    assert p.message == (
        "Nearly identical images with different labels (7 ants, 1 bees, 1 wasps): train/a0.png (train/ants); "
        "train/a1.png (train/ants); train/a2.png (train/ants); train/b.png (train/bees); val/w.png (val/wasps); "
        "and 4 more."
    )
    (p,) = duplicates(
        _infos(root, [(f"a{n}.png", "train", 0) for n in range(6)] + [("v.png", "val", 0)], False), classes, root
    )
    assert p.code == "duplicate-across-splits" and p.message.endswith(
        "train/a3.png (train/ants); val/v.png (val/ants); and 2 more."
    )
    (p,) = duplicates(_infos(root, [(f"a{n}.png", "train", 0) for n in range(3)], near=False), classes, root)
    assert p.message == (  # nothing left out: no count, no "more"
        "Identical images within train: train/a0.png (train/ants); train/a1.png (train/ants); "
        "train/a2.png (train/ants)."
    )
    (p,) = duplicates(_infos(root, [("a.png", "train", 0), ("b.png", "train", 1)], near=False), classes, root)
    assert p.message == "Identical images with different labels: train/a.png (train/ants); train/b.png (train/bees)."


def test_lenient_dataset_problems_reach_the_report(tmp_path):
    root = tmp_path / "d"
    write_folder(root / "train", per_class=3, classes=("red",))
    write_folder(root / "val", per_class=2, classes=("red", "blue"))
    rep = doctor(root)
    assert {p.code for p in rep.errors} == {"single-class", "class-not-in-train"}
    with pytest.raises(TransferkitError, match="val/ has classes that train/ does not: blue"):
        open_source(root)
    assert doctor(tmp_path / "nothing").codes() == ["unreadable-dataset"]


def test_large_image_is_not_decoded(tmp_path):
    write_folder(tmp_path / "d", per_class=3)
    (tmp_path / "d" / "red" / "huge.png").write_bytes(png_header(15_000, 15_000))  # 225M pixels: over the limit, not 2x
    start = time.perf_counter()
    rep = doctor(tmp_path / "d")
    assert time.perf_counter() - start < 5  # decoding 225M pixels would take far longer and 675 MB
    (p,) = [p for p in rep.problems if p.code == "large-image"]
    assert p.severity == "warning" and "have more than 200,000,000 pixels: red/huge.png" in p.message


def test_list_file_problems_and_decoding_the_rest(tmp_path):
    rng = np.random.default_rng(3)
    data = tmp_path / "lists"
    for split, n in (("train", 8), ("val", 3)):
        for name in ("red", "green"):
            for i in range(n):
                (data / "img" / split).mkdir(parents=True, exist_ok=True)
                make_image(rng, COLOURS[name]).save(data / "img" / split / f"{name} {i} ü.png")
    rows = [f'"img/train/{c} {i} ü.png",{c}' for c in ("red", "green") for i in range(8)]
    rows += ["img/train/gone.png,red", "img/train,green", "img/train/red 0 ü.png,", "only-a-path.png"]
    (data / "train.csv").write_text("file,class\n" + "\n".join(rows) + "\n", encoding="utf-8")
    (data / "val.csv").write_text(
        "file,class\n" + "\n".join(f"img/val/{c} {i} ü.png,{c}" for c in ("red", "green") for i in range(3)) + "\n",
        encoding="utf-8",
    )
    before = snapshot(data)
    rep = doctor(data)
    by_code = {p.code: p for p in rep.problems}
    assert by_code["missing-file"].message == "img/train/gone.png (train) does not exist (listed, but not there)."
    assert by_code["not-an-image"].message == "img/train (train) is a folder, not an image file."
    assert (
        "train.csv: 2 line(s) without a path or a label were skipped (line 20, 21)" in by_code["bad-list-row"].message
    )
    # What training does with it (decoding is where files are skipped; the full run is tested on the corpus above).
    src = open_source(data)
    images, labels, skipped = decode_samples(src, src.splits["train"], 36)
    assert sorted(os.path.basename(k) for k, _ in skipped) == ["gone.png", "train"]
    assert len(images) == 16 and labels == [1] * 8 + [0] * 8  # classes sorted: green, red
    assert snapshot(data) == before


# ---- real data -------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_hymenoptera_gif_outlier_and_doctor_no_slower_than_decoding():
    root = shared("hymenoptera")
    src = open_source(root)
    for samples in src.splits.values():  # the same warm page cache for both timings
        for s in samples:
            Path(s.key).read_bytes()
    start = time.perf_counter()
    rep = doctor(src)
    doctor_s = time.perf_counter() - start
    start = time.perf_counter()
    for samples in src.splits.values():
        decode_samples(src, samples, 256)  # 224 px input / 0.875 crop: what training decodes
    decode_s = time.perf_counter() - start
    (outlier,) = [p for p in rep.problems if p.code == "format-outlier"]
    assert outlier.files == [str(root / "train" / "ants" / "imageNotFound.gif")]
    assert "1 of 194 'ants' image(s) are GIF while 193 are JPEG" in outlier.message
    assert rep.errors == [] and not [c for c in rep.codes() if "duplicate" in c]  # README: none
    assert rep.counts == {"train": {"ants": 124, "bees": 121}, "val": {"ants": 70, "bees": 83}}
    assert doctor_s <= decode_s, f"doctor {doctor_s:.2f} s, decoding {decode_s:.2f} s"


@pytest.mark.slow
def test_catvnoncat_leak_and_grayscale():
    rep = doctor(shared("catvnoncat"))
    (leak,) = [p for p in rep.problems if p.code == "duplicate-across-splits"]
    assert sorted(leak.files) == ["catvnoncat#test[17]", "catvnoncat#train[146]"]
    (gray,) = [p for p in rep.problems if p.code == "grayscale-as-rgb"]
    # README: train 144, 177 and test 30 have R == G == B; test 23 differs by at most 2 levels, also gray to the eye.
    assert {"catvnoncat#train[144]", "catvnoncat#train[177]", "catvnoncat#test[30]"} <= set(gray.files)
    assert rep.errors == []


@pytest.mark.slow
def test_train_from_catvnoncat_hdf5(tmp_path):
    run = transferkit.fit(
        shared("catvnoncat"),
        strategy="linear",
        out=str(tmp_path / "runs"),
        quiet=True,
        cache_dir=str(tmp_path / "cache"),
    )
    assert run.eval_split == "test" and run.test_metrics["n"] == 50
    assert run.test_metrics["accuracy"] > 0.66, run.test_metrics  # 0.66 = always answering "cat"
    print(f"catvnoncat test accuracy {run.test_metrics['accuracy']:.4f}")
