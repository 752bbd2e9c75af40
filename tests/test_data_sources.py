"""Layouts: folders, pre-split, list files (columns, missing paths, bad labels), HDF5 (keys, lengths, labels)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from transferkit.data.sources import detect_layout, from_arrays, open_source
from transferkit.errors import ConfigError, DataError

from .conftest import make_image, shared, write_folder


def codes(src) -> list[str]:
    return [p.code for p in src.problems]


# ---- folders and pre-split -------------------------------------------------------------------------------------------
def test_folders_ignore_system_files_and_follow_links_once(tmp_path):
    root = write_folder(tmp_path / "d", per_class=3)
    (root / "red" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "red" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (root / "red" / "._red_00.png").write_bytes(b"\0\5\x16\7")
    (root / "__MACOSX" / "red").mkdir(parents=True)  # zip leftovers: not a class
    (root / "__MACOSX" / "red" / "._x.png").write_bytes(b"\0")
    (root / "red" / "nested" / "deeper").mkdir(parents=True)
    os.symlink("../..", root / "red" / "nested" / "deeper" / "up")  # a loop back to red/
    _images(tmp_path / "elsewhere", ["more.png"])
    os.symlink(tmp_path / "elsewhere", root / "red" / "linked")  # a linked folder is followed
    os.symlink("linked", root / "red" / "second_way")  # the same folder again: read once (sorted first wins)
    (root / "red" / "album.jpg").mkdir()  # a folder named like an image: a folder
    make_image(np.random.default_rng(9), (200, 40, 40)).save(root / "red" / "album.jpg" / "inside ü.png")
    src = open_source(root)
    assert src.layout == "folders" and src.classes == ["blue", "green", "red"]
    red = [os.path.relpath(s.key, root) for s in src.splits["all"] if src.classes[s.label] == "red"]
    assert sorted(red) == [
        "red/album.jpg/inside ü.png",
        "red/linked/more.png",
        "red/red_00.png",
        "red/red_01.png",
        "red/red_02.png",
    ]
    assert codes(src) == ["link-not-followed", "link-not-followed"]
    assert {os.path.basename(f) for p in src.problems for f in p.files} == {"up", "second_way"}


def test_empty_class_folder_is_left_out_with_a_warning(tmp_path):
    root = write_folder(tmp_path / "d", per_class=2)
    (root / "purple").mkdir()
    src = open_source(root)
    assert "purple" not in src.classes
    assert codes(src) == ["empty-class"] and "purple" in src.problems[0].message


def test_single_class_raises_unless_lenient(tmp_path):
    root = write_folder(tmp_path / "d", per_class=2, classes=("red",))
    with pytest.raises(DataError, match="fewer than two classes"):
        open_source(root)
    assert codes(open_source(root, lenient=True)) == ["single-class"]


def test_val_class_not_in_train_raises_unless_lenient(tmp_path):
    root = tmp_path / "d"
    write_folder(root / "train", per_class=2, classes=("red", "green"))
    write_folder(root / "valid", per_class=2, classes=("red", "green", "blue"))
    with pytest.raises(DataError, match="valid/ has classes that train/ does not: blue"):
        open_source(root)
    src = open_source(root, lenient=True)
    assert src.classes == ["green", "red"] and len(src.splits["val"]) == 4  # class indices never shift
    (p,) = src.problems
    assert p.code == "class-not-in-train" and p.severity == "error" and len(p.files) == 2


# ---- list files ------------------------------------------------------------------------------------------------------
def _images(root, names, colour=(200, 40, 40)):
    rng = np.random.default_rng(1)
    for n in names:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        make_image(rng, colour).save(root / n)


def test_tab_list_without_header_and_split_lists(tmp_path):
    _images(tmp_path, ["img/a.png", "img/b.png", "img/c d.png", "img/e.png"])
    (tmp_path / "train.txt").write_text("img/a.png\tcat\nimg/b.png\tdog\nimg/c d.png\tcat\n")
    (tmp_path / "test.txt").write_text("# comment\nimg/e.png\tdog\n")
    assert detect_layout(tmp_path) == "list"
    src = open_source(tmp_path)
    assert src.classes == ["cat", "dog"] and {k: len(v) for k, v in src.splits.items()} == {"train": 3, "test": 1}
    assert src.splits["train"][2].key == str(tmp_path / "img" / "c d.png")


def test_a_list_with_a_split_column_keeps_its_splits(tmp_path):
    """`path,label,split` (review's fix list of a pre-split set): the lines' own train / val / test, kept by
    make_splits as a pre-split folder's are; no split column (or an empty one): one pool, split by train."""
    from transferkit.data.split import make_splits

    _images(tmp_path, [f"{n}.png" for n in "abcdefg"])
    (tmp_path / "l.csv").write_text(
        "path,label,split\na.png,x,train\nb.png,y,train\nc.png,x,train\nd.png,y,val\ne.png,x,Validation\n"
        "f.png,x,test\ng.png,y,test\n"
    )
    src = open_source(tmp_path / "l.csv")
    names = {k: [os.path.basename(s.key) for s in v] for k, v in src.splits.items()}
    assert names == {"train": ["a.png", "b.png", "c.png"], "val": ["d.png", "e.png"], "test": ["f.png", "g.png"]}
    assert src.classes == ["x", "y"] and src.layout == "list"
    assert {k: len(v) for k, v in make_splits(src, (0.7, 0.15, 0.15), 0).items()} == {"train": 3, "val": 2, "test": 2}
    (tmp_path / "m.csv").write_text("path,cat,dog,split\na.png,1,0,train\nb.png,0,1,train\nc.png,1,1,val\n")
    src = open_source(tmp_path / "m.csv", task="multilabel")  # not a label column: the labels are cat and dog
    assert src.classes == ["cat", "dog"] and [s.label for s in src.splits["val"]] == [(0, 1)]
    (tmp_path / "n.csv").write_text("path,label,split\na.png,x,\nb.png,y,\n")
    assert list(open_source(tmp_path / "n.csv").splits) == ["all"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("a.png,x,train\nb.png,y,\n", "line 3 has no split, but other lines do. Give every line train, val or test"),
        ("a.png,x,val\nb.png,y,test\n", "no line is in the train split (the 'split' column has test, val only)"),
    ],
)
def test_a_split_column_that_cannot_be_read_says_which_line(tmp_path, text, message):
    _images(tmp_path, ["a.png", "b.png"])
    (tmp_path / "l.csv").write_text("path,label,split\n" + text)
    with pytest.raises(DataError, match=re.escape(message)):
        open_source(tmp_path / "l.csv")


def test_a_split_column_of_other_values_stays_the_users(tmp_path):
    """Lists that trained before the split column was read: a 'split' of A/B groups, a regression's fold number, and
    a one-hot multi-label list with a label named 'split' read as they did."""
    _images(tmp_path, ["a.png", "b.png"])
    (tmp_path / "g.csv").write_text("path,label,split\na.png,x,A\nb.png,y,train\n")
    assert list(open_source(tmp_path / "g.csv").splits) == ["all"]
    (tmp_path / "r.csv").write_text("path,value,split\na.png,1.5,0\nb.png,2.5,1\n")
    assert list(open_source(tmp_path / "r.csv", task="regression").splits) == ["all"]
    (tmp_path / "m.csv").write_text("path,cat,split\na.png,1,0\nb.png,0,1\n")
    assert open_source(tmp_path / "m.csv", task="multilabel").classes == ["cat", "split"]


def test_csv_header_names_found_and_chosen(tmp_path):
    _images(tmp_path, ["a.png", "b.png"])
    (tmp_path / "l.csv").write_text("filename,class\na.png,x\nb.png,y\n")
    assert open_source(tmp_path / "l.csv").classes == ["x", "y"]
    (tmp_path / "m.csv").write_text("id,fname,species\n1,a.png,x\n2,b.png,y\n")
    with pytest.raises(DataError, match="--path-column fname --label-column species"):
        open_source(tmp_path / "m.csv")
    src = open_source(tmp_path / "m.csv", path_column="fname", label_column="Species")
    assert [os.path.basename(s.key) for s in src.splits["all"]] == ["a.png", "b.png"]
    with pytest.raises(DataError, match="--label-column 'kind' is not a column. Its header has: id, fname, species"):
        open_source(tmp_path / "m.csv", path_column="fname", label_column="kind")
    (tmp_path / "n.tsv").write_text("x\t9\ta.png\ny\t9\tb.png\n")
    assert open_source(tmp_path / "n.tsv", path_column=2, label_column=0).classes == ["x", "y"]


@pytest.mark.parametrize(
    "name, text, options, message",
    [
        (
            "h.csv",
            "filename,class\na.png,x\nb.png,y\n",
            {"label_column": 5},
            "--label-column 5: {} has 2 columns (0-1): filename, class. Choose one by name or by index.",
        ),
        ("h.csv", "filename,class\na.png,x\nb.png,y\n", {"path_column": "5"}, "--path-column 5: {} has 2 columns"),
        ("h.csv", "filename,class\na.png,x\nb.png,y\n", {"label_column": "-3"}, "--label-column -3: {} has 2"),
        (
            "u.csv",
            "fn,kind\na.png,x\nb.png,y\n",
            {"path_column": "fn", "label_column": "2"},
            "2: {} has 2 columns (0-1): fn, kind.",
        ),
        ("n.tsv", "a.png\tx\nb.png\ty\n", {"label_column": "2"}, "--label-column 2: {} has 2 columns (0-1). Choose"),
        ("n.tsv", "a.png\tx\nb.png\ty\n", {"target_column": "4", "task": "regression"}, "--target-column 4: {} has"),
        (
            "m.csv",
            "path,cat,dog\na.png,1,0\nb.png,0,1\n",
            {"label_column": "cat,3", "task": "multilabel"},
            "--label-column 3: {} has 3 columns (0-2): path, cat, dog.",
        ),
    ],
)
def test_list_column_index_out_of_range_names_the_columns(tmp_path, name, text, options, message):
    """Unchecked, an index past the columns read every line as empty: "30 of 30 images have no label yet"."""
    _images(tmp_path, ["a.png", "b.png"])
    (tmp_path / name).write_text(text)
    with pytest.raises(DataError, match=re.escape(message.format(tmp_path / name))):
        open_source(tmp_path / name, **options)


def test_list_column_index_in_range_still_reads(tmp_path):
    _images(tmp_path, ["a.png", "b.png"])
    (tmp_path / "l.csv").write_text("filename,class\na.png,x\nb.png,y\n")
    assert open_source(tmp_path / "l.csv", path_column="0", label_column="-1").classes == ["x", "y"]


@pytest.mark.parametrize(
    "text, options, message",
    [
        (
            "path,label\n",
            {},
            "has a header (path, label) but no rows: add one line per image under it, with the "
            "image's path in column 'path' and its label in column 'label'.",
        ),
        ("# made by hand\nfilename;species\n\n", {}, "has a header (filename, species) but no rows"),
        ("fn,kind\n", {"path_column": "fn", "label_column": "kind"}, "has a header (fn, kind) but no rows"),
        ("path,price\n", {"target_column": "price", "task": "regression"}, "its target in column 'price'"),
        ("path,cat,dog\n", {"task": "multilabel"}, "column 'path' and 0 or 1 in each label column"),
        ("", {}, "has no lines: expected one 'path<TAB>label'"),
        ("# nothing yet\n\n", {}, "has only comment lines (starting with '#')"),
    ],
)
def test_list_with_a_header_and_no_rows_says_so(tmp_path, text, options, message):
    """Not "fewer than two classes ... put each class's images in its own sub-folder": the list is what to fill."""
    (tmp_path / "h.csv").write_text(text)
    with pytest.raises(DataError, match=re.escape(message)):
        open_source(tmp_path / "h.csv", **options)


def test_list_missing_paths_stay_samples_and_bad_rows_are_reported(tmp_path):
    _images(tmp_path, ["a.png", "b.png", "rød ü.png"])
    (tmp_path / "sub.png").mkdir()
    (tmp_path / "l.csv").write_text(
        'path,label\na.png,x\nb.png,y\ngone.png,x\n"rød ü.png",y\nsub.png,x\nc.png,\n,y\n', encoding="utf-8"
    )
    src = open_source(tmp_path / "l.csv")
    keys = [os.path.basename(s.key) for s in src.splits["all"]]
    assert keys == ["a.png", "b.png", "gone.png", "rød ü.png", "sub.png"]  # missing ones reach decoding/doctor
    (p,) = src.problems
    assert p.code == "bad-list-row" and "2 line(s) without a path or a label were skipped (line 7, 8)" in p.message
    assert p.files == [f"{tmp_path / 'l.csv'}:7", f"{tmp_path / 'l.csv'}:8"]


def test_list_label_not_in_training_list(tmp_path):
    _images(tmp_path, ["a.png", "b.png", "c.png"])
    (tmp_path / "train.csv").write_text("path,label\na.png,x\nb.png,y\n")
    (tmp_path / "val.csv").write_text("path,label\nc.png,z\na.png,x\n")
    with pytest.raises(
        DataError,
        match=r"val.csv: 1 line\(s\) have labels the training list does not have: z "
        r"\(first on line 2\)",
    ):
        open_source(tmp_path)
    src = open_source(tmp_path, lenient=True)
    assert codes(src) == ["class-not-in-train"] and len(src.splits["val"]) == 1


def test_list_in_a_format_it_cannot_read(tmp_path):
    (tmp_path / "pipes.txt").write_text("a.png|x\nb.png|y\nc.png|x\n")
    with pytest.raises(DataError, match="3 of 3 lines do not have both a path and a label"):
        open_source(tmp_path / "pipes.txt")
    (tmp_path / "latin1.csv").write_bytes("path,label\nr\xf8d.png,x\n".encode("latin-1"))
    with pytest.raises(DataError, match="is not UTF-8 text"):
        open_source(tmp_path / "latin1.csv")


# ---- HDF5 ------------------------------------------------------------------------------------------------------------
def _h5(path, **arrays):
    with h5py.File(path, "w") as h:
        for k, v in arrays.items():
            h[k] = v


def _x(n, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (n, 8, 8, 3), dtype=np.uint8)


def test_hdf5_conventions_found_automatically(tmp_path):
    _h5(tmp_path / "a.h5", X_train=_x(6), y_train=np.array([[0, 1] * 3]), X_test=_x(2, 1), y_test=np.eye(2)[[1, 0]])
    src = open_source(tmp_path / "a.h5")  # labels as a (1, N) row and as one-hot rows
    assert src.layout == "hdf5" and list(src.splits) == ["train", "test"] and src.classes == ["0", "1"]
    assert [s.label for s in src.splits["test"]] == [1, 0]
    (tmp_path / "f").mkdir()
    _h5(tmp_path / "f" / "train_data.h5", images=_x(4), labels=np.array([b"cat", b"dog", b"cat", b"dog"]))
    _h5(tmp_path / "f" / "test_data.h5", images=_x(2), labels=np.array([b"dog", b"cat"]))
    src = open_source(tmp_path / "f")  # splits from the file names, classes from the label strings
    assert src.classes == ["cat", "dog"] and [s.label for s in src.splits["test"]] == [1, 0]


def test_hdf5_keys_by_option(tmp_path):
    _h5(tmp_path / "a.h5", pics_train=_x(4), cls_train=np.array([0, 1, 0, 1]), pics_val=_x(2), cls_val=np.array([1, 0]))
    with pytest.raises(
        DataError, match=r"no image/label arrays transferkit recognises \(it has: cls_train \(4,\) int64"
    ):
        open_source(tmp_path / "a.h5")
    src = open_source(tmp_path / "a.h5", h5_x="pics_{split}", h5_y="cls_{split}")
    assert {k: len(v) for k, v in src.splits.items()} == {"train": 4, "val": 2}
    with pytest.raises(DataError, match="has no array 'pix_{split}'. Its arrays: cls_train"):
        open_source(tmp_path / "a.h5", h5_x="pix_{split}", h5_y="cls_{split}")
    with pytest.raises(ConfigError, match="Give both --h5-x"):
        open_source(tmp_path / "a.h5", h5_x="pics_{split}")


@pytest.mark.parametrize(
    "arrays, message",
    [
        (
            {"train_set_x": _x(5), "train_set_y": np.array([0, 1, 0, 1])},
            "'train_set_x' has 5 images but 'train_set_y' has 4 labels",
        ),
        (
            {"train_set_x": _x(4), "train_set_y": np.array([0, 1, 2, 1]), "list_classes": np.array([b"a", b"b"])},
            "labels go up to 2 but the class-name array has 2 names",
        ),
        ({"train_set_x": _x(4), "train_set_y": np.array([0, 1, 0.5, 1])}, "not whole numbers"),
        ({"train_set_x": _x(4), "train_set_y": np.array([0, 1, -1, 1])}, "negative labels"),
        (
            {
                "train_set_x": _x(4),
                "train_set_y": np.array([0, 1, 0, 1]),
                "test_set_x": _x(2),
                "test_set_y": np.array([2, 0]),
            },
            "the test labels include 2, which no training image has",
        ),
        (
            {"train_set_x": np.zeros((4, 3)), "train_set_y": np.array([0, 1, 0, 1])},
            r"has shape \(4, 3\); expected images",
        ),
        ({"test_set_x": _x(2), "test_set_y": np.array([0, 1])}, "has no training arrays"),
    ],
)
def test_hdf5_bad_contents(tmp_path, arrays, message):
    _h5(tmp_path / "d.h5", **arrays)
    with pytest.raises(DataError, match=message):
        open_source(tmp_path / "d.h5")


def test_hdf5_that_is_not_hdf5(tmp_path):
    (tmp_path / "train_catvnoncat.h5").write_text("<!DOCTYPE html><html><body>GitHub</body></html>")
    with pytest.raises(DataError, match=r"is not a readable HDF5 file: it is a web page \(HTML\)"):
        open_source(tmp_path / "train_catvnoncat.h5")
    (tmp_path / "lfs.h5").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n")
    with pytest.raises(DataError, match="Git LFS pointer"):
        open_source(tmp_path / "lfs.h5")


def test_arrays_with_mismatched_labels():
    with pytest.raises(DataError, match="3 images but 2 labels"):
        from_arrays(_x(3), np.array([0, 1]))


@pytest.mark.slow
def test_catvnoncat_read_from_hdf5_directly():
    src = open_source(shared("catvnoncat"))
    assert src.layout == "hdf5" and src.classes == ["non-cat", "cat"]
    assert {k: len(v) for k, v in src.splits.items()} == {"train": 209, "test": 50}
    assert src.counts()["train"] == {"non-cat": 137, "cat": 72} and src.counts()["test"] == {"non-cat": 17, "cat": 33}
    assert src.load(src.splits["test"][17].key).size == (64, 64)


def test_from_dataset_reads_a_torch_dataset_of_any_image_kind():
    import torch
    from PIL import Image as PILImage

    from transferkit.data.sources import from_dataset

    class Mixed(torch.utils.data.Dataset):
        classes = ["dark", "light"]

        def __len__(self):
            return 6

        def __getitem__(self, i):
            level = 200 if i % 2 else 20
            if i < 2:
                return PILImage.new("L", (10, 10), level), i % 2  # PIL, greyscale
            if i < 4:
                return torch.full((3, 12, 12), level / 255.0), i % 2  # CHW float tensor in [0, 1], another size
            return np.full((10, 10, 3), level, np.uint8), i % 2  # HWC uint8 array

    src = from_dataset(Mixed())
    assert src.classes == ["dark", "light"] and [s.label for s in src.splits["all"]] == [0, 1, 0, 1, 0, 1]
    pixels = [np.asarray(src.load(s.key))[0, 0] for s in src.splits["all"]]
    assert [int(p[0]) for p in pixels] == [20, 200, 20, 200, 20, 200] and all(p[0] == p[1] == p[2] for p in pixels)
    assert src.image_size(src.splits["all"][0].key) == (10, 10)  # sizes differed: squares at the median side


def test_a_list_none_of_whose_files_exist_says_where_paths_are_read_from(tmp_path, monkeypatch):
    """Paths written relative to the current folder instead of the list's: one message saying so, not "every class
    has no readable training image ... --drop-empty-classes" after decoding."""
    from transferkit.errors import DataError

    write_folder(tmp_path / "imgs", per_class=3)
    (tmp_path / "lists").mkdir()
    rows = [f"imgs/{c}/{f.name},{c}" for c in ("red", "green") for f in sorted((tmp_path / "imgs" / c).iterdir())]
    (tmp_path / "lists" / "l.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"None of the 6 image paths .* relative to its own folder \('lists'\)\. They "
                       r"are there relative to the current folder"):  # fmt: skip
        open_source(Path("lists/l.csv"))
    assert open_source(Path("lists/l.csv"), lenient=True).layout == "list"  # doctor still reads it, file by file
    (tmp_path / "lists" / "l.csv").write_text("path,label\n" + "\n".join("../" + r for r in rows) + "\n")
    assert len(open_source(Path("lists/l.csv")).splits["all"]) == 6


def test_a_training_part_alone_is_split_three_ways_by_split(tmp_path):
    """An HDF5 file of train_set_* only: --split's test share was dropped (val carved alone) and the score printed
    was val's, the images that chose the model. Alone, a training part is split as unsplit data."""
    from transferkit.data.split import make_splits

    x = np.random.default_rng(0).integers(0, 255, (40, 8, 8, 3), dtype=np.uint8)
    with h5py.File(tmp_path / "train_only.h5", "w") as f:
        f["train_set_x"], f["train_set_y"] = x, np.arange(40) % 2
    src = open_source(tmp_path / "train_only.h5")
    assert set(src.splits) == {"train"}
    sizes = {k: len(v) for k, v in make_splits(src, (0.6, 0.2, 0.2), 0).items()}
    assert sizes == {"train": 24, "val": 8, "test": 8}
    with h5py.File(tmp_path / "train_only.h5", "a") as f:  # a test part beside it stays the test
        f["test_set_x"], f["test_set_y"] = x[:6], np.arange(6) % 2
    sizes = {k: len(v) for k, v in make_splits(open_source(tmp_path / "train_only.h5"), (0.6, 0.2, 0.2), 0).items()}
    assert sizes == {"train": 30, "val": 10, "test": 6}
