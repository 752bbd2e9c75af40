"""The registry: offline weights are the real ImageNet ones, every zoo model takes a new head, bad names are explained."""

from __future__ import annotations

import pytest
import torch

from transferkit.backbones import create_backbone, list_backbones
from transferkit.backbones.model import TransferModel
from transferkit.errors import ConfigError, TransferkitError

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug
TORCHVISION_ZOO = [
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "vgg16",
    "densenet121",
    "alexnet",
    "squeezenet1_0",
    "inception_v3",
    "googlenet",
    "shufflenet_v2_x1_0",
    "mobilenet_v3_large",
    "efficientnet_b0",
]


def imagenet_top1(net, cfg, image) -> int:

    from transferkit.data.transforms import eval_transform

    tf = eval_transform(cfg.input_size, cfg.crop_pct, cfg.mean, cfg.std, cfg.interpolation)
    x = tf(torch.from_numpy(image).permute(2, 0, 1)).unsqueeze(0)
    with torch.no_grad():
        return int(net.eval()(x).argmax(1))


@pytest.mark.parametrize("name", list_backbones())
def test_builtin_weights_are_imagenet(name):
    skimage = pytest.importorskip("skimage.data")
    net, cfg = create_backbone(name)
    assert cfg.offline and cfg.mean == (0.5, 0.5, 0.5) and cfg.classifier == "classifier"
    assert imagenet_top1(net, cfg, skimage.chelsea()) in CAT_CLASSES
    assert imagenet_top1(net, cfg, skimage.coffee()) in COFFEE_CLASSES


def test_builtin_sizes_and_stages():
    sizes = {n: create_backbone(n, pretrained=False)[1].input_size for n in list_backbones()}
    assert sizes == {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}
    _, cfg = create_backbone("efficientnet_lite0", pretrained=False)
    assert cfg.stages == tuple(f"blocks.{i}" for i in range(7)) and cfg.num_features == 1280


@pytest.mark.parametrize("name", TORCHVISION_ZOO)
def test_torchvision_zoo_takes_a_new_head(name):
    net, cfg = create_backbone(f"torchvision:{name}", pretrained=False)
    model = TransferModel(net, cfg, num_outputs=3).eval()
    size = max(64, cfg.min_input)  # inception's stem needs >= 75 px: its cfg says so
    assert (cfg.min_input == 75) == (name == "inception_v3") and cfg.min_input < 224
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, 3, size, size))
        out = model(torch.randn(2, 3, size, size))
    assert feats.shape == (2, cfg.num_features)
    assert out.shape == (2, 3)
    assert len(cfg.stages) >= 3
    assert cfg.imagenet_top1 and 50 < cfg.imagenet_top1 < 90


@pytest.mark.parametrize("name", ["resnet18", "convnext_atto", "vit_tiny_patch16_224", "mobilenetv3_small_050"])
def test_timm_models_take_a_new_head(name):
    net, cfg = create_backbone(f"timm:{name}", pretrained=False)
    model = TransferModel(net, cfg, num_outputs=4, head="mlp:16").eval()
    size = max(64, cfg.min_input)  # a ViT takes its own size alone: its cfg says so
    assert (cfg.min_input == cfg.input_size) == ("vit" in name)
    with torch.no_grad():
        assert model(torch.randn(2, 3, size, size)).shape == (2, 4)
    assert model.head[0].in_features == cfg.num_features
    assert len(cfg.stages) >= 3


def test_the_input_size_that_follows_the_data_is_one_the_network_takes():
    """A ViT at EuroSAT's 64 px (and inception_v3 under 75 px) failed inside the training loop with a traceback."""
    from transferkit.backbones.cfg import check_input_size
    from transferkit.data.sizes import choose_image_size

    _, vit = create_backbone("timm:vit_tiny_patch16_224", pretrained=False)
    assert choose_image_size(64, vit.input_size, vit.min_input) == 224 and choose_image_size(64, 224) == 64
    check_input_size(None, vit, "timm:vit_tiny_patch16_224")  # not given: follows the data, raised as above
    check_input_size(224, vit, "timm:vit_tiny_patch16_224")
    for size in (64, 288):
        with pytest.raises(ConfigError, match="takes only 224 px inputs: give --image-size 224"):
            check_input_size(size, vit, "timm:vit_tiny_patch16_224")
    _, inception = create_backbone("torchvision:inception_v3", pretrained=False)
    check_input_size(96, inception, "torchvision:inception_v3")
    with pytest.raises(ConfigError, match="takes inputs of 75 px or more: give --image-size 75"):
        check_input_size(64, inception, "torchvision:inception_v3")


def test_unknown_backbone_lists_close_names():
    with pytest.raises(ConfigError) as e:
        create_backbone("efficientnet_lite")
    assert "efficientnet_lite0" in str(e.value) and "timm:" in str(e.value)
    with pytest.raises(ConfigError, match="resnet18"):
        create_backbone("torchvision:resnet81", pretrained=False)
    with pytest.raises(ConfigError, match="Did you mean"):
        create_backbone("timm:resnet5O", pretrained=False)


def test_unreachable_hub_gives_offline_choices_fast(monkeypatch):
    import time

    from transferkit.backbones import hub

    monkeypatch.setattr(hub, "reachable", lambda *a, **k: False)
    monkeypatch.setattr(hub, "cached_hf_file", lambda *a, **k: None)
    start = time.perf_counter()
    with pytest.raises(TransferkitError) as e:
        create_backbone("timm:resnet18", pretrained=True)  # no-download: the hub is patched away
    assert time.perf_counter() - start < 10
    msg = str(e.value)
    assert "efficientnet_lite0" in msg and "file:" in msg and "network" in msg


def test_file_backbone_with_another_head(tmp_path):
    """A resnet18 trained for 7 classes elsewhere: its backbone loads, its head is dropped, the counts are reported."""
    import torchvision

    src = torchvision.models.resnet18(num_classes=7)
    torch.nn.init.constant_(src.layer1[0].conv1.weight, 0.123)
    torch.save({"state_dict": {"module." + k: v for k, v in src.state_dict().items()}}, tmp_path / "w.pth")
    net, cfg = create_backbone(f"file:{tmp_path / 'w.pth'}", arch="torchvision:resnet18")
    assert torch.allclose(net.layer1[0].conv1.weight, torch.full_like(net.layer1[0].conv1.weight, 0.123))
    report = cfg.extra["load_report"]
    assert report["loaded"] == len(src.state_dict()) - 2  # everything but fc.weight and fc.bias
    assert (
        report["skipped"] == 0 and report["missing"] == 0
    )  # the classifier is neither loaded nor missing: it is replaced
    model = TransferModel(net, cfg, num_outputs=2)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 2)


def test_file_backbone_safetensors_and_lukemelas_names(tmp_path):
    from safetensors.torch import save_file

    from transferkit.backbones.lite import weights_path

    state = torch.load(weights_path("efficientnet_lite0"), weights_only=True)  # lukemelas naming, 1000-class _fc
    state["_fc.weight"] = torch.zeros(5, 1280)  # "a different head"
    state["_fc.bias"] = torch.zeros(5)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "lite.safetensors"))
    net, cfg = create_backbone(f"file:{tmp_path / 'lite.safetensors'}", arch="efficientnet_lite0")
    ref, _ = create_backbone("efficientnet_lite0")
    assert torch.equal(net.conv_head.weight, ref.conv_head.weight)
    assert cfg.extra["load_report"]["skipped"] == 0


def test_file_backbone_wrong_architecture_is_refused(tmp_path):
    import torchvision

    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    with pytest.raises(ConfigError, match="does not look like weights for 'efficientnet_lite0'"):
        create_backbone(f"file:{tmp_path / 'r18.pth'}", arch="efficientnet_lite0")
    with pytest.raises(ConfigError, match="--arch"):
        create_backbone(f"file:{tmp_path / 'r18.pth'}")
    with pytest.raises(ConfigError, match="does not exist"):
        create_backbone(f"file:{tmp_path / 'nope.pth'}", arch="torchvision:resnet18")


def test_heads():
    from transferkit.backbones.heads import build_head, parse_head

    mlp = build_head("mlp:460", 1280, 5)
    kinds = [type(m).__name__ for m in mlp]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear"] and mlp[2].p == 0.4 and mlp[0].out_features == 460
    assert isinstance(build_head("linear", 8, 2, dropout=0.2)[0], torch.nn.Dropout)
    for bad in ("mlp", "mlp:x", "mlp:-3", "conv", "linear:3"):
        with pytest.raises(ConfigError, match="--head"):
            parse_head(bad)


def test_a_weights_file_under_a_wrapper_prefix_loads_and_a_bundles_file_points_to_bundle(tmp_path):
    """A transferkit model's model.safetensors keeps its backbone under 'net.' (Lightning's under 'model.'): 0% of
    the names matched and the message said to check --arch, which was right."""
    from safetensors.torch import save_file

    from transferkit.backbones.files import build_from_file

    net, _ = create_backbone("efficientnet_lite0", pretrained=False)
    state = {f"net.{k}": v.contiguous() for k, v in net.state_dict().items()}
    save_file({**state, "head.0.weight": torch.zeros(3, 1280)}, tmp_path / "model.safetensors")
    built, cfg = build_from_file(str(tmp_path / "model.safetensors"), True, arch="efficientnet_lite0")
    assert cfg.extra["load_report"]["matched_fraction"] == 1.0
    key = "conv_stem.weight"
    assert torch.equal(built.state_dict()[key], net.state_dict()[key])
    save_file({"something.else": torch.zeros(2)}, tmp_path / "model.safetensors")
    (tmp_path / "transferkit.json").write_text("{}")
    with pytest.raises(ConfigError, match=f"a transferkit model's: give --backbone bundle:{tmp_path}"):
        build_from_file(str(tmp_path / "model.safetensors"), True, arch="efficientnet_lite0")
