"""Each strategy proven on a real backbone: what requires grad, what moves after a step, which BN statistics stay put."""

from __future__ import annotations

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from transferkit.backbones import create_backbone
from transferkit.backbones.model import TransferModel
from transferkit.errors import ConfigError
from transferkit.strategies import ALL, apply_phase, param_groups, parse_strategy, set_train_mode


@pytest.fixture(scope="module")
def lite0():
    net, cfg = create_backbone("efficientnet_lite0")
    return net, cfg


def fresh(lite0) -> TransferModel:
    import copy

    net, cfg = lite0
    return TransferModel(copy.deepcopy(net), cfg, num_outputs=3)


def one_step(model, phase_strategy: str):
    """Apply the strategy's first phase, take one AdamW step; return (before, after) parameters and BN buffers."""
    phase = parse_strategy(phase_strategy).phases(epochs=4)[0]
    apply_phase(model, phase)
    set_train_mode(model)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(param_groups(model, 1e-2, 0.1, 0.0))
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    return before, model.state_dict()


def changed(before, after, key) -> bool:
    return not torch.equal(before[key], after[key])


def test_linear_trains_only_the_head(lite0):
    model = fresh(lite0)
    before, after = one_step(model, "linear")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith("head.")}
    assert changed(before, after, "head.0.weight")
    assert not any(changed(before, after, k) for k in before if k.startswith("net."))  # weights AND BN statistics
    assert all(not m.training for m in model.net.modules() if isinstance(m, _BatchNorm))


def test_freeze_k_freezes_stem_and_first_k_stages(lite0):
    model = fresh(lite0)
    before, after = one_step(model, "freeze:2")
    grad = {n: p.requires_grad for n, p in model.named_parameters()}
    assert not grad["net.conv_stem.weight"] and not grad["net.blocks.0.0.conv_dw.weight"]
    assert not grad["net.blocks.1.0.conv_pw.weight"]
    assert grad["net.blocks.2.0.conv_pw.weight"] and grad["net.conv_head.weight"] and grad["head.0.weight"]
    assert not changed(before, after, "net.blocks.1.0.bn1.running_mean")  # frozen BN: statistics stay put
    assert changed(before, after, "net.blocks.3.0.bn1.running_mean")  # trainable BN keeps learning statistics
    assert changed(before, after, "net.blocks.2.0.conv_pw.weight")
    assert not changed(before, after, "net.conv_stem.weight")


def test_freeze_zero_freezes_only_the_stem(lite0):
    model = fresh(lite0)
    apply_phase(model, parse_strategy("freeze:0").phases(3)[0])
    grad = {n: p.requires_grad for n, p in model.named_parameters()}
    assert not grad["net.conv_stem.weight"] and not grad["net.bn1.weight"]
    assert grad["net.blocks.0.0.conv_dw.weight"]


def test_freeze_beyond_the_stages_names_the_range(lite0):
    model = fresh(lite0)
    with pytest.raises(ConfigError, match=r"only 7 stages; use 0\.\.7"):
        apply_phase(model, parse_strategy("freeze:9").phases(3)[0])


def test_finetune_trains_everything_with_discriminative_lrs(lite0):
    model = fresh(lite0)
    before, after = one_step(model, "finetune")
    assert all(p.requires_grad for p in model.parameters())
    assert changed(before, after, "net.conv_stem.weight") and changed(before, after, "net.bn1.running_mean")
    groups = param_groups(model, 1e-3, 0.1, 0.01)
    lrs = {g["name"]: g["lr"] for g in groups}
    assert lrs["head"] == pytest.approx(1e-3) and lrs["backbone"] == pytest.approx(1e-4)
    assert {g["name"]: g["weight_decay"] for g in groups}["backbone_no_decay"] == 0.0


def test_scratch_is_unpretrained_and_not_slowed():
    s = parse_strategy("scratch")
    assert s.pretrained is False
    (phase,) = s.phases(5)
    assert phase.frozen is None and phase.backbone_lr_mult == 1.0


def test_two_phase_is_head_first_then_everything():
    head, rest = parse_strategy("two-phase").phases(epochs=10, head_epochs=3)
    assert (head.frozen, head.cached, head.epochs) == (ALL, True, 3)
    assert (rest.frozen, rest.cached, rest.epochs) == (None, False, 7)


@pytest.mark.parametrize("bad", ["lineer", "freeze", "freeze:x", "freeze:-1", "", "fine tune"])
def test_malformed_strategy_names_the_option(bad):
    with pytest.raises(ConfigError) as e:
        parse_strategy(bad)
    assert "--strategy" in str(e.value)
