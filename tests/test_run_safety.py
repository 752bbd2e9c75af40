"""What `fit` refuses, keeps and cleans up: phantom classes, doctor errors, --resume options, resources, --out,
half-made run directories and run names (issue: nothing silently wrong)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

import transferkit
from transferkit.errors import ConfigError, DataError, TransferkitError

from .conftest import FAST, files_state, write_folder


def _not_images(folder, n=3):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"w{i}.jpg").write_text("this is not a JPEG")


def test_a_class_with_no_readable_image_stops_the_run_and_names_its_files(tmp_path):
    data = write_folder(tmp_path / "d", per_class=12, classes=("red", "green"))
    _not_images(data / "wasps")
    before = files_state(data)
    with pytest.raises(DataError, match=r"'wasps' \(3 file\(s\).*w0\.jpg.*--drop-empty-classes"):
        transferkit.fit(data, strategy="linear", out=str(tmp_path / "runs"), **FAST)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no half-made run
    assert files_state(data) == before


def test_drop_empty_classes_trains_without_them(tmp_path):
    data = write_folder(tmp_path / "d", per_class=12)
    _not_images(data / "wasps")
    run = transferkit.fit(data, strategy="linear", drop_empty_classes=True, out=str(tmp_path / "runs"), **FAST)
    assert run.classes == ["blue", "green", "red"]
    model = transferkit.load(run.best)
    assert model.classes == ["blue", "green", "red"]
    assert len(run.test_metrics["per_class"]) == 3
    split_classes = {ln.split(",")[-1] for ln in (run.path / "split.csv").read_text().splitlines()[1:]}
    assert split_classes == {"blue", "green", "red"}


def test_doctor_errors_stop_training_unless_forced(tmp_path):
    data = write_folder(tmp_path / "d", per_class=12)
    for i in range(3):  # the same pictures filed under two classes
        shutil.copy(data / "red" / f"red_{i:02d}.png", data / "green" / f"copy_{i}.png")
    with pytest.raises(DataError, match=r"conflicting-labels.*--force"):
        transferkit.fit(data, strategy="linear", out=str(tmp_path / "runs"), **FAST)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    run = transferkit.fit(data, strategy="linear", force=True, out=str(tmp_path / "runs"), **FAST)
    assert "conflicting-labels" in json.loads((run.path / "doctor.json").read_text())["problems"][0]["code"]


def test_unreadable_files_alone_do_not_stop_training(tmp_path):
    data = write_folder(tmp_path / "d", per_class=12)
    (data / "red" / "broken.png").write_text("no image")  # an error doctor reports, answered by skipping the file
    run = transferkit.fit(data, strategy="linear", out=str(tmp_path / "runs"), **FAST)
    assert [k for k, _ in run.skipped] == [str(data / "red" / "broken.png")]


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    data = write_folder(root / "d", per_class=8)
    run = transferkit.fit(
        data, strategy="finetune", epochs=1, patience=0, out=str(root / "runs"), cache_dir=str(root / "cache"), **FAST
    )
    return data, run


def test_resume_honours_more_epochs(one_epoch, tmp_path):
    data, run = one_epoch
    copy = tmp_path / "run"
    shutil.copytree(run.path, copy)
    resumed = transferkit.fit(resume=copy, epochs=3, quiet=True)
    epochs = [int(r["epoch"]) for r in resumed.history]
    assert epochs == [1, 2, 3]
    rows = (copy / "metrics.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3]
    assert json.loads((copy / "config.json").read_text())["config"]["train"]["epochs"] == 3
    with pytest.raises(ConfigError, match="already finished.*--epochs"):
        transferkit.fit(resume=copy, quiet=True)
    before = {n: (copy / n).read_bytes() for n in ("config.json", "doctor.json", "metrics.csv")}
    with pytest.raises(ConfigError, match="already finished"):
        transferkit.fit(resume=copy, epochs=2, quiet=True)  # refused: the run's files say what it trained, as before
    assert {n: (copy / n).read_bytes() for n in before} == before
    assert not (copy / "failed.json").exists()


def test_resuming_a_finished_linear_run_says_more_epochs_cannot_continue_it(tmp_path):
    data = write_folder(tmp_path / "d", per_class=8)
    run = transferkit.fit(data, strategy="linear", out=str(tmp_path / "runs"), **FAST)
    config = (run.path / "config.json").read_bytes()
    with pytest.raises(ConfigError, match="one pass, which more --epochs do not continue"):
        transferkit.fit(resume=run.path, epochs=20, quiet=True)
    assert (run.path / "config.json").read_bytes() == config  # still the epochs it was given


def test_resume_refuses_options_it_cannot_change(one_epoch):
    data, run = one_epoch
    with pytest.raises(ConfigError, match=r"--lr, --strategy cannot change.*--epochs"):
        transferkit.fit(resume=run.path, lr=0.1, strategy="linear")
    with pytest.raises(ConfigError, match="was trained on"):
        transferkit.fit(run.path.parent, resume=run.path)


def test_resume_refusal_through_the_cli_is_fast_and_exit_2(one_epoch):
    data, run = one_epoch
    r = subprocess.run(
        [sys.executable, "-m", "transferkit", "train", "--resume", str(run.path), "--lr", "0.5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "--lr cannot change" in r.stderr and "Traceback" not in r.stderr


def test_resume_messages_say_what_is_missing(tmp_path):
    with pytest.raises(TransferkitError, match="no such folder"):
        transferkit.fit(resume=tmp_path / "nope")
    (tmp_path / "r").mkdir()
    with pytest.raises(TransferkitError, match="no config.json"):
        transferkit.fit(resume=tmp_path / "r")
    (tmp_path / "r" / "config.json").write_text("{}")
    (tmp_path / "r" / "metrics.csv").write_text("epoch,phase\n1,finetune\n")
    with pytest.raises(TransferkitError, match="lists 1 finished epoch"):
        transferkit.fit(resume=tmp_path / "r")


def test_absurd_image_size_is_refused_before_any_work(tiny_folder, tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="--image-size 10000: give 16 to 2048"):
        transferkit.fit(tiny_folder, image_size=10000, out=str(tmp_path))
    assert time.perf_counter() - t0 < 5


def test_decoding_that_does_not_fit_is_refused_with_the_numbers(tmp_path, monkeypatch):
    from transferkit.data import resources

    monkeypatch.setattr(resources, "memory_budget", lambda: 10**9)  # 2 GB available
    monkeypatch.setattr(resources, "free_disk", lambda folder: 3 * 10**9)
    # 1,000 images at 2,000 px, 4:3: 1000 x 2000 x 2666 x 3 = 16 GB
    with pytest.raises(DataError, match=r"needs about 16\.0 GB.*2\.0 GB of memory.*3\.0 GB is free"):
        resources.check_decode_fits(1000, 2000, 4 / 3, "auto", tmp_path, 1750)
    with pytest.raises(DataError, match=r"2\.0 GB of memory is available, but|--image-size"):
        resources.check_decode_fits(1000, 2000, 4 / 3, "memory", tmp_path, 1750)
    assert resources.check_decode_fits(100, 256, 1.0, "auto", tmp_path, 224) == 100 * 256 * 256 * 3


def test_out_that_is_a_file_or_under_a_file(tiny_folder, tmp_path):
    f = tmp_path / "afile"
    f.write_text("keep me")
    t0 = time.perf_counter()
    with pytest.raises(TransferkitError, match="is a file, not a folder"):
        transferkit.fit(tiny_folder, strategy="linear", out=str(f), **FAST)
    assert time.perf_counter() - t0 < 5  # checked before the data is read or a model built
    with pytest.raises(TransferkitError, match="cannot be made"):
        transferkit.fit(tiny_folder, strategy="linear", out=str(f / "runs"), **FAST)
    assert f.read_text() == "keep me"


def test_a_failed_run_leaves_no_half_made_directory_or_says_it_failed(tiny_folder, tmp_path, monkeypatch):
    from transferkit.engine import trainer as trainer_mod

    def boom(self, resume=False):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(trainer_mod.Trainer, "fit", boom)
    with pytest.raises(RuntimeError):
        transferkit.fit(tiny_folder, strategy="linear", out=str(tmp_path / "runs"), **FAST)
    assert list((tmp_path / "runs").iterdir()) == []  # config, doctor and split were written, then removed

    def after_a_checkpoint(self, resume=False):
        (self.run_dir / "last.ckpt").write_bytes(b"checkpoint")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(trainer_mod.Trainer, "fit", after_a_checkpoint)
    with pytest.raises(RuntimeError):
        transferkit.fit(tiny_folder, strategy="linear", out=str(tmp_path / "runs"), **FAST)
    (run,) = list((tmp_path / "runs").iterdir())
    assert json.loads((run / "failed.json").read_text()) == {"error": "RuntimeError", "message": "disk on fire"}


def test_default_run_names_are_portable(tiny_folder, tmp_path):
    run = transferkit.fit(tiny_folder, strategy="freeze:1", epochs=1, out=str(tmp_path), **FAST)
    assert run.path.name == "colours-freeze-1"
    from transferkit.rundir import portable_name

    assert portable_name("my data: v2/final") == "my-data-v2-final" and portable_name("::") == "run"


def test_option_errors_import_no_torch(tiny_folder):
    code = (
        "import sys\nfrom transferkit.cli.app import main\n"
        f"sys.argv = ['transferkit', 'train', {str(tiny_folder)!r}, '--optimizer', 'adam']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    print('exit', e.code, 'torch' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "exit 2 False" in r.stdout, (r.stdout, r.stderr)
    assert "Unknown --optimizer 'adam'" in r.stderr and "adamw" in r.stderr


def test_flags_show_no_value_in_help():
    r = subprocess.run(
        [sys.executable, "-m", "transferkit", "evaluate", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"},
    )
    line = next(ln for ln in r.stdout.splitlines() if "--json" in ln)
    assert "<bool>" not in line and "Print one JSON" in line
