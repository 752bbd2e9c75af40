"""`BackboneCfg`: what a network needs around it (preprocessing, where its classifier sits, its stages). A base
type of the backbone layer: the registry, every builder, the model and the bundle use it; it imports nothing."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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
