"""Transfer strategies: small named objects in one table (`TABLE`); a new strategy is one more row.

    s = parse_strategy("freeze:2")
    for phase in s.phases(epochs=10, head_epochs=3):
        apply_phase(model, phase)          # requires_grad per parameter
        set_train_mode(model)              # frozen BatchNorm layers stay in eval mode
        groups = param_groups(model, lr=1e-3, backbone_lr_mult=0.1)

| name       | what trains                                  | seed 004's chart                 |
|------------|----------------------------------------------|----------------------------------|
| linear     | the head only, on cached backbone features   | small data, similar to ImageNet  |
| freeze:K   | everything after the stem and first K stages | small data, different domain     |
| finetune   | everything; backbone at a lower LR           | large data, similar domain       |
| scratch    | everything, random initialisation            | large data, different domain     |
| two-phase  | head first (cached), then everything         | fastai's fine_tune               |
| auto       | one of the above, measured by selection.advise |                                |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ConfigError, unknown_choice

if TYPE_CHECKING:
    from .backbones.model import TransferModel

ALL = "all"  # a phase's `frozen` value meaning the whole pretrained network is frozen


@dataclass(frozen=True)
class Phase:
    name: str  # shown in logs and saved in checkpoints ("head", "finetune", ...)
    epochs: int
    frozen: int | str | None  # None: nothing frozen; K: stem + first K stages; ALL: the whole backbone
    cached: bool = False  # the backbone is frozen and deterministic: train the head on features computed once
    backbone_lr_mult: float | None = None  # None: the config's value


@dataclass(frozen=True)
class Strategy:
    name: str  # a key of TABLE
    pretrained: bool = True
    frozen_stages: int | None = None  # freeze:K only
    backbone_lr_mult: float | None = (
        None  # set by `auto` (finetune, freeze:K) for data far from ImageNet: pretrained layers must move more
    )

    def phases(self, epochs: int, head_epochs: int = 3) -> list[Phase]:
        make = TABLE[self.name].phases
        if make is None:
            raise ConfigError(f"strategy '{self.name}' must be resolved before training")
        return make(self, epochs, head_epochs)

    @property
    def label(self) -> str:
        return f"{self.name}:{self.frozen_stages}" if TABLE[self.name].takes_k else self.name


@dataclass(frozen=True)
class Kind:
    """One row of the table: how it is written, what trains, and its phases (None: resolved before training)."""

    spelling: str
    trains: str
    phases: Callable[[Strategy, int, int], list[Phase]] | None
    pretrained: bool = True
    takes_k: bool = False  # written name:K (K a whole number)


def _two_phase(s: Strategy, epochs: int, head_epochs: int) -> list[Phase]:
    head = max(1, min(head_epochs, epochs - 1))
    return [Phase("head", head, ALL, cached=True), Phase("finetune", max(1, epochs - head), None)]


TABLE: dict[str, Kind] = {
    "linear": Kind(
        "linear", "the head only, on cached backbone features", lambda s, e, h: [Phase("head", e, ALL, cached=True)]
    ),
    "freeze": Kind(
        "freeze:K",
        "everything after the stem and the first K stages",
        lambda s, e, h: [Phase(f"freeze:{s.frozen_stages}", e, s.frozen_stages, backbone_lr_mult=s.backbone_lr_mult)],
        takes_k=True,
    ),
    "finetune": Kind(
        "finetune",
        "everything; the backbone at a lower learning rate than the head",
        lambda s, e, h: [Phase("finetune", e, None, backbone_lr_mult=s.backbone_lr_mult)],
    ),
    # nothing is pretrained, so no reason to slow any layer down
    "scratch": Kind(
        "scratch",
        "the same architecture from random initialisation",
        lambda s, e, h: [Phase("scratch", e, None, backbone_lr_mult=1.0)],
        pretrained=False,
    ),
    "two-phase": Kind("two-phase", "the head first (cached features), then everything", _two_phase),
    "auto": Kind("auto", "one of the above, measured on the data (selection/advise.py)", None),
}
STRATEGIES = tuple(k.spelling for k in TABLE.values())


def parse_strategy(spec: str) -> Strategy:
    """'freeze:2' -> Strategy('freeze', frozen_stages=2). Errors name the option and list the valid ones."""
    spec = spec.strip().lower().replace("_", "-")
    name, sep, arg = spec.partition(":")
    kind = TABLE.get(name)
    if kind is None or bool(sep) != kind.takes_k:
        raise unknown_choice("--strategy", spec, STRATEGIES)
    k = None
    if kind.takes_k:
        k = int(arg) if arg.isdigit() else -1
        if k < 0:
            raise ConfigError(f"--strategy '{spec}': K must be a whole number of stages >= 0, e.g. {name}:2.")
    return Strategy(name, pretrained=kind.pretrained, frozen_stages=k)


def is_frozen(stage: int, frozen: int | str | None, n_stages: int) -> bool:
    if frozen is None:
        return False
    if frozen == ALL:
        return True
    return stage < int(frozen)  # the stem is stage -1, so freeze:0 freezes the stem alone


def apply_phase(model: TransferModel, phase: Phase) -> None:
    n = len(model.cfg.stages)
    if isinstance(phase.frozen, int) and phase.frozen > n:
        raise ConfigError(
            f"--strategy freeze:{phase.frozen}: backbone '{model.cfg.name}' has only {n} stages; use 0..{n}."
        )
    for name, p in model.named_parameters():
        if name.startswith("head."):
            p.requires_grad_(True)
        else:
            p.requires_grad_(not is_frozen(model.stage_of(name), phase.frozen, n))


def set_train_mode(model: TransferModel) -> None:
    """model.train(), except BatchNorm layers whose parameters are frozen: their running statistics stay put."""
    from torch.nn.modules.batchnorm import _BatchNorm

    model.train()
    for m in model.net.modules():
        if isinstance(m, _BatchNorm) and not any(p.requires_grad for p in m.parameters(recurse=False)):
            m.eval()


def param_groups(model: TransferModel, lr: float, backbone_lr_mult: float, weight_decay: float) -> list[dict]:
    """Head at `lr`, trainable backbone at `lr * backbone_lr_mult`; no weight decay on biases and norm weights."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        key = (name.startswith("head."), p.ndim > 1)
        groups.setdefault(key, []).append(p)
    out = []
    for (is_head, decays), params in groups.items():
        out.append(
            {
                "params": params,
                "lr": lr if is_head else lr * backbone_lr_mult,
                "weight_decay": weight_decay if decays else 0.0,
                "name": ("head" if is_head else "backbone") + ("" if decays else "_no_decay"),
            }
        )
    return out
