"""The one registry: a backbone name maps to a builder and the pretrained config that travels with its weights.

    from transferkit.backbones import create_backbone, list_backbones
    net, cfg = create_backbone("efficientnet_lite0")          # offline ImageNet weights
    net, cfg = create_backbone("timm:resnet50", pretrained=False)
    net, cfg = create_backbone("file:my.pth", arch="torchvision:resnet18")

Names: the built-ins (offline), `timm:<any timm model>`, `torchvision:<model>`, `file:<path>` (with `arch`).
Nothing outside this package names an architecture; everything else asks the `BackboneCfg`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, unknown_choice

if TYPE_CHECKING:  # keeps `import transferkit` free of torch
    from torch import nn


@dataclass(frozen=True)
class BackboneCfg:
    """What a network needs around it: its preprocessing, where its classifier sits, how it splits into stages."""

    name: str  # the registry name the user gave (e.g. "timm:resnet50")
    arch: str  # the name that rebuilds the architecture without weights (same as name except for file:)
    input_size: int  # square side the weights were trained at
    crop_pct: float  # eval: resize to input_size / crop_pct, then centre-crop input_size
    interpolation: str  # "bicubic" | "bilinear"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    classifier: str  # dotted path of the original classifier module, replaced by the new head
    num_features: int  # width of the pooled features the head sees
    stages: tuple[str, ...]  # module prefixes in forward order; freeze:K freezes everything before stages[K]
    imagenet_top1: float | None = None  # published ImageNet top-1 (%), a prior for the advisor
    offline: bool = False  # pretrained weights available without a network
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# name -> (builder, short description). A builder takes (pretrained: bool) and returns (net, cfg).
Builder = Callable[[bool], "tuple[nn.Module, BackboneCfg]"]
_BUILTINS: dict[str, tuple[Builder, str]] = {}
DEFAULT_BACKBONE = "efficientnet_lite0"


def register_backbone(name: str, description: str) -> Callable[[Builder], Builder]:
    def wrap(fn: Builder) -> Builder:
        if name in _BUILTINS:
            raise ValueError(f"backbone '{name}' is already registered")
        _BUILTINS[name] = (fn, description)
        return fn

    return wrap


def _ensure_builtins() -> None:
    if not _BUILTINS:
        from . import lite  # noqa: F401  (registers on import)


def list_backbones(source: str = "builtin") -> list[str]:
    """Names usable as --backbone. `source`: builtin | timm | torchvision."""
    if source == "builtin":
        _ensure_builtins()
        return sorted(_BUILTINS)
    if source == "timm":
        import timm

        return ["timm:" + n for n in timm.list_models()]
    if source == "torchvision":
        from .tv import TORCHVISION_MODELS

        return ["torchvision:" + n for n in TORCHVISION_MODELS]
    raise unknown_choice("backbone source", source, ["builtin", "timm", "torchvision"])


def describe_backbones() -> list[tuple[str, str]]:
    _ensure_builtins()
    return [(n, _BUILTINS[n][1]) for n in sorted(_BUILTINS)]


def create_backbone(name: str, pretrained: bool = True, arch: str | None = None) -> "tuple[nn.Module, BackboneCfg]":
    """The single door: returns the network with its original classifier still attached, and its config."""
    _ensure_builtins()
    if name.startswith("file:"):
        from .files import build_from_file

        return build_from_file(name[len("file:"):], arch=arch, pretrained=pretrained)
    if name.startswith("timm:"):
        from .timm_ import build_timm

        return build_timm(name[len("timm:"):], pretrained=pretrained)
    if name.startswith("torchvision:"):
        from .tv import build_torchvision

        return build_torchvision(name[len("torchvision:"):], pretrained=pretrained)
    if name in _BUILTINS:
        return _BUILTINS[name][0](pretrained)
    raise unknown_choice(
        "backbone",
        name,
        sorted(_BUILTINS),
        hint="Other models: 'timm:<name>' (any timm model), 'torchvision:<name>', or 'file:<path>' with --arch. "
        "See `transferkit backbones`.",
    )


def check_backbone_name(name: str) -> None:
    """Cheap validation (no torch) so that a typo fails before any data is read."""
    _ensure_builtins()
    if name.startswith(("file:", "timm:", "torchvision:")):
        if name.endswith(":"):
            raise ConfigError(f"Backbone '{name}' names no model after the colon, e.g. 'timm:resnet18'.")
        return
    if name not in _BUILTINS:
        create_backbone(name)  # raises the helpful error
