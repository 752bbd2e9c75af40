"""Backbones: one registry, one factory (`create_backbone`), and the model that puts a new head on any of them."""

# Builders register themselves on import (none imports torch until it builds); the registry imports none of them.
from ..config import DEFAULT_BACKBONE
from . import bundles, files, lite, timm_, tv  # noqa: F401
from .cfg import BackboneCfg
from .registry import (
    check_backbone_name,
    create_backbone,
    describe_backbones,
    list_backbones,
    register_backbone,
    register_scheme,
    schemes,
)

__all__ = [
    "DEFAULT_BACKBONE",
    "BackboneCfg",
    "check_backbone_name",
    "create_backbone",
    "describe_backbones",
    "list_backbones",
    "register_backbone",
    "register_scheme",
    "schemes",
]
