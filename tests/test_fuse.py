"""engine/fuse.py: frozen feature extraction folds each BatchNorm into the convolution before it, giving the same
features from fewer operations, on a copy (the net itself keeps its BatchNorms), and leaves a net alone where
folding would change what it computes."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def _batchnorms(net: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())


def _random_statistics(net: nn.Module) -> None:
    """Random running statistics on a net built without weights, so that a wrong fold cannot pass as the identity."""
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


@pytest.mark.parametrize(
    "name,pretrained,features",
    [
        ("efficientnet_lite0", True, "last"),
        ("efficientnet_lite0", True, "stages"),  # the stage hooks travel with the copy
        ("torchvision:resnet18", False, "last"),
    ],
)
def test_folding_removes_the_batchnorms_and_keeps_the_features(name, pretrained, features):
    from transferkit.backbones import create_backbone
    from transferkit.backbones.model import remove_classifier
    from transferkit.engine.fuse import folded

    net, cfg = create_backbone(name, pretrained=pretrained, features=features)
    net = remove_classifier(net, cfg).eval()
    if not pretrained:
        _random_statistics(net)
    before = _batchnorms(net)
    x = torch.randn(3, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    fast = folded(net, x[:1])
    assert fast is not net and _batchnorms(fast) == 0 and before > 0
    assert _batchnorms(net) == before  # the original keeps them: bn_shift hooks them, a fit trains them
    with torch.no_grad():
        want, got = net(x), fast(x)
    assert got.shape == want.shape == (3, cfg.num_features)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


class _PreAct(nn.Module):
    """A convolution whose output feeds a BatchNorm and a residual sum: folding it would change the sum."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.pool = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        y = self.conv(x)
        return self.pool(y + torch.relu(self.bn(y))).flatten(1)


def test_a_conv_read_elsewhere_too_is_not_folded():
    from transferkit.engine.fuse import folded

    net = _PreAct().eval()
    net.bn.running_mean.fill_(0.5)
    net.bn.running_var.fill_(4.0)
    x = torch.randn(1, 3, 8, 8)
    assert folded(net, x) is net  # the copy's output differed: the net as it is


def test_a_net_without_batchnorms_is_used_as_it_is():
    from transferkit.engine.fuse import folded

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    assert folded(net, torch.randn(1, 3, 8, 8)) is net


def test_extraction_through_the_store_matches_the_plain_forward_pass(tmp_path):
    from transferkit.backbones import create_backbone
    from transferkit.backbones.model import remove_classifier
    from transferkit.engine.features import cached_features
    from transferkit.progress import QuietReporter

    net, cfg = create_backbone("efficientnet_lite0", pretrained=False)
    net = remove_classifier(net, cfg).eval()
    _random_statistics(net)
    x = torch.randn(5, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    data = torch.utils.data.TensorDataset(x, torch.zeros(5))
    out, _ = cached_features(
        net, data, ids=[f"img{i}" for i in range(5)], config={"backbone": "t"}, cache_dir=str(tmp_path),
        batch_size=2, device=torch.device("cpu"), precision="fp32", memory_format=torch.preserve_format,
        reporter=QuietReporter(), label="test",
    )  # fmt: skip
    with torch.no_grad():
        want = net(x)
    assert _batchnorms(net) > 0 and torch.allclose(out, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


def test_the_same_weights_are_folded_once_and_changed_weights_again():
    """Split after split (train, val, test) the folded copy is reused; after an optimizer step it is made anew."""
    from transferkit.engine.fuse import folded

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    net[1].running_mean.fill_(0.3)
    x = torch.randn(2, 3, 8, 8)
    first = folded(net, x[:1])
    assert first is not net and folded(net, x[:1]) is first
    with torch.no_grad():
        net[0].weight.mul_(2.0)  # what a training step does: in place
    again = folded(net, x[:1])
    assert again is not first
    with torch.no_grad():
        assert torch.allclose(again(x), net(x), atol=1e-5) and not torch.allclose(first(x), net(x), atol=1e-3)


def test_a_short_pass_runs_the_net_as_it_is_unless_a_copy_exists():
    """Folding pays back only over enough pixels (FOLD_MIN_PIXELS): a short pass gets the net itself; once a longer
    pass folded these weights, the short one reuses that copy (it costs nothing more)."""
    from transferkit.engine.fuse import FOLD_MIN_PIXELS, folded

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    net[1].running_mean.fill_(0.3)
    x = torch.randn(2, 3, 8, 8)
    assert folded(net, x[:1], pixels=FOLD_MIN_PIXELS - 1) is net  # 200 tiles of 64 px: 0.8M pixels
    fast = folded(net, x[:1], pixels=FOLD_MIN_PIXELS)
    assert fast is not net and _batchnorms(fast) == 0
    assert folded(net, x[:1], pixels=1) is fast


def test_a_predictor_folds_once_the_images_it_ran_reach_the_pixels_that_pay_back(monkeypatch):
    """predict.TorchRunner: a one-image predict runs the bundle's net as it is; `serve` or a folder, once the images
    run reach FOLD_MIN_PIXELS, gets the folded copy, with the same answers."""
    from transferkit.engine import fuse
    from transferkit.predict import TorchRunner

    monkeypatch.setattr("transferkit.predict.FOLD_MIN_PIXELS", 3 * 16 * 16)  # three 16 px images
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    net[1].running_mean.fill_(0.3)
    fuse._FOLDED.pop(net, None)
    runner = TorchRunner(net, device="cpu", precision="fp32")
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = net(x)
    first = runner(x[:1])
    assert runner.model is net and _batchnorms(runner.model) == 1  # one image: no copy made
    runner(x[1:2])
    assert runner.model is net
    rest = runner(x[2:])  # the third and fourth image: 4 x 256 pixels >= 3 x 256
    assert runner.model is not net and _batchnorms(runner.model) == 0
    assert torch.allclose(torch.cat([first, rest]), want[[0, 2, 3]], atol=1e-5)
