"""The one registry: a backbone name maps to a builder and the pretrained config that travels with its weights.

    from transferkit.backbones import create_backbone, list_backbones
    net, cfg = create_backbone("efficientnet_lite0")          # offline ImageNet weights
    net, cfg = create_backbone("timm:resnet50", pretrained=False)
    net, cfg = create_backbone("file:my.pth", arch="torchvision:resnet18")

Names: the built-ins (offline), `timm:<any timm model>`, `torchvision:<model>`, `file:<path>` (with `arch`),
`bundle:<path>` (a model transferkit trained).
Nothing outside this package names an architecture; everything else asks the `BackboneCfg`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigError, unknown_choice
from .cfg import BackboneCfg

if TYPE_CHECKING:  # keeps `import transferkit` free of torch
    from torch import nn


# name -> (builder, short description). A builder takes (pretrained: bool) and returns (net, cfg).
Builder = Callable[[bool], "tuple[nn.Module, BackboneCfg]"]
_BUILTINS: dict[str, tuple[Builder, str]] = {}


@dataclass(frozen=True)
class Scheme:
    """A family of names `<prefix>:<rest>` (timm:, torchvision:, file:): one builder for every name in it."""

    build: Callable[..., tuple[nn.Module, BackboneCfg]]  # (rest, pretrained=..., arch=...) -> (net, cfg)
    description: str
    names: Callable[[], list[str]] | None = None  # the names it knows, for `list_backbones(prefix)`
    check: Callable[[str], None] | None = None  # cheap (no torch) check of <rest>, run with the option checks


_SCHEMES: dict[str, Scheme] = {}


def register_backbone(name: str, description: str) -> Callable[[Builder], Builder]:
    def wrap(fn: Builder) -> Builder:
        if name in _BUILTINS:
            raise ValueError(f"backbone '{name}' is already registered")
        _BUILTINS[name] = (fn, description)
        return fn

    return wrap


def register_scheme(
    prefix: str,
    description: str,
    names: Callable[[], list[str]] | None = None,
    check: Callable[[str], None] | None = None,
) -> Callable:
    """Register the builder of every `<prefix>:<rest>` name. Builder modules call this on import; the registry
    imports none of them (backbones/__init__.py does). `check(rest)` raises ConfigError for a name that cannot
    work, before any data is read."""

    def wrap(fn):
        if prefix in _SCHEMES:
            raise ValueError(f"backbone scheme '{prefix}:' is already registered")
        _SCHEMES[prefix] = Scheme(fn, description, names, check)
        return fn

    return wrap


def schemes() -> dict[str, str]:
    return {f"{prefix}:": s.description for prefix, s in _SCHEMES.items()}


def list_backbones(source: str = "builtin") -> list[str]:
    """Names usable as --backbone. `source`: builtin, or a scheme that can list its names (timm, torchvision)."""
    if source == "builtin":
        return sorted(_BUILTINS)
    listable = [p for p, s in _SCHEMES.items() if s.names]
    if source not in listable:
        raise unknown_choice("backbone source", source, ["builtin", *listable])
    return [f"{source}:{n}" for n in _SCHEMES[source].names()]


def describe_backbones() -> list[tuple[str, str]]:
    return [(n, _BUILTINS[n][1]) for n in sorted(_BUILTINS)]


def _split(name: str) -> tuple[Scheme | None, str]:
    prefix, sep, rest = name.partition(":")
    return (_SCHEMES.get(prefix), rest) if sep else (None, name)


def create_backbone(
    name: str, pretrained: bool = True, arch: str | None = None, features: str = "last"
) -> tuple[nn.Module, BackboneCfg]:
    """The single door: returns the network with its original classifier still attached, and its config.
    features: "last" (the pooled last layer), "stages" or "stages+last" (pooled from several depths, depth.py): the
    cfg then says which stages and the width `remove_classifier`'s net returns."""
    from .depth import check_features, with_depth

    check_features(features)
    scheme, rest = _split(name)
    if scheme is not None:
        net, cfg = scheme.build(rest, pretrained=pretrained, arch=arch)
    elif name in _BUILTINS:
        net, cfg = _BUILTINS[name][0](pretrained)
    else:
        raise _unknown(name)
    return net, with_depth(net, cfg, features)


def _unknown(name: str) -> ConfigError:
    others = "; ".join(f"'{p}<name>' ({d})" for p, d in schemes().items())
    return unknown_choice(
        "backbone", name, sorted(_BUILTINS), hint=f"Other models: {others}. See `transferkit backbones`."
    )


def check_backbone_name(name: str) -> None:
    """Cheap validation (no torch) so that a typo fails before any data is read."""
    scheme, rest = _split(name)
    if scheme is not None:
        if not rest:
            raise ConfigError(f"Backbone '{name}' names no model after the colon, e.g. 'timm:resnet18'.")
        if scheme.check is not None:
            scheme.check(rest)
        return
    if name not in _BUILTINS:
        raise _unknown(name)
