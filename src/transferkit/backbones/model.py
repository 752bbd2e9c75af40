"""`TransferModel`: any registered backbone with its classifier removed, and a new head.

    net, cfg = create_backbone("efficientnet_lite0")
    model = TransferModel(net, cfg, num_outputs=5, head="mlp:460")
    logits = model(x)                 # == model.head(model.forward_features(x))

Parameters live under `net.*` (the pretrained part) and `head.*` (new): strategies and optimizers go by those names.
"""

from __future__ import annotations

import torch
from torch import nn

from . import depth
from .cfg import BackboneCfg
from .heads import build_head
from .modules import set_submodule


def remove_classifier(net: nn.Module, cfg: BackboneCfg) -> nn.Module:
    """Make `net(x)` return pooled features of width cfg.num_features: the last layer's, or those of several depths
    when the cfg carries them (depth.py, `--features stages`)."""
    if hasattr(net, "reset_classifier"):  # timm models (and the built-ins, which are timm models)
        net.reset_classifier(0)
    else:
        set_submodule(net, cfg.classifier, nn.Identity())
    return depth.attach(net, cfg) if depth.depth_of(cfg) else net


class TransferModel(nn.Module):
    def __init__(self, net: nn.Module, cfg: BackboneCfg, num_outputs: int, head: str = "linear", dropout: float = 0.0):
        super().__init__()
        self.cfg = cfg
        self.head_spec = head
        self.num_outputs = num_outputs  # one per name in the classes list, for every task
        self.net = remove_classifier(net, cfg)
        self.head = build_head(head, cfg.num_features, num_outputs, dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(x))

    def stage_of(self, param_name: str) -> int:
        """Index of the stage a `net.*` parameter belongs to: -1 for the stem, len(stages) for what follows them."""
        name = param_name.removeprefix("net.")
        for i, prefix in enumerate(self.cfg.stages):
            if name == prefix or name.startswith(prefix + "."):
                return i
        # Not inside a stage: before the first stage's parameters it is stem, after them it is the tail.
        return -1 if self._before_first_stage(name) else len(self.cfg.stages)

    def _before_first_stage(self, name: str) -> bool:
        if not hasattr(self, "_order"):
            self._order = {n: i for i, (n, _) in enumerate(self.net.named_parameters())}
            firsts = [i for n, i in self._order.items() if any(n.startswith(p + ".") for p in self.cfg.stages[:1])]
            self._first_stage_at = min(firsts) if firsts else 0
        return self._order.get(name, 0) < self._first_stage_at
