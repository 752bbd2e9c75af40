"""New heads for the pooled features: `linear`, `mlp:<hidden>` (Linear -> ReLU -> Dropout -> Linear) or `prototypes`
(nearest class mean by cosine, with a fitted temperature: for a handful of images per class)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

HEADS = ("linear", "mlp:<hidden>", "prototypes")
MLP_DEFAULT_DROPOUT = 0.4  # the classic transfer-learning MLP head (e.g. 460 hidden units, dropout 0.4)


def parse_head(spec: str) -> tuple[str, int | None]:
    """'linear' -> ('linear', None); 'mlp:460' -> ('mlp', 460). Raises ConfigError naming the option."""
    kind, _, arg = spec.partition(":")
    if kind in ("linear", "prototypes") and not arg:
        return kind, None
    if kind == "mlp":
        try:
            hidden = int(arg)
        except ValueError:
            hidden = 0
        if hidden > 0:
            return "mlp", hidden
        raise ConfigError(f"--head '{spec}': the mlp head needs a positive hidden width, e.g. --head mlp:460.")
    raise ConfigError(f"--head '{spec}' is not a head. Valid choices: {', '.join(HEADS)}.")


def build_head(spec: str, in_features: int, num_outputs: int, dropout: float = 0.0) -> nn.Module:
    from torch import nn  # here, so that option checks (parse_head) never import torch

    kind, hidden = parse_head(spec)
    if kind == "prototypes":
        from .modules import Prototypes

        return Prototypes(in_features, num_outputs)
    if kind == "linear":
        layers: list = [nn.Dropout(dropout)] if dropout > 0 else []
        return nn.Sequential(*layers, nn.Linear(in_features, num_outputs))
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout or MLP_DEFAULT_DROPOUT),
        nn.Linear(hidden, num_outputs),
    )
