"""The kinds of labels (data/targets.py) on tiny inputs: what each reads, what it refuses, how doctor sees it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from transferkit.data.base import DataSource, Sample
from transferkit.data.lists import Row
from transferkit.data.targets import CLASSES, KINDS, SETS, VALUES, kind_of
from transferkit.errors import ConfigError, DataError
from transferkit.tasks import TASKS


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_names_its_kind_of_labels(name):
    assert TASKS[name].labels is KINDS[name] is kind_of(name)
    assert TASKS[name].labels.task == name


def test_an_unknown_task_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="multilabel"):
        kind_of("multilable")


def test_from_array_by_kind():
    assert CLASSES.from_array(np.array(["b", "a", "b"]), None) == ([1, 0, 1], ["a", "b"])
    assert CLASSES.from_array(np.array([[0, 1], [1, 0]]), None) == ([1, 0], ["0", "1"])
    assert VALUES.from_array(np.array([[1.5], [2.0]]), None) == ([1.5, 2.0], ["target"])
    assert SETS.from_array(np.array([[1, 0, 1], [0, 0, 0]]), ["a", "b", "c"]) == ([(0, 2), ()], ["a", "b", "c"])
    with pytest.raises(DataError, match="regression"):  # a number that is not a class index names the other kind
        CLASSES.from_array(np.array([0.5, 1.0]), None)
    with pytest.raises(DataError, match=r"y\[1\] is nan"):
        VALUES.from_array(np.array([1.0, np.nan]), None)
    with pytest.raises(DataError, match="0/1 row"):
        SETS.from_array(np.array([[2, 0]]), None)


def test_from_h5_by_kind(tmp_path):
    f = tmp_path / "d.h5"
    assert VALUES.from_h5(np.array([[1], [3]]), 2, f, "x", "y") == [1.0, 3.0]
    assert SETS.from_h5(np.array([[0, 1], [1, 1]]), 2, f, "x", "y") == [(1,), (0, 1)]
    with pytest.raises(DataError, match="one number per image"):
        VALUES.from_h5(np.zeros((2, 3)), 2, f, "x", "y")
    assert VALUES.h5_classes("y_{split}", None, 1) == ["y"]
    assert SETS.h5_classes(None, None, 3) == ["0", "1", "2"]
    assert not CLASSES.by_image and VALUES.by_image and SETS.by_image


def test_list_rows_by_kind(tmp_path):
    files = {"train": tmp_path / "train.csv", "val": tmp_path / "val.csv"}
    rows = {"train": [Row(2, "a.png", "cat|dog"), Row(3, "b.png", "")], "val": [Row(2, "c.png", "dog")]}
    classes, splits = SETS.from_rows(files, rows, False, [], lambda: "unused")
    assert classes == ["cat", "dog"]
    assert [label for _, label in splits["train"]] == [(0, 1), ()]
    assert splits["val"][0] == (str(tmp_path / "c.png"), (1,))
    with pytest.raises(DataError, match="separated by ','"):
        SETS.label_set(Row(4, "d.png", "cat,dog"), files["train"])
    values = {"train": [Row(2, "a.png", "1.5")]}
    assert VALUES.from_rows(files, values, False, [], lambda: "price") == (
        ["price"],
        {"train": [(str(tmp_path / "a.png"), 1.5)]},
    )
    with pytest.raises(DataError, match="line 7: the target 'n/a'"):
        VALUES.number(Row(7, "a.png", "n/a"), files["train"])
    problems: list = []
    classes, splits = CLASSES.from_rows(
        files, {"train": rows["val"], "val": [Row(5, "e.png", "cow")]}, True, problems, str
    )
    assert classes == ["dog"] and splits["val"] == [] and problems[0].code == "class-not-in-train"
    assert (VALUES.column_flag, CLASSES.column_flag, SETS.several, CLASSES.several) == (
        "--target-column",
        "--label-column",
        True,
        False,
    )


def test_class_view_by_kind():
    splits = {"all": [Sample("a", (0, 1)), Sample("b", (0, 1)), Sample("c", ())]}
    src = DataSource(Path("d"), "list", ["cat", "dog"], splits, task="multilabel")
    viewed, view_splits = src.class_view()
    assert viewed.classes == ["(none)", "cat|dog"] and viewed.task == "classification"
    assert [s.label for s in view_splits["all"]] == [1, 1, 0]
    values = DataSource(Path("d"), "list", ["price"], {"all": [Sample("a", 1.5), Sample("b", 2.5)]}, task="regression")
    viewed, view_splits = values.class_view()
    assert viewed.classes == ["price"] and [s.label for s in view_splits["all"]] == [0, 0]
    plain = DataSource(Path("d"), "list", ["a", "b"], {"all": [Sample("a", 0)]})
    assert plain.class_view()[0] is plain


def test_check_by_kind():
    same = DataSource(Path("d"), "arrays", ["t"], {"all": [Sample("a", 1.0), Sample("b", 1.0)]}, task="regression")
    with pytest.raises(DataError, match="same value"):
        VALUES.check(same)
    empty = DataSource(Path("d"), "arrays", ["a"], {"all": [Sample("a", ())]}, task="multilabel")
    with pytest.raises(DataError, match="no training image has a label"):
        SETS.check(empty)
    one = DataSource(Path("d"), "folders", ["a"], {"all": [Sample("a", 0)]})
    CLASSES.check(one, lenient=True)
    assert one.problems[0].code == "single-class"


@pytest.mark.parametrize(
    "task, overrides, refused",
    [
        ("classification", {"target_column": "price"}, "--target-column is for --task regression"),
        ("multilabel", {"loss": "huber"}, "--loss huber is for --task regression"),
        ("regression", {"balance": "sampler"}, "--balance sampler cannot be used with --task regression"),
        ("multilabel", {"balance": "sampler"}, "--balance sampler cannot be used with --task multilabel"),
        ("multilabel", {"drop_empty_classes": True}, "--drop-empty-classes True cannot be used with --task multilabel"),
        ("regression", {"head": "prototypes"}, "--head prototypes cannot be used with --task regression: the proto"),
        ("multilabel", {"head": "prototypes"}, "--head prototypes cannot be used with --task multilabel: the proto"),
        ("regression", {"label_smoothing": 0.1}, "--label-smoothing 0.1 cannot be used with --task regression: label"),
        ("multilabel", {"balance": "sampler"}, "multilabel: the sampler draws by class; --balance weights weighs"),
        ("regression", {"target_column": "price", "loss": "huber", "head": "mlp:64"}, None),
        ("multilabel", {"label_smoothing": 0.1, "head": "mlp:64"}, None),
        ("multilabel", {"balance": "weights"}, None),
    ],
)
def test_each_kind_of_label_says_which_options_it_takes(task, overrides, refused):
    import dataclasses

    from transferkit.config import RunConfig
    from transferkit.errors import ConfigError
    from transferkit.options import check_task_options

    cfg = RunConfig()
    data = {k: v for k, v in overrides.items() if hasattr(cfg.data, k)}
    train = {k: v for k, v in overrides.items() if hasattr(cfg.train, k)}
    model = {k: v for k, v in overrides.items() if hasattr(cfg.model, k)}
    cfg = dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, **data),
        train=dataclasses.replace(cfg.train, task=task, **train),
        model=dataclasses.replace(cfg.model, **model),
    )
    if refused is None:
        check_task_options(cfg)
    else:
        with pytest.raises(ConfigError, match=refused):
            check_task_options(cfg)
