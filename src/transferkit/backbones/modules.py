"""Small helpers to reach submodules by dotted name (heads and freezing go by name, never by index)."""

from __future__ import annotations

from torch import nn


def set_submodule(net: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, leaf = path.rpartition(".")
    parent = net.get_submodule(parent_path) if parent_path else net
    setattr(parent, leaf, module)


def in_features(module: nn.Module) -> int:
    """Width of the input of a classifier module (Linear or 1x1 Conv)."""
    if isinstance(module, nn.Linear):
        return module.in_features
    if isinstance(module, nn.Conv2d):
        return module.in_channels
    for m in module.modules():  # a Sequential classifier: its first Linear/Conv decides
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            return in_features(m)
    raise ValueError(f"cannot tell the input width of {type(module).__name__}")


def child_stages(net: nn.Module, container: str | None = None, skip: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Named children (of `container`, or of the net) that hold parameters, in forward order."""
    root = net.get_submodule(container) if container else net
    prefix = f"{container}." if container else ""
    return tuple(
        prefix + name
        for name, child in root.named_children()
        if name not in skip and any(True for _ in child.parameters())
    )


class L2Normalise(nn.Module):
    """Rows scaled to unit length (a cosine head's first step); exports to ONNX as plain ops."""

    def forward(self, x):
        return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


class Prototypes(nn.Sequential):
    """The `prototypes` head: nearest class mean by cosine. normalise -> Linear whose rows are the L2-normalised class
    means times a fitted temperature (core/heads.py fits both in closed form), so predict, export and serve run it
    like any head. Its own class so that the logistic solver never mistakes its Linear for a logistic regression."""

    def __init__(self, in_features: int, num_outputs: int):
        super().__init__(L2Normalise(), nn.Linear(in_features, num_outputs))
