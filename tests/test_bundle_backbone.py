"""`bundle:<path>` as a backbone (backbones/bundles.py): the body and preprocessing of a trained model reused under
every strategy, its head dropped; `rank` takes it; bad bundles are refused before anything is written."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

import transferkit
from transferkit.backbones import create_backbone
from transferkit.bundle import load_bundle, save_bundle
from transferkit.errors import ConfigError

from .conftest import write_folder

# The source bundle: timm's 0.37M-parameter test ResNet from random weights (no download), one epoch at 48 px.
# 48 is neither its architecture's 160 nor the 64 px the 40 px images would get: new runs showing 48 took the bundle's.
SOURCE_SIZE = 48


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("source")
    data = write_folder(root / "colours", per_class=8)
    run = transferkit.fit(
        data,
        backbone="timm:test_resnet",
        strategy="scratch",
        epochs=1,
        image_size=SOURCE_SIZE,
        out=str(root / "runs"),
        name="src",
        cache_dir=str(root / "cache"),
        quiet=True,
    )
    meta = json.loads((run.best / "transferkit.json").read_text())
    # Preprocessing unlike the architecture's own (crop 0.95, bilinear, 0.5 +- 0.5): what new runs must inherit.
    meta["preprocessing"].update(crop_pct=1.0, interpolation="bicubic", mean=[0.4, 0.45, 0.5], std=[0.2, 0.25, 0.3])
    (run.best / "transferkit.json").write_text(json.dumps(meta))
    return run.best


@pytest.fixture
def two_colours(tmp_path):
    """Another task: two of the colours, other images."""
    return write_folder(tmp_path / "two", per_class=8, classes=("red", "blue"), seed=5)


def body(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.startswith("net.")}


def bundle_state(path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def fit_from(source, data, tmp_path, strategy, **kw):
    return transferkit.fit(
        data, backbone=f"bundle:{source}", strategy=strategy, epochs=1, out=str(tmp_path / "runs"), quiet=True, **kw
    )


def test_the_factory_gives_the_bundles_body_and_preprocessing(source):
    net, cfg = create_backbone(f"bundle:{source}")
    src = bundle_state(source)
    own = net.state_dict()
    for k, v in body(src).items():
        assert torch.equal(own[k.removeprefix("net.")], v), k
    # Its head sits where the classifier was (`fc`): what the new model drops, and what rank's LEEP reads.
    assert torch.equal(own["fc.0.weight"], src["head.0.weight"])
    assert (cfg.input_size, cfg.crop_pct, cfg.interpolation) == (SOURCE_SIZE, 1.0, "bicubic")
    assert cfg.mean == (0.4, 0.45, 0.5) and cfg.std == (0.2, 0.25, 0.3)
    assert cfg.arch == "timm:test_resnet" and cfg.imagenet_top1 is None
    assert cfg.extra["bundle"]["task"] == "classification" and cfg.extra["bundle"]["outputs"] == 3


def test_the_public_feature_extractor_is_the_bundles_body(source):
    body, cfg, prep = transferkit.feature_extractor(f"bundle:{source}")
    x = prep(torch.randint(0, 256, (2, 3, 20, 30), dtype=torch.uint8))
    assert x.shape == (2, 3, SOURCE_SIZE, SOURCE_SIZE) and cfg.num_features == 96
    model, _ = load_bundle(source)
    with torch.no_grad():
        assert torch.allclose(body.eval()(x), model.forward_features(x), atol=1e-5)  # features, not class logits


def test_linear_keeps_the_body_and_the_new_model_stands_alone(source, two_colours, tmp_path):
    run = fit_from(source, two_colours, tmp_path, "linear")
    new = bundle_state(run.best)
    for k, v in body(bundle_state(source)).items():
        assert torch.equal(new[k], v), k  # frozen: the bundle's body, bit for bit
    assert new["head.0.weight"].shape == (2, 96)  # the bundle's 3-class head dropped, a 2-class one trained
    meta = json.loads((run.best / "transferkit.json").read_text())
    assert meta["backbone"] == f"bundle:{source}" and meta["arch"] == "timm:test_resnet"
    assert meta["preprocessing"] == {
        "image_size": SOURCE_SIZE,
        "crop_pct": 1.0,
        "interpolation": "bicubic",
        "mean": [0.4, 0.45, 0.5],
        "std": [0.2, 0.25, 0.3],
    }
    moved = tmp_path / "moved"
    shutil.copytree(source, moved)  # the new model is rebuilt from its own files: the source can go
    shutil.rmtree(source)
    try:
        answer = transferkit.load(run.best).predict(next(two_colours.rglob("*.png")))
        assert answer["label"] in ("red", "blue")
    finally:
        shutil.copytree(moved, source)


def test_a_classifier_becomes_a_regressions_backbone(source, tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 40, 40, 3), dtype=np.uint8)
    data = transferkit.from_arrays(x, x.mean((1, 2, 3)) / 255.0, task="regression")
    run = fit_from(source, data, tmp_path, "linear", task="regression")
    assert run.test_metrics["rmse"] >= 0 and bundle_state(run.best)["head.0.weight"].shape == (1, 96)
    meta = json.loads((run.best / "transferkit.json").read_text())
    assert meta["task"] == "regression" and meta["preprocessing"]["image_size"] == SOURCE_SIZE
    with pytest.raises(transferkit.errors.ConfigError, match=r"pass the data, e.g. run.evaluate\(transferkit.from_arr"):
        run.evaluate()  # arrays have no path to reopen: said, not "Data path 'arrays' does not exist"
    assert run.evaluate(data)["n"] > 0


@pytest.mark.parametrize("strategy", ["finetune", "freeze:2"])  # two-phase: linear, then finetune
def test_training_strategies_start_from_the_bundles_body(source, two_colours, tmp_path, strategy):
    """One small step away from the bundle's body; a freshly initialised body is far from it."""
    run = fit_from(source, two_colours, tmp_path, strategy, lr=1e-4)
    src, new = body(bundle_state(source)), body(bundle_state(run.best))
    fresh, _ = create_backbone("timm:test_resnet", pretrained=False)
    fresh = fresh.state_dict()
    k = "net.layer4.0.conv1.weight"
    moved, far = (new[k] - src[k]).abs().max().item(), (fresh[k.removeprefix("net.")] - src[k]).abs().max().item()
    assert moved < far / 10, (moved, far)
    assert any(not torch.equal(new[k], src[k]) for k in src if k.endswith("weight"))  # and it did train


def test_scratch_is_the_bundles_architecture_without_its_weights(source, two_colours, tmp_path):
    run = fit_from(source, two_colours, tmp_path, "scratch")
    src, new = body(bundle_state(source)), body(bundle_state(run.best))
    k = "net.layer4.0.conv1.weight"
    assert (new[k] - src[k]).abs().max() > 0.1  # random start, one epoch: nowhere near the bundle's weights
    meta = json.loads((run.best / "transferkit.json").read_text())
    assert meta["preprocessing"]["image_size"] == SOURCE_SIZE and meta["preprocessing"]["mean"] == [0.4, 0.45, 0.5]


def test_rank_takes_a_bundle_with_its_head_for_leep(source, two_colours):
    rows = transferkit.rank(two_colours, candidates=f"efficientnet_lite0,bundle:{source}", quiet=True)
    row = next(r for r in rows if r.backbone == f"bundle:{source}")
    assert row.error is None and row.feature_dim == 96 and row.image_size == SOURCE_SIZE
    assert row.leep is not None and row.imagenet_top1 is None  # LEEP from the bundle's 3-class head


def test_the_feature_cache_tells_bundles_at_one_path_apart(source, tmp_path):
    place = tmp_path / "model"
    shutil.copytree(source, place)
    _, first = create_backbone(f"bundle:{place}")
    _, same = create_backbone(f"bundle:{place}")
    assert first.extra["weights_key"] == same.extra["weights_key"]
    model, meta = load_bundle(place)
    save_bundle(place, model, meta)  # a model saved again to the same folder: a new save id, a new file
    _, second = create_backbone(f"bundle:{place}")
    assert second.extra["weights_key"] != first.extra["weights_key"]


def _damaged(source, tmp_path, how: str):
    bad = tmp_path / "bad"
    shutil.copytree(source, bad)
    weights, meta_file = bad / "model.safetensors", bad / "transferkit.json"
    meta = json.loads(meta_file.read_text())
    if how == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif how == "no weights":
        weights.unlink()
    elif how == "older format":  # a bundle of a transferkit that wrote other fields
        meta.pop("backbone_cfg")
        meta["versions"]["transferkit"] = "0.0.1"
        meta_file.write_text(json.dumps(meta))
    elif how == "newer format":
        meta["format_version"] = 99
        meta_file.write_text(json.dumps(meta))
    return bad


@pytest.mark.parametrize(
    "how, says",
    [
        ("missing", r"does not exist"),
        ("not a bundle", r"not a transferkit model: it has no transferkit\.json"),
        ("a file", r"is a file; give the folder"),
        ("truncated", r"not a readable safetensors file"),
        ("no weights", r"has transferkit\.json but no model\.safetensors"),
        ("older format", r"misses 'backbone_cfg'.*written by transferkit 0\.0\.1"),
        ("newer format", r"bundle format 99, written by a newer transferkit"),
    ],
)
def test_a_bad_bundle_is_refused_and_nothing_is_written(source, two_colours, tmp_path, how, says):
    path = {
        "missing": tmp_path / "nowhere",
        "not a bundle": two_colours,
        "a file": source / "model.safetensors",
    }.get(how) or _damaged(source, tmp_path, how)
    out = tmp_path / "runs"
    with pytest.raises(ConfigError, match=r"--backbone bundle:.*" + says):
        transferkit.fit(two_colours, backbone=f"bundle:{path}", strategy="linear", out=str(out), quiet=True)
    assert not out.exists()


def test_the_cli_refuses_a_bad_bundle_with_status_2(two_colours, tmp_path):
    out = tmp_path / "runs"
    args = ["train", two_colours, "--backbone", f"bundle:{two_colours}", "--out", out]
    r = subprocess.run(
        [sys.executable, "-m", "transferkit", *map(str, args)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2 and "not a transferkit model" in r.stderr and not out.exists()
