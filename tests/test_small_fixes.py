"""Issue 10, item 9: Pillow's raw bomb warning, --split messages that give the real reason, $XDG_CACHE_HOME."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit.config import cache_home
from transferkit.data.decode import decode_samples
from transferkit.data.doctor import doctor
from transferkit.data.images import open_image, open_rgb
from transferkit.data.sources import open_source
from transferkit.data.split import parse_split
from transferkit.errors import ConfigError

from .conftest import write_folder

# --- Pillow's DecompressionBombWarning -----------------------------------------------------------------------------
# A 100 x 100 image has 10,000 pixels. With the limit lowered to 9,000 it is over the limit but under twice it
# (18,000): the band where Pillow only warns ("could be decompression bomb DOS attack") and decodes anyway.
LIMIT = 9_000


@pytest.fixture
def big_png(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", LIMIT)
    path = tmp_path / "big.png"
    Image.fromarray(np.full((100, 100, 3), 128, np.uint8)).save(path)
    return path


def test_open_rgb_of_an_image_over_the_limit_raises_no_pillow_warning(big_png, recwarn):
    img = open_rgb(big_png, short_side=32)
    assert img.size == (32, 32)
    with open_image(big_png) as raw:
        assert raw.size == (100, 100)
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)], [str(w) for w in recwarn]


def test_decoding_in_threads_raises_no_pillow_warning_and_the_doctor_still_reports_it(tmp_path, big_png, recwarn):
    root = write_folder(tmp_path / "d", per_class=4, classes=("red", "green"))
    big_png.rename(root / "red" / "big.png")
    src = open_source(root)
    samples = [s for part in src.splits.values() for s in part]
    images, labels, skipped = decode_samples(src, samples, 32, workers=4, store="memory")
    assert not skipped and len(labels) == len(samples) == 9
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]
    # Our own handling: the doctor (also run before every `train`) names the file in its words.
    (p,) = [p for p in doctor(root).problems if p.code == "large-image"]
    assert f"more than {LIMIT:,} pixels: red/big.png" in p.message


def test_twice_the_limit_is_still_refused(big_png, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4_000)  # 10,000 > 2 x 4,000: a bomb, not a big photo
    with pytest.raises(Image.DecompressionBombError):
        open_rgb(big_png)


def test_no_raw_pillow_warning_reaches_the_terminal(big_png):
    # As a user runs it: default warning filters, stderr captured. Before the fix this printed
    # "DecompressionBombWarning: Image size (10000 pixels) exceeds limit of 9000 pixels, ...".
    code = (
        "from PIL import Image; from transferkit.data.images import open_rgb; "
        f"Image.MAX_IMAGE_PIXELS = {LIMIT}; print(open_rgb({str(big_png)!r}, 32).size)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(32, 32)" and "DecompressionBomb" not in out.stderr, out.stderr


def test_the_silencing_does_not_leak_to_the_callers_own_pillow_use(big_png):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        open_rgb(big_png)
        Image.open(big_png).close()  # the caller's own open: Pillow's warning is theirs to see
    assert [w.category for w in caught] == [Image.DecompressionBombWarning]


# --- parse_split -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0.7,0.2,0.1", (0.7, 0.2, 0.1)),
        ("0.8,0.2", (0.8, 0.2, 0.0)),
        ((0.6, 0.2, 0.2), (0.6, 0.2, 0.2)),
        (" 0.7 , 0.3 ", (0.7, 0.3, 0.0)),
    ],
)
def test_parse_split_accepts(text, expected):
    assert parse_split(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text, words",
    [
        # They add up to 1: the problem is the empty validation split, and the message must say so, not "add up to 1".
        ("1,0,0", ["validation fraction is 0", "early stopping", "calibration", "e.g. 0.8,0.2,0"]),
        ("0.9,0", ["validation fraction is 0"]),
        ("0,0.5,0.5", ["train fraction is 0", "nothing to train on"]),
        ("0.8,0.3,-0.1", ["test fraction is -0.1", "cannot be negative"]),
        ("0.5,0.2,0.2,0.1", ["4 numbers", "two or three"]),
        ("0.7", ["1 number", "two or three"]),
        ("0.7,abc,0.1", ["'abc' is not a number"]),
        ("0.7,nan,0.3", ["'nan' is not a number"]),
        ("0.9,0.3", ["add up to 1.2, not 1", "0.75,0.25"]),
        ("0.33,0.33,0.33", ["add up to 0.99, not 1", "0.34,0.33,0.33"]),
    ],
)
def test_parse_split_says_what_is_wrong(text, words):
    with pytest.raises(ConfigError) as e:
        parse_split(text)
    msg = str(e.value)
    assert msg.startswith(f"--split '{text}'"), msg
    for w in words:
        assert w in msg, msg
    if "add up to" in words[0]:
        parse_split(msg.rstrip(".").rsplit(" ", 1)[-1])  # the suggested fix is itself accepted
    else:
        assert "add up to" not in msg, msg  # the real reason, not the sum (1,0,0 does add up to 1)


def test_parse_split_of_something_that_is_not_a_list():
    with pytest.raises(ConfigError, match="--split '0.7' has 1 number"):
        parse_split(0.7)


# --- cache_home ------------------------------------------------------------------------------------------------------


def test_cache_home_order(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("TRANSFERKIT_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_home() == home / ".cache" / "transferkit"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_home() == tmp_path / "xdg" / "transferkit"
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "tk"))
    assert cache_home() == tmp_path / "tk"
    assert cache_home(str(tmp_path / "arg")) == tmp_path / "arg"


@pytest.mark.parametrize("value", ["", "relative/cache"])
def test_cache_home_ignores_an_empty_or_relative_xdg_cache_home(tmp_path, monkeypatch, value):
    # The XDG spec: "If an implementation encounters a relative path in any of these variables it should consider
    # the path invalid and ignore it"; an empty one means unset.
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("TRANSFERKIT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", value)
    assert cache_home() == tmp_path / ".cache" / "transferkit"


def test_default_run_names_drop_a_list_or_hdf5_files_suffix():
    from transferkit.api import _data_name

    assert _data_name("../shared/data/houses/labels.csv") == "labels"  # runs/labels-linear, not labels.csv-linear
    assert _data_name("data/train_catvnoncat.h5") == "train_catvnoncat"
    assert _data_name("data/hymenoptera") == "hymenoptera"
    assert _data_name("data/photos.v2") == "photos.v2"  # a folder with a dot keeps its whole name
    assert _data_name("") == "data"


# --- a --cache-dir that is a file ------------------------------------------------------------------------------------
# The feature store takes a folder it cannot write for no cache: a file there meant every run extracted every image
# again, without a word.


def test_a_cache_dir_that_is_a_file_is_refused_by_validate(tmp_path, monkeypatch):
    from transferkit.config import RunConfig
    from transferkit.options import validate

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TRANSFERKIT_CACHE", raising=False)
    Path("afile").write_text("hi\n")
    cfg = RunConfig()
    cfg.runtime.cache_dir = "afile"
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    assert str(e.value) == "--cache-dir 'afile' is a file, not a folder: give a folder (it is created if missing)."
    cfg.runtime.cache_dir = "afile/features"
    with pytest.raises(ConfigError, match="--cache-dir 'afile/features' cannot be made: 'afile' is a file"):
        validate(cfg)
    for folder in ("cache", "missing/deeper"):  # an existing folder, or one to be made: fine, and nothing is made
        cfg.runtime.cache_dir = folder
        Path("cache").mkdir(exist_ok=True)
        validate(cfg)
    assert not Path("missing").exists()


def test_a_cache_from_the_environment_that_is_a_file_is_refused_where_the_store_opens(tmp_path, monkeypatch):
    from transferkit.engine.features import open_store

    (tmp_path / "afile").write_text("hi\n")
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "afile"))
    with pytest.raises(ConfigError, match=r"\$TRANSFERKIT_CACHE '.*afile' is a file, not a folder: set it to a folder"):
        open_store(None, {"backbone": "x"}, "fp32")  # embed(...) and the like reach the store without `validate`
    assert open_store(str(tmp_path / "c"), {"backbone": "x"}, "fp32").path.parent == tmp_path / "c" / "store"


@pytest.mark.parametrize(
    "command",
    [["train", "DATA", "--strategy", "linear", "--out", "OUT"], ["embed", "DATA", "--out", "OUT"], ["rank", "DATA"]],
)
def test_a_cache_dir_that_is_a_file_exits_2_before_any_work(tmp_path, monkeypatch, capsys, command):
    from transferkit.cli.app import main

    data = write_folder(tmp_path / "d", per_class=2)
    (tmp_path / "afile").write_text("hi\n")
    args = [{"DATA": str(data), "OUT": str(tmp_path / "o")}.get(a, a) for a in command]
    monkeypatch.setattr(sys, "argv", ["transferkit", *args, "--cache-dir", str(tmp_path / "afile")])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    said = capsys.readouterr().err.replace("\n", "")
    assert "is a file, not a folder: give a folder (it is created if missing)" in said
    assert not (tmp_path / "o").exists()  # nothing run


# --- two-phase within --epochs ---------------------------------------------------------------------------------------
def test_two_phase_with_one_epoch_is_refused_not_run_for_two():
    """--epochs is the most in all; two-phase's head and fine-tune take an epoch at least each, so --epochs 1 ran 2."""
    from transferkit.config import RunConfig
    from transferkit.options import validate
    from transferkit.strategies import parse_strategy

    cfg = RunConfig()
    cfg.train.strategy, cfg.train.epochs = "two-phase", 1
    with pytest.raises(ConfigError, match="--strategy two-phase --epochs 1: .* give --epochs 2 or more"):
        validate(cfg)
    cfg.train.epochs = 2
    validate(cfg)
    assert [p.epochs for p in parse_strategy("two-phase").phases(2, 3)] == [1, 1]  # within the 2
    cfg.train.strategy, cfg.train.epochs = "linear", 1
    validate(cfg)


# --- option values of the wrong type ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "given, words",
    [
        ({"epochs": "1"}, r"--epochs '1' \(str\): give a whole number"),
        ({"epochs": 1.5}, r"--epochs 1.5 \(float\): give a whole number"),
        ({"epochs": True}, r"--epochs True \(bool\): give a whole number"),
        ({"lr": "fast"}, r"--lr 'fast' \(str\): give a number"),
        ({"crop_scale": [0.35]}, r"--crop-scale \(0.35,\) \(tuple\): give 2 numbers"),
        ({"crop_scale": "0.35 1"}, r"--crop-scale '0.35 1' \(str\): give 2 numbers"),
        ({"head": 5}, r"--head 5 \(int\): give text"),
    ],
)
def test_an_option_of_the_wrong_type_is_refused_by_name_before_any_work(given, words):
    """A --config file or fit(**kw) reaches validate unparsed: '1' for --epochs died in the head's solver after
    `auto` had measured every candidate, and 1.5 trained and was saved."""
    from transferkit.config import RunConfig
    from transferkit.options import apply_overrides, validate

    with pytest.raises(ConfigError, match=words):
        validate(apply_overrides(RunConfig(), given))


def test_options_of_the_right_type_pass_numpy_numbers_and_ints_for_floats_included():
    from transferkit.config import RunConfig
    from transferkit.options import apply_overrides, validate

    given = {"epochs": np.int64(3), "lr": 1, "crop_scale": [0.5, 1], "split": [0.8, 0.2], "path_column": 0}
    cfg = apply_overrides(RunConfig(), {**given, "label_column": 2})  # 0-based column indices, as open_source takes
    validate(cfg)
    assert cfg.data.crop_scale == (0.5, 1) and cfg.data.split == (0.8, 0.2, 0.0)
    assert type(cfg.train.epochs) is int  # not np.int64: config.json saved it as "3", which --resume then refused
    with pytest.raises(ConfigError, match="--epochs 0: give at least 1"):
        validate(apply_overrides(RunConfig(), {"epochs": np.int64(0)}))  # NumPy numbers are bounded too


def test_fit_refuses_a_dict_as_config_and_resume_refuses_a_config_file(tmp_path, monkeypatch, capsys):
    import transferkit
    from transferkit.cli.app import main

    with pytest.raises(ConfigError, match="config=dict: give a RunConfig"):
        transferkit.fit(tmp_path, config={"epochs": 1})
    (tmp_path / "c.json").write_text('{"train": {"epochs": 20}}')  # was dropped: the resume went on without it
    monkeypatch.setattr(sys, "argv", ["transferkit", "train", "--resume", str(tmp_path), "--config", "c.json"])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2
    assert "--config c.json with --resume" in capsys.readouterr().err.replace("\n", "")


def test_options_given_as_paths_or_lists_of_names_still_pass(tmp_path):
    """out=tmp_path and backbones=[...] are how Python callers give them; the type check must not refuse them."""
    from transferkit.config import RunConfig
    from transferkit.options import apply_overrides, validate

    validate(
        apply_overrides(RunConfig(), {"out": tmp_path, "cache_dir": tmp_path, "backbones": ["efficientnet_lite0"]})
    )


# --- the web stack missing: one message for every command that needs it ------------------------------------------
@pytest.mark.parametrize(
    "command, named",
    [
        (["serve", "BUNDLE"], "`transferkit serve`"),
        (["label", "DATA", "--classes", "a,b", "--out", "OUT"], "`transferkit label`"),
        (["review", "DATA", "--serve", "-o", "OUT"], "`review --serve`"),
    ],
)
def test_a_command_whose_web_stack_is_missing_says_which_extra_to_install(tmp_path, command, named):
    """uvicorn made unimportable in a fresh interpreter: exit 2, the command named, the pip line, nothing written."""
    data = write_folder(tmp_path / "d", per_class=2)
    args = [
        {"DATA": str(data), "OUT": str(tmp_path / "o"), "BUNDLE": str(tmp_path / "none")}.get(a, a) for a in command
    ]
    code = (
        "import sys; sys.modules['uvicorn'] = None; sys.argv = ['transferkit', *sys.argv[1:]]\n"
        "from transferkit.cli.app import main; main()"
    )
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    said = out.stderr.replace("\n", " ")
    assert out.returncode == 2, said
    assert f"{named} needs FastAPI and uvicorn (uvicorn is missing): pip install 'transferkit[serve]'" in said
    assert "Traceback" not in said and not (tmp_path / "o").exists()


def test_arch_without_a_weights_file_is_refused_and_the_offline_message_names_scratch():
    """--arch beside a backbone that names its own architecture was ignored and still recorded as the run's arch;
    the offline message for a hub name left out the one offline way to train it."""
    from transferkit.backbones.hub import offline_error
    from transferkit.config import RunConfig
    from transferkit.options import validate

    cfg = RunConfig()
    cfg.model.arch = "torchvision:resnet18"
    with pytest.raises(ConfigError, match="--arch torchvision:resnet18 says which architecture a weights file is"):
        validate(cfg)
    cfg.model.backbone = "file:w.pth"
    validate(cfg)
    cfg.model.backbone, cfg.model.backbones = "efficientnet_lite0", "efficientnet_lite0,file:w.pth"
    validate(cfg)  # auto's candidates may hold the file
    said = str(offline_error("timm:resnet18", OSError("huggingface.co cannot be reached")))
    assert (
        "--backbone file:PATH --arch timm:resnet18, or this architecture from random weights with --strategy scratch"
        in said
    )
