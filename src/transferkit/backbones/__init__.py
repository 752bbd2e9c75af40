"""Backbones: one registry, one factory (`create_backbone`), and the model that puts a new head on any of them."""

from .registry import (
    DEFAULT_BACKBONE,
    BackboneCfg,
    check_backbone_name,
    create_backbone,
    describe_backbones,
    list_backbones,
    register_backbone,
)

__all__ = [
    "DEFAULT_BACKBONE",
    "BackboneCfg",
    "check_backbone_name",
    "create_backbone",
    "describe_backbones",
    "list_backbones",
    "register_backbone",
]
