"""End to end through the Python API on tiny generated images: run directory, strategies, resume, reproducibility."""

from __future__ import annotations

import csv
import json
import os

import pytest
import torch

import transferkit
from transferkit.errors import ConfigError, DataError, TransferkitError

from .conftest import FAST, files_state, write_folder


def rows(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_linear_run_leaves_everything_and_touches_no_user_file(tiny_folder, tmp_path):
    before = files_state(tiny_folder)
    run = transferkit.fit(tiny_folder, strategy="linear", out=str(tmp_path / "runs"), **FAST)
    assert run.path == tmp_path / "runs" / "colours-linear"
    for name in (
        "config.json",
        "split.csv",
        "metrics.csv",
        "last.ckpt",
        "report.json",
        "best/model.safetensors",
        "best/transferkit.json",
    ):
        assert (run.path / name).is_file(), name
    cfg = json.loads((run.path / "config.json").read_text())
    assert cfg["config"]["train"]["strategy"] == "linear" and cfg["resolved"]["image_size"] == 32
    assert len(cfg["data_fingerprint"]) == 16 and "torch" in cfg["versions"]
    assert cfg["split_sizes"] == {"train": 26, "val": 5, "test": 5}  # 36 images: round(0.15 * 36) = 5 test, then 5 val
    report = json.loads((run.path / "report.json").read_text())
    assert report["split"] == "test" and report["metrics"]["accuracy"] >= 0.8  # colours are easy; chance is 0.33
    assert files_state(tiny_folder) == before


def test_a_run_directory_is_never_overwritten(tiny_folder, tmp_path):
    a = transferkit.fit(tiny_folder, strategy="linear", out=str(tmp_path), name="same", **FAST)
    b = transferkit.fit(tiny_folder, strategy="linear", out=str(tmp_path), name="same", **FAST)
    assert a.path.name == "same" and b.path.name == "same-2"


def test_split_is_stratified_and_seeded(tiny_folder, tmp_path):
    from transferkit.data.sources import open_source
    from transferkit.data.split import make_splits

    src = open_source(tiny_folder)
    s1, s2 = make_splits(src, (0.5, 0.25, 0.25), 7), make_splits(src, (0.5, 0.25, 0.25), 7)
    s3 = make_splits(src, (0.5, 0.25, 0.25), 8)
    assert s1 == s2 and s1 != s3
    for split in ("val", "test"):
        assert sorted(s.label for s in s1[split]) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    keys = [s.key for v in s1.values() for s in v]
    assert len(keys) == len(set(keys)) == 36


def test_finetune_is_reproducible_and_resumes_where_it_stopped(tiny_folder, tmp_path):
    kw = dict(strategy="finetune", epochs=3, patience=0, out=str(tmp_path), **FAST)
    full = transferkit.fit(tiny_folder, name="full", **kw)
    again = transferkit.fit(tiny_folder, name="again", **kw)
    assert [r["val_loss"] for r in rows(full.path)] == [r["val_loss"] for r in rows(again.path)]

    from transferkit.progress import QuietReporter

    class Interrupt(QuietReporter):
        def end_epoch(self, row):
            if row["epoch"] == 2:
                raise KeyboardInterrupt  # Ctrl-C after epoch 2 was recorded, before its checkpoint

    with pytest.raises(KeyboardInterrupt):
        transferkit.fit(tiny_folder, name="cut", reporter=Interrupt(), **kw)
    cut = tmp_path / "cut"
    state = torch.load(cut / "last.ckpt", weights_only=True)
    assert state["global_epoch"] == 1  # the last *finished* epoch
    resumed = transferkit.fit(resume=cut, quiet=True)
    assert resumed.path == cut
    assert [float(r["val_loss"]) for r in rows(cut)][-1] == pytest.approx(
        float(rows(full.path)[-1]["val_loss"]), rel=1e-5
    )
    assert resumed.test_metrics["accuracy"] == full.test_metrics["accuracy"]


def test_two_phase_trains_head_then_everything(tiny_folder, tmp_path):
    run = transferkit.fit(tiny_folder, strategy="two-phase", epochs=3, head_epochs=1, out=str(tmp_path), **FAST)
    assert [r["phase"] for r in rows(run.path)] == ["head", "finetune", "finetune"]
    meta = json.loads((run.path / "best" / "transferkit.json").read_text())
    assert meta["strategy"] == "two-phase"


@pytest.mark.parametrize("strategy", ["scratch", "freeze:3"])
def test_other_strategies_run(tiny_folder, tmp_path, strategy):
    """What the strategy promises is what trained: scratch moves every weight from a random start; freeze:3 leaves
    the stem and first 3 stages exactly as pretrained and moves the rest."""
    from transferkit.backbones import create_backbone

    run = transferkit.fit(tiny_folder, strategy=strategy, epochs=1, out=str(tmp_path), **FAST)
    assert run.strategy == strategy and len(rows(run.path)) == 1
    model = transferkit.load(run.best)
    assert model.meta["strategy"] == strategy
    pretrained, _ = create_backbone("efficientnet_lite0")
    before = dict(pretrained.named_parameters())
    trained = {k[len("net.") :]: v for k, v in model.model.named_parameters() if k.startswith("net.")}
    same = {k: torch.equal(v, before[k]) for k, v in trained.items()}
    stage_of = model.model.stage_of
    if strategy == "scratch":
        assert not any(same.values())  # random initialisation, then trained: nothing equals the ImageNet weights
    else:
        frozen = {k for k in same if stage_of("net." + k) < 3}
        assert frozen and all(same[k] for k in frozen)
        assert not all(same[k] for k in same if k not in frozen)


def test_presplit_keeps_its_parts(tiny_presplit, tmp_path):
    run = transferkit.fit(tiny_presplit, strategy="linear", out=str(tmp_path), **FAST)
    cfg = json.loads((run.path / "config.json").read_text())
    assert cfg["resolved"]["layout"] == "presplit" and cfg["split_sizes"] == {"train": 30, "val": 15, "test": 15}
    assert run.eval_split == "test"


@pytest.mark.parametrize("name", ["val", "valid", "validation", "verify"])
def test_val_folder_names(tmp_path, name):
    from transferkit.data.sources import open_source

    write_folder(tmp_path / "d" / "train", per_class=2)
    write_folder(tmp_path / "d" / name, per_class=1)
    src = open_source(tmp_path / "d")
    assert src.layout == "presplit" and len(src.splits["val"]) == 3


def test_unreadable_files_are_skipped_or_refused_with_strict(tiny_folder, tmp_path):
    (tiny_folder / "red" / "broken.jpg").write_bytes(b"not a jpeg at all")
    run = transferkit.fit(tiny_folder, strategy="linear", out=str(tmp_path), **FAST)
    assert len(run.skipped) == 1 and "broken.jpg" in run.skipped[0][0]
    assert "broken.jpg" in (run.path / "skipped.csv").read_text()
    with pytest.raises(TransferkitError, match="--strict"):
        transferkit.fit(tiny_folder, strategy="linear", strict=True, out=str(tmp_path), **FAST)
    assert (tiny_folder / "red" / "broken.jpg").read_bytes() == b"not a jpeg at all"


def test_bad_options_fail_before_any_work(tiny_folder, tmp_path):
    tmp_path = tmp_path / "runs"
    with pytest.raises(ConfigError, match="--split"):
        transferkit.fit(tiny_folder, split="0.9,0.3", out=str(tmp_path), **FAST)
    with pytest.raises(ConfigError, match="--strategy"):
        transferkit.fit(tiny_folder, strategy="freez:2", out=str(tmp_path), **FAST)
    with pytest.raises(ConfigError, match="Did you mean"):
        transferkit.fit(tiny_folder, backbone="efficientnet_lite00", out=str(tmp_path), **FAST)
    with pytest.raises(ConfigError, match="epochs"):
        transferkit.fit(tiny_folder, epocs=3, out=str(tmp_path), **FAST)
    assert not tmp_path.exists()  # nothing was created: options are checked before any work


def test_fewer_than_two_classes(tmp_path):
    write_folder(tmp_path / "one", classes=("red",))
    with pytest.raises(DataError, match="fewer than two classes"):
        transferkit.fit(tmp_path / "one", out=str(tmp_path / "runs"), **FAST)


def test_resume_needs_a_run_directory(tmp_path):
    with pytest.raises(TransferkitError, match="--resume"):
        transferkit.fit(resume=tmp_path)


def test_images_decoded_to_disk_train_the_same_model(tiny_folder, tmp_path, monkeypatch):
    from transferkit.data import decode

    stores = []
    original = decode.decode_samples

    def spy(*a, **kw):
        out = original(*a, **kw)
        stores.append((kw.get("store"), type(out[0]).__name__, kw.get("store_dir")))
        return out

    monkeypatch.setattr(decode, "decode_samples", spy)
    mem = transferkit.fit(tiny_folder, strategy="finetune", epochs=1, decode_store="memory", out=str(tmp_path), **FAST)
    disk = transferkit.fit(tiny_folder, strategy="finetune", epochs=1, decode_store="disk", out=str(tmp_path), **FAST)
    assert {s[1] for s in stores[-3:]} == {"StoredImages"} and {s[1] for s in stores[:3]} == {"list"}
    assert str(stores[-1][2]).startswith(os.environ["TRANSFERKIT_CACHE"])  # beside the feature cache, not /tmp
    assert rows(disk.path)[-1]["val_loss"] == rows(mem.path)[-1]["val_loss"]
    assert disk.test_metrics["confusion_matrix"] == mem.test_metrics["confusion_matrix"]
    with pytest.raises(ConfigError, match="--decode-store"):
        transferkit.fit(tiny_folder, decode_store="tape", out=str(tmp_path), **FAST)


def test_ctrl_c_before_the_first_checkpoint_says_nothing_was_kept(tiny_folder, tmp_path):
    """The run folder was removed (right) with nothing said: the process just ended with status 130."""
    from transferkit.progress import QuietReporter

    said = []

    class Interrupt(QuietReporter):
        def message(self, text):
            said.append(text)

        def end_epoch(self, row):
            raise KeyboardInterrupt  # epoch 1 recorded, no checkpoint yet

    with pytest.raises(KeyboardInterrupt):
        transferkit.fit(tiny_folder, strategy="finetune", epochs=2, name="cut", out=str(tmp_path), reporter=Interrupt(),
                        **FAST)  # fmt: skip
    assert not (tmp_path / "cut").exists()
    assert any("Interrupted before the first epoch finished: nothing was kept" in s for s in said)


def test_a_run_given_relative_data_resumes_from_another_folder(tiny_folder, tmp_path, monkeypatch):
    """DATA typed relative to where the run started: --resume from elsewhere said "Data path 'colours' does not
    exist". config.json keeps the folder the run started in, and the resume reads DATA from there."""
    from transferkit.progress import QuietReporter

    class Interrupt(QuietReporter):
        def end_epoch(self, row):
            if row["epoch"] == 2:
                raise KeyboardInterrupt  # after epoch 1's checkpoint

    monkeypatch.chdir(tiny_folder.parent)
    with pytest.raises(KeyboardInterrupt):
        transferkit.fit(
            tiny_folder.name, strategy="finetune", epochs=3, patience=0, out=str(tmp_path / "runs"), name="cut",
            reporter=Interrupt(), **FAST,
        )  # fmt: skip
    assert json.loads((tmp_path / "runs" / "cut" / "config.json").read_text())["cwd"] == str(tiny_folder.parent)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    resumed = transferkit.fit(resume=tmp_path / "runs" / "cut", quiet=True)
    assert len(rows(resumed.path)) == 3 and resumed.test_metrics["accuracy"] >= 0
