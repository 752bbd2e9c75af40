"""Faults and bad input: a run killed (SIGKILL) at each write point leaves no half-written file and resumes cleanly;
a damaged copy of every file transferkit reads gives a TransferkitError that names it, never a traceback, and
leaves the user's files as they were. docs/faults.md lists each case and what the user sees.

The kills go through `transferkit.faults.fault_point`: TRANSFERKIT_FAULT=<point>[:N] makes the N-th pass through
<point> kill the process, between writing the temporary file and renaming it over the real one.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit
from transferkit.bundle import load_bundle, read_meta, save_bundle
from transferkit.data.sources import open_source
from transferkit.engine.trainer import METRIC_FIELDS
from transferkit.errors import DataError, TransferkitError
from transferkit.faults import atomic_path, fault_point

from .conftest import FAST, files_state, write_folder

FINETUNE = [
    "--strategy",
    "finetune",
    "--epochs",
    "2",
    "--patience",
    "0",
    "--backbone",
    "efficientnet_lite0",
    "--image-size",
    "32",
    "--quiet",
]
# adamw: L-BFGS's search over ten L2 strengths is the slow part of a tiny linear run on a busy 2-core machine
LINEAR = [
    "--strategy",
    "linear",
    "--head-solver",
    "adamw",
    "--backbone",
    "efficientnet_lite0",
    "--image-size",
    "32",
    "--quiet",
]


def tk(*args, cache: Path, fault: str | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m transferkit ARGS` in a subprocess with its own feature cache, and a fault point when given."""
    env = {**os.environ, "TRANSFERKIT_CACHE": str(cache)}
    env.pop("TRANSFERKIT_FAULT", None)
    if fault:
        env["TRANSFERKIT_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "transferkit", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def killed(proc: subprocess.CompletedProcess) -> bool:
    return proc.returncode == -signal.SIGKILL


def epochs(run: Path) -> list[int]:
    path = run / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


def checkpoint_epoch(run: Path) -> int:
    return torch.load(run / "last.ckpt", map_location="cpu", weights_only=True)["global_epoch"]


def no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.rglob("*.tmp")]


@pytest.fixture
def data(tmp_path) -> Path:
    return write_folder(tmp_path / "colours", per_class=8)  # 2 finetune epochs: both improve val loss


# ---- the fault hook itself -------------------------------------------------------------------------------------------
def test_fault_point_kills_on_the_nth_pass_only(tmp_path):
    code = (
        "from transferkit.faults import fault_point\n"
        "for i in range(1, 4):\n"
        "    fault_point('other'); fault_point('here'); print(i, flush=True)\n"
    )
    env = {**os.environ, "TRANSFERKIT_FAULT": "here:2"}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert killed(proc) and proc.stdout.split() == ["1"]
    fault_point("here")  # without the variable (tests run without it): nothing happens


def test_atomic_path_unique_names_umask_and_cleanup(tmp_path):
    target = tmp_path / "entry.safetensors"
    old = os.umask(0o022)
    try:
        with atomic_path(target) as a, atomic_path(target) as b:  # two writers of one cache entry at once
            assert a != b and a.parent == b.parent == tmp_path
            a.write_bytes(b"first")
            b.write_bytes(b"second")
        # b was renamed in first, then a over it: the last rename wins, whole
        assert target.read_bytes() == b"first" and (target.stat().st_mode & 0o777) == 0o644
        os.umask(0o077)
        with pytest.raises(ValueError), atomic_path(target) as c:
            c.write_bytes(b"half")
            raise ValueError  # a failed write leaves the old file and no temporary
        assert target.read_bytes() == b"first" and sorted(p.name for p in tmp_path.iterdir()) == [target.name]
        with atomic_path(target) as d:
            d.write_bytes(b"third")
        assert (target.stat().st_mode & 0o777) == 0o600  # the umask is respected, not forced to 0644
    finally:
        os.umask(old)


# ---- kill -9 at each write point -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_kills_during_a_finetune_and_its_resume(data, tmp_path):
    """1. Killed at the second save of best/: epoch 2's weights renamed in, its transferkit.json not yet.
    2. Resumed, and killed writing epoch 2's checkpoint: written to its temporary file, not yet renamed.
    Each time last.ckpt is the last finished epoch, best/ loads or says it is a mixed pair, metrics.csv agrees with
    the checkpoint, and the next resume continues from it: no epoch missing, none twice."""
    cache, run = tmp_path / "cache", tmp_path / "runs" / "ft"
    before = files_state(data)
    p = tk(
        "train", data, *FINETUNE, "--out", tmp_path / "runs", "--name", "ft", cache=cache, fault="transferkit.json:2"
    )
    assert killed(p), p.stderr  # epoch 2 improved val loss (else best/ is saved once and nothing is killed)
    assert checkpoint_epoch(run) == 1 and epochs(run) == [1]
    with pytest.raises(TransferkitError, match="from two different saves .* --resume"):
        load_bundle(run / "best")  # the two files carry one save id: a mixed pair is never loaded silently

    p = tk("train", "--resume", run, "--quiet", cache=cache, fault="last.ckpt:1")
    assert killed(p), p.stderr
    assert checkpoint_epoch(run) == 1 and epochs(run) == [1]
    assert [t.name for t in run.glob(".last.ckpt.*.tmp")]  # the cut write is a temporary file, never last.ckpt
    assert load_bundle(run / "best")[1]["epoch"] == 2  # epoch 2 trained again (the same numbers), best/ saved whole

    # A kill between the checkpoint's rename and the row's write (fault point "metrics.csv") leaves the row out; the
    # old write order (row, then checkpoint) left a row of an epoch the checkpoint lacks. Both at once:
    (run / "metrics.csv").write_text(",".join(METRIC_FIELDS) + "\n2,finetune\n")
    transferkit.fit(resume=run, quiet=True)
    assert checkpoint_epoch(run) == 2 and epochs(run) == [1, 2]  # row 1 from the checkpoint, the stray row 2 gone
    assert no_temporaries(run)  # the resume removed what the kills left
    assert load_bundle(run / "best")[1]["epoch"] == 2 and files_state(data) == before


def stored_rows(cache: Path) -> list[int]:
    """How many features each folder of the feature store indexes (core/store.py), whole rows in its matrix."""
    import sqlite3

    out = []
    for index in sorted((cache / "store").glob("*/index.sqlite")):
        con = sqlite3.connect(index)
        out.append(con.execute("select count(*) from entries").fetchone()[0])
        con.close()
    return out


@pytest.mark.slow
def test_kill_at_the_feature_store_then_at_the_report(data, tmp_path):
    """A kill between writing a store's rows and indexing them leaves rows no entry points at (nothing trusted); the
    next run computes the features again and is killed writing report.html, after everything else is complete."""
    cache = tmp_path / "cache"
    p = tk("train", data, *LINEAR, "--out", tmp_path / "runs", "--name", "a", cache=cache, fault="features.f32:1")
    assert killed(p), p.stderr
    assert stored_rows(cache) == [0] and (next((cache / "store").glob("*/features.f32"))).stat().st_size > 0
    assert not (tmp_path / "runs" / "a" / "best" / "model.safetensors").exists()

    p = tk("train", data, *LINEAR, "--out", tmp_path / "runs", "--name", "b", cache=cache, fault="report.html")
    assert killed(p), p.stderr
    assert stored_rows(cache) == [24]  # every image of the 24, once, whatever its split
    run = tmp_path / "runs" / "b"
    assert not (run / "report.html").exists() and list(run.glob(".report.html.*.tmp"))  # cut before its rename
    load_bundle(run / "best")
    assert json.loads((run / "report.json").read_text())["metrics"]["accuracy"] > 0.5
    from transferkit.evaluation.report import build_report

    build_report(run)  # the report is rebuilt from the run's files
    assert (run / "report.html").read_text().rstrip().endswith("</html>")


@pytest.mark.slow
def test_kill_while_writing_the_decode_store(data, tmp_path):
    """The decoded-image file is private to its process: a kill leaves it behind, named after the dead process, and
    the next store in that folder removes it; no run file was written yet."""
    from transferkit.data.store import HOST, PREFIX, StoreWriter

    cache = tmp_path / "cache"
    p = tk(
        "train",
        data,
        *LINEAR,
        "--decode-store",
        "disk",
        "--out",
        tmp_path / "runs",
        cache=cache,
        fault="decode-store:5",
    )
    assert killed(p), p.stderr
    store = cache / "decoded"
    (left,) = [n.name for n in store.iterdir()]
    assert left.startswith(f"{PREFIX}{HOST}-")  # then the dead process's id
    assert not list((tmp_path / "runs").rglob("last.ckpt")) and not list((tmp_path / "runs").rglob("best"))
    writer = StoreWriter(store)  # a later run's store
    writer.append(np.zeros((4, 4, 3), np.uint8))
    assert [n.name for n in store.iterdir()] == [Path(writer.path).name]
    writer.abort()
    assert list(store.iterdir()) == []


# ---- a damaged copy of every file transferkit reads ------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished linear run, made once; each test below damages a copy of it."""
    root = tmp_path_factory.mktemp("faults")
    data = write_folder(root / "colours", per_class=8, size=32)
    cache = root / "cache"
    run = transferkit.fit(
        data, strategy="linear", head_solver="adamw", out=str(root / "runs"), cache_dir=str(cache), **FAST
    )
    return data, run.path, cache


@pytest.fixture
def copy(trained, tmp_path):
    """A copy of the trained run; (data, run copy)."""
    data, run, _ = trained
    dst = tmp_path / run.name
    shutil.copytree(run, dst)
    return data, dst


def cut(path: Path, keep: float = 0.5) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])


def edit_meta(bundle: Path, change) -> None:
    meta = json.loads((bundle / "transferkit.json").read_text())
    change(meta)
    (bundle / "transferkit.json").write_text(json.dumps(meta))


def refused(path: Path, *words: str) -> str:
    """load_bundle(path) raises TransferkitError naming the bundle's file and saying each of `words`."""
    before = files_state(path)
    with pytest.raises(TransferkitError) as e:
        load_bundle(path)
    msg = str(e.value)
    assert str(path) in msg and all(w in msg for w in words), msg
    assert files_state(path) == before  # nothing is repaired or rewritten behind the user's back
    return msg


def test_truncated_weights(copy):
    _, run = copy
    cut(run / "best" / "model.safetensors")
    refused(run / "best", "model.safetensors' is not a readable safetensors file", "cut short or damaged")


def test_meta_not_json_or_missing_keys(copy):
    _, run = copy
    best = run / "best"
    good = (best / "transferkit.json").read_text()
    cut(best / "transferkit.json")
    refused(best, "transferkit.json' is not valid JSON", "train again")
    (best / "transferkit.json").write_text("[1, 2]")
    refused(best, "holds a JSON list")
    (best / "transferkit.json").write_text(good)
    edit_meta(best, lambda m: m.pop("classes"))
    refused(best, "misses 'classes'")
    (best / "transferkit.json").write_text(good)
    edit_meta(best, lambda m: m["preprocessing"].pop("mean"))
    refused(best, "misses 'preprocessing.mean'")


def test_meta_with_more_classes_than_the_weights(copy):
    _, run = copy
    edit_meta(run / "best", lambda m: m["classes"].append("purple"))
    refused(run / "best", "its head has 3 outputs but transferkit.json lists 4 classes", "different models")


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("image_size", 100_000, "image_size 100000: it must be a whole number of pixels from 16 to 2048"),
        ("image_size", "224", "image_size '224'"),
        ("crop_pct", 0.001, "crop_pct 0.001"),
        ("std", [0.2, 0.0, 0.2], "preprocessing.std [0.2, 0.0, 0.2]"),
    ],
)
def test_absurd_sizes_are_refused_before_anything_is_built(copy, field, value, words):
    _, run = copy
    edit_meta(run / "best", lambda m: m["preprocessing"].__setitem__(field, value))
    with pytest.raises(TransferkitError, match="cannot be loaded") as e:
        read_meta(run)  # the run folder: its best/
    assert words in str(e.value) and str(run / "best" / "transferkit.json") in str(e.value)


def test_huge_head_is_refused(copy):
    _, run = copy
    edit_meta(run / "best", lambda m: m.__setitem__("head", "mlp:100000000"))
    refused(run / "best", "has head 'mlp:100000000'")


def test_weights_from_another_save(copy, tmp_path):
    """best/ whose weights were replaced by those of another save (e.g. a later epoch's copy)."""
    _, run = copy
    model, meta = load_bundle(run / "best")
    other = save_bundle(tmp_path / "other", model, {k: v for k, v in meta.items() if not k.startswith("_")})
    shutil.copy(other / "model.safetensors", run / "best" / "model.safetensors")
    refused(run / "best", "from two different saves")


def test_a_failed_save_keeps_the_previous_bundle(copy, monkeypatch):
    """A write that fails half way (disk full) leaves best/ as it was, and no temporary file."""
    import safetensors.torch

    _, run = copy
    model, meta = load_bundle(run / "best")
    before = files_state(run / "best")

    def disk_full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 1000)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_bundle(run / "best", model, meta)
    assert files_state(run / "best") == before
    load_bundle(run / "best")


def test_bundle_files_are_readable_as_ordinary_files(trained, tmp_path):
    _, run, _ = trained
    model, meta = load_bundle(run / "best")
    old = os.umask(0o022)
    try:
        out = save_bundle(tmp_path / "b", model, {k: v for k, v in meta.items() if not k.startswith("_")})
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert modes == {"model.safetensors": 0o644, "transferkit.json": 0o644}  # mkstemp alone would give 0600


def test_cli_exit_code_2_without_traceback(copy, tmp_path):
    data, run = copy
    cut(run / "best" / "model.safetensors")
    p = tk("predict", run / "best", data / "red" / "red_00.png", cache=tmp_path / "cache")
    assert p.returncode == 2 and "Traceback" not in p.stderr and "not a readable safetensors file" in p.stderr


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "foreign"])
def test_damaged_checkpoint_on_resume(copy, damage):
    _, run = copy
    ckpt = run / "last.ckpt"
    if damage == "truncated":
        cut(ckpt)
    elif damage == "garbage":
        ckpt.write_bytes(np.random.default_rng(0).bytes(4096))
    elif damage == "empty":
        ckpt.write_bytes(b"")
    else:  # a valid torch file that is not a transferkit checkpoint
        torch.save({"weights": torch.zeros(3)}, ckpt)
    before = files_state(run)
    with pytest.raises(TransferkitError, match="last.ckpt' cannot be resumed from") as e:
        transferkit.fit(resume=run, quiet=True)
    assert "without --resume" in str(e.value) and "Traceback" not in str(e.value)
    assert {k: v for k, v in files_state(run).items() if "last.ckpt" in k or "best" in k} == {
        k: v for k, v in before.items() if "last.ckpt" in k or "best" in k
    }


@pytest.mark.slow
def test_damaged_checkpoint_through_the_cli(copy, tmp_path):
    _, run = copy
    cut(run / "last.ckpt")
    p = tk("train", "--resume", run, "--quiet", cache=tmp_path / "cache")
    assert p.returncode == 2 and "Traceback" not in p.stderr and "cannot be resumed from" in p.stderr


def test_resume_after_a_kill_behind_the_last_checkpoint(copy):
    """What a kill at fault point "metrics.csv" of the last epoch leaves (or any kill after the last checkpoint,
    before evaluation): a final checkpoint, its row missing, no report.json. A resume has nothing left to train;
    it writes the row from the checkpoint and evaluates."""
    _, run = copy
    (run / "report.json").unlink()
    (run / "metrics.csv").write_text(",".join(METRIC_FIELDS) + "\n")
    transferkit.fit(resume=run, quiet=True)
    assert epochs(run) == [1] and (run / "report.json").is_file()


@pytest.mark.slow
def test_damaged_store_is_recomputed_by_a_run(trained, tmp_path):
    from transferkit.core.store import FeatureStore

    data, run, cache = trained
    matrices = list((cache / "store").glob("*/features.f32"))
    assert matrices
    for m in matrices:
        cut(m, 0.3)
    again = transferkit.fit(
        data, strategy="linear", head_solver="adamw", out=str(tmp_path / "runs"), cache_dir=str(cache), **FAST
    )
    assert again.test_metrics["accuracy"] == json.loads((run / "report.json").read_text())["metrics"]["accuracy"]
    for m in matrices:  # every entry points at a whole, checked row again
        store = FeatureStore(cache / "store", json.loads((m.parent / "config.json").read_text()))
        ids = [r[0] for r in __import__("sqlite3").connect(m.parent / "index.sqlite").execute("select id from entries")]
        assert ids and (store.verified(ids) >= 0).all()


@pytest.mark.parametrize("damage", ["garbage", "no label column", "label out of range"])
def test_damaged_split_csv_on_resume(copy, damage):
    _, run = copy
    split = run / "split.csv"
    rows = split.read_text().splitlines()
    if damage == "garbage":
        split.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    elif damage == "no label column":
        split.write_text("\n".join(",".join(r.split(",")[:2]) for r in rows) + "\n")
    else:
        split.write_text("\n".join([rows[0], *(r.replace(",0,", ",7,", 1) for r in rows[1:])]) + "\n")
    with pytest.raises(TransferkitError, match="split.csv"):
        transferkit.fit(resume=run, quiet=True)


def test_list_file_with_bad_rows(tmp_path):
    data = write_folder(tmp_path / "lists" / "img", per_class=3).parent
    rows = [f"img/{c}/{c}_{i:02d}.png,{c}" for c in ("red", "green") for i in range(3)]
    (data / "train.csv").write_text("file,class\n" + "\n".join(rows) + "\nimg/red/red_00.png\n,blue\n")
    before = files_state(data)
    src = open_source(data)  # a few bad rows: skipped and reported by doctor, the rest used
    assert len(src.splits["train"]) == 6
    (data / "train.csv").write_text("file,class\nimg/red/red_00.png\n,blue\n;;;\n")
    with pytest.raises(DataError, match=r"train.csv: 3 of 3 lines do not have both a path and a label"):
        open_source(data)
    (data / "train.csv").write_bytes(b"file,class\n\xff\xfe\x00bad,red\n")
    with pytest.raises(DataError, match="is not UTF-8 text"):
        open_source(data)
    assert {k: v for k, v in files_state(data).items() if not k.endswith("train.csv")} == {
        k: v for k, v in before.items() if not k.endswith("train.csv")
    }


def test_truncated_hdf5(tmp_path):
    import h5py

    f = tmp_path / "h5" / "digits.h5"
    f.parent.mkdir()
    rng = np.random.default_rng(0)
    with h5py.File(f, "w") as h:
        h["train_set_x"] = rng.integers(0, 255, (40, 16, 16, 3), dtype=np.uint8)
        h["train_set_y"] = rng.integers(0, 2, 40)
    assert len(open_source(f.parent).splits["train"]) == 40
    cut(f, 0.5)
    before = files_state(f.parent)
    with pytest.raises(DataError, match="digits.h5' is not a readable HDF5 file"):
        open_source(f.parent)
    assert files_state(f.parent) == before
    p = tk("train", f.parent, *LINEAR, "--out", tmp_path / "runs", cache=tmp_path / "cache")
    assert p.returncode == 2 and "Traceback" not in p.stderr and "not a readable HDF5 file" in p.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())
