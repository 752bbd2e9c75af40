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
    # the smallest input side the network takes: a fixed-size one (ViT) its input_size, inception_v3 75; 0: any.
    # The input size that follows the data is raised to it (a ViT at EuroSAT's 64 px failed inside training)
    min_input: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_input_size(size: int | None, cfg: BackboneCfg, name: str) -> None:
    """Refuse an --image-size the network cannot take, before any work: a fixed-size network (a ViT, min_input ==
    input_size) takes its own size alone, others at least cfg.min_input (None or 0: any)."""
    from ..errors import ConfigError

    fixed = cfg.min_input == cfg.input_size
    if not size or not cfg.min_input or (size == cfg.input_size if fixed else size >= cfg.min_input):
        return
    takes = f"only {cfg.input_size} px inputs" if fixed else f"inputs of {cfg.min_input} px or more"
    raise ConfigError(f"--backbone {name} takes {takes}: give --image-size {cfg.min_input}, or leave it out.")
