"""backbones/depth.py: `--features stages` gives pooled features from several depths in one forward pass, for the
built-in, timm and torchvision backbones; a feature store folder of its own; a bundle that rebuilds it (predict,
ONNX export with the pooling in the graph, a new run's backbone); and `auto` measuring it as a candidate."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from .conftest import FAST

NETS = [  # (name, pretrained, stages kept, their widths)
    ("efficientnet_lite0", True, [f"blocks.{i}" for i in range(2, 7)], [40, 80, 112, 192, 320]),
    ("timm:resnet18", False, ["layer2", "layer3", "layer4"], [128, 256, 512]),
    ("torchvision:resnet18", False, ["layer2", "layer3", "layer4"], [128, 256, 512]),
]


@pytest.mark.parametrize("name,pretrained,stages,widths", NETS)
def test_stages_are_pooled_from_one_pass_at_the_width_the_cfg_says(name, pretrained, stages, widths):
    from transferkit.backbones import create_backbone
    from transferkit.backbones.model import remove_classifier

    net, last = create_backbone(name, pretrained=pretrained)
    x = torch.randn(2, 3, 64, 64)
    for features, width in (("stages", sum(widths)), ("stages+last", sum(widths) + last.num_features)):
        net, cfg = create_backbone(name, pretrained=pretrained, features=features)
        assert cfg.extra["depth"]["stages"] == stages and cfg.num_features == width
        body = remove_classifier(net, cfg).eval()
        with torch.no_grad():
            out = body(x)
        assert out.shape == (2, width) and torch.isfinite(out).all()
        # each stage L2-normalised x sqrt(width): its part of the vector has norm sqrt(width)
        first = out[:, : widths[0]].norm(dim=1)
        assert torch.allclose(first, torch.full((2,), widths[0] ** 0.5), rtol=1e-4)
    net, cfg = create_backbone(name, pretrained=pretrained)  # the default is untouched: the last layer
    assert "depth" not in cfg.extra and remove_classifier(net, cfg).eval()(x).shape == (2, last.num_features)


def test_a_copy_of_the_model_gives_the_same_features():
    """EMA and checkpoints deep-copy the model: the hooks travel with it and the copy does not read the original's."""
    from transferkit.backbones import create_backbone
    from transferkit.backbones.model import TransferModel

    net, cfg = create_backbone("timm:resnet18", pretrained=False, features="stages")
    model = TransferModel(net, cfg, num_outputs=3).eval()
    twin = copy.deepcopy(model)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), twin(x), atol=1e-6)
        assert model(x).shape == (3, 3) and model.forward_features(x).shape == (3, 896)


def test_unknown_features_are_refused_with_the_choices():
    from transferkit.backbones import create_backbone
    from transferkit.errors import ConfigError

    with pytest.raises(ConfigError, match="stages\\+last"):
        create_backbone("efficientnet_lite0", pretrained=False, features="middle")


def test_the_feature_store_keeps_each_feature_set_in_its_own_folder():
    from transferkit.backbones import create_backbone
    from transferkit.config import RunConfig
    from transferkit.core.store import folder_name
    from transferkit.engine.features import store_config

    cfg = RunConfig()
    keys = {}
    for features in ("last", "stages", "stages+last"):
        _, bcfg = create_backbone("efficientnet_lite0", pretrained=False, features=features)
        keys[features] = store_config(cfg, bcfg, 64)
    assert "depth" not in keys["last"]  # the last layer's folders keep the names they had before the option
    assert len({folder_name(k) for k in keys.values()}) == 3


def test_a_stages_run_rebuilds_from_its_bundle_and_exports_with_the_pooling(tiny_folder, tmp_path):
    import numpy as np

    import transferkit
    from transferkit.bundle import load_bundle
    from transferkit.export import export
    from transferkit.predict import Predictor

    run = transferkit.fit(
        tiny_folder, strategy="linear", features="stages", out=str(tmp_path / "runs"), name="s", **FAST
    )
    best = run.path / "best"
    meta = json.loads((best / "transferkit.json").read_text())
    assert (
        meta["backbone_cfg"]["num_features"] == 744 and meta["backbone_cfg"]["extra"]["depth"]["features"] == "stages"
    )
    model, _ = load_bundle(best)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert model.forward_features(x).shape == (2, 744)
    images = sorted(tiny_folder.rglob("*.png"))[:6]
    answers = Predictor(best, device="cpu", precision="fp32").predict(images)
    assert len(answers) == 6
    report = export(best, check=images)
    assert report["fp32"]["top1_agreement"] == 1.0 and report["fp32"]["max_abs_dp"] <= 1e-4
    # the stages bundle as a new run's backbone: its body's last layer, and a new --features applies
    from transferkit.backbones import create_backbone
    from transferkit.backbones.model import remove_classifier

    for features, width in (("last", 1280), ("stages", 744)):
        net, cfg = create_backbone(f"bundle:{best}", features=features)
        with torch.no_grad():
            out = remove_classifier(net, cfg).eval()(x)
        assert cfg.num_features == width and out.shape == (2, width) and np.isfinite(out.numpy()).all()


def test_auto_measures_on_a_subsample_sized_by_what_the_run_costs():
    """Half the cheapest candidate's full extraction, all measurements together, and never under MIN_SAMPLE."""
    from transferkit.selection.choose import MIN_SAMPLE, measure_sample
    from transferkit.selection.frozen import Data

    d = Data(None, {"train": list(range(1000)), "val": list(range(200))}, 64.0, "x")
    small = measure_sample(d, [1.0, 4.0, 2.0], seed=0)  # 0.5 x 1200 x 1/7 = 85 -> MIN_SAMPLE
    assert len(small.splits["train"]) + len(small.splits["val"]) == MIN_SAMPLE
    assert len(small.splits["train"]) == round(MIN_SAMPLE * 1000 / 1200)  # train/val in the data's proportion
    assert set(small.splits["train"]) <= set(d.splits["train"]) and small.decoded == {}
    one = measure_sample(d, [1.0], seed=0)  # one candidate: 0.5 x 1200 = 600 images
    assert len(one.splits["train"]) + len(one.splits["val"]) == 600
    tiny = Data(None, {"train": list(range(100)), "val": list(range(20))}, 64.0, "x")
    assert measure_sample(tiny, [1.0, 4.0], seed=0) is tiny  # smaller than MIN_SAMPLE: measured on all of it


def test_a_standardised_head_is_folded_into_the_plain_head_it_saves():
    """fit_head(standardise=True) solves on (x - mean) / std of the training rows and folds that into the head's
    Linear: on raw features it answers exactly as the head fitted on the standardised features by hand."""
    from transferkit.core.heads import fit_head

    g = torch.Generator().manual_seed(0)
    y = torch.arange(90) % 3
    x = torch.randn(90, 12, generator=g) + y[:, None].float()
    x = x * torch.logspace(-3, 2, 12) + 5.0  # features a thousand times apart in scale, off centre
    xv, yv, xt = x[:30] + 0.1, y[:30], x[::7] - 0.2
    kw = {"val": (xv, yv), "solver": "lbfgs"}
    folded = fit_head(x, y, "classification", standardise=True, **kw)
    mean, std = x.mean(0), x.std(0, unbiased=False)
    by_hand = fit_head((x - mean) / std, y, "classification", **{**kw, "val": ((xv - mean) / std, yv)})
    assert folded.results["lbfgs"]["l2"] == by_hand.results["lbfgs"]["l2"]
    assert torch.allclose(folded.logits(xt), by_hand.logits((xt - mean) / std), atol=1e-3)
    assert type(folded.module) is type(by_hand.module)  # the plain head: nothing else for a bundle to save
    plain = fit_head(x, y, "classification", **kw)  # off by default: the unscaled solve picks another head
    assert not torch.allclose(plain.logits(xt), folded.logits(xt), atol=1e-2)


def test_stages_runs_standardise_and_follow_a_larger_side_the_last_layer_does_not():
    from transferkit.backbones import create_backbone
    from transferkit.backbones.depth import STAGES_UPSCALE, input_side
    from transferkit.config import RunConfig
    from transferkit.core.heads import run_settings
    from transferkit.data.sizes import choose_image_size

    cfg = RunConfig()
    assert not run_settings(cfg).standardise  # the last layer's head is fitted as before
    cfg.model.features = "stages"
    assert run_settings(cfg).standardise
    _, last = create_backbone("efficientnet_lite0", pretrained=False)
    _, stages = create_backbone("efficientnet_lite0", pretrained=False, features="stages")
    assert choose_image_size(input_side(64, last), 224) == 64  # EuroSAT's tiles, the last layer: as before
    assert choose_image_size(input_side(64, stages), 224) == 64 * STAGES_UPSCALE == 192
    assert choose_image_size(input_side(8, stages), 224) == 64  # the digits stay at the floor
    assert choose_image_size(input_side(375, stages), 224) == 224  # photos: the backbone's own size either way


def test_embed_reads_features_from_every_depth_at_the_side_train_gives_them(tiny_folder):
    """`embed(features="stages")` sizes its input as `train --features stages` does (3x a small image's side), so its
    rows are the ones that run computes and stores."""
    from transferkit.backbones import create_backbone
    from transferkit.backbones.depth import frozen_input_size
    from transferkit.core.embed import embed
    from transferkit.data.sizes import survey_sides
    from transferkit.data.sources import Sample, open_images

    imgs = open_images(tiny_folder)
    side = survey_sides(imgs, [Sample(k, 0) for k in imgs.keys])[0]
    _, cfg = create_backbone("efficientnet_lite0", pretrained=False, features="stages")
    last, deep = embed(tiny_folder), embed(tiny_folder, features="stages")
    assert deep.image_size == frozen_input_size(side, cfg) > last.image_size
    assert deep.features.shape == (len(imgs.keys), cfg.num_features)
