"""Features from every depth: the pooled outputs of several stages of a backbone, from its one forward pass.

    net, cfg = create_backbone("efficientnet_lite0", features="stages")   # cfg.num_features: 744
    net = remove_classifier(net, cfg)                                      # net(x): (N, 744), one pass

The last layer of an ImageNet network describes ImageNet objects; satellite tiles, cells or digits are described
better by its earlier stages (Head2Toe, Evci et al., ICML 2022). On the shared EuroSAT tiles a logistic head on
efficientnet_lite0's blocks 2-6 (40+80+112+192+320 = 744 features) scores ~94% where the last layer's 1,280 score ~90%.

How: a forward hook on each kept stage pools its output (the mean over positions; over tokens for a ViT's (N, L, C))
into a per-thread slot, and a `StagePool` module put where the classifier was concatenates the slots when the pooled
last-layer features reach it. Nothing is renamed (`net.blocks.3...` stays; freezing, layer decay and bundles go by
those names), the net stays one module that returns (N, F), and the ONNX export traces the hooks, so the pooling is
part of the exported graph. Slots are per thread: a server's threads or DataParallel's replicas do not mix.

Which stages: those whose output is at most 1/8 of the input side (stride >= 8; token outputs always), measured once
on a blank image when the backbone is built. The earliest stages (edges and colours at 1/2 and 1/4) are few
features and add little; lite0 keeps blocks 2-6, a ResNet layer2-4. Each stage's pooled vector is L2-normalised and
scaled by sqrt(its width), so every stage weighs the same whatever its width and every feature is ~1 in size (a
stateless standardisation: it travels with the model, no statistics to save). `stages+last` adds the last layer's
pooled features, normalised the same way. On top of that the head standardises each feature on the training rows
(core/heads.py: HeadSettings.standardise, folded into its Linear) and the input follows 3x the data's side
(`input_side`): small images are upsampled so the deep stages keep positions to pool.
"""

from __future__ import annotations

import math
import threading
from dataclasses import replace
from functools import cache, partial
from typing import TYPE_CHECKING

from ..errors import unknown_choice
from .cfg import BackboneCfg

if TYPE_CHECKING:
    import torch
    from torch import nn

FEATURES = ("last", "stages", "stages+last")
MIN_STRIDE = 8  # stages at 1/8 of the input side and deeper; lite0: blocks 2-6
# Multi-depth features follow the data's side times this: a 64 px tile at 64 px leaves lite0's block 2 an 8x8 map
# and block 6 2x2, too coarse for its texture. EuroSAT's 64 px tiles, stages (standardised head), 5 splits:
# 64 px 91.9, 128 px 94.3, 192 px 96.0; cat/non-cat (64 px photos) 95.2 -> 99.6 at 128 px; the digits (8 px) stay
# at 64 px, where they score best (98.9; 98.1 at 128). Photos of 75 px and more reach the backbone's own size.
STAGES_UPSCALE = 3
_SLOTS = threading.local()  # per thread: stage index -> its pooled output of the forward pass in progress


def check_features(features: str) -> None:
    if features not in FEATURES:
        raise unknown_choice("--features", features, FEATURES)


def _pool(out) -> torch.Tensor:
    """(N, C, H, W) -> (N, C) mean over positions; (N, L, C) tokens -> (N, C) mean over tokens; (N, C) as it is."""
    if isinstance(out, (tuple, list)):  # a block returning (features, extras): the features
        out = out[0]
    if out.ndim == 4:
        return out.mean((2, 3))
    if out.ndim == 3:
        return out.mean(1)
    return out


def _capture(i: int, module, inputs, out) -> None:
    slots = getattr(_SLOTS, "slots", None)
    if slots is None:
        slots = _SLOTS.slots = {}
    slots[i] = _pool(out)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """L2 per sample, times sqrt(width): each part weighs the same, each feature is ~1 in size."""
    import torch.nn.functional as F

    return F.normalize(x.float(), dim=1) * math.sqrt(x.shape[1])


@cache  # one class, made at the first use: importing this module imports no torch
def _stage_pool_class():
    from torch import nn

    class StagePool(nn.Module):
        """Sits where the classifier was: takes the pooled last-layer features, returns the kept stages' pooled
        outputs (captured by the hooks during this forward pass), normalised and concatenated [+ the last layer]."""

        def __init__(self, count: int, last: bool):
            super().__init__()
            self.count, self.last = count, last

        def forward(self, x):
            import torch

            slots = getattr(_SLOTS, "slots", {})
            _SLOTS.slots = {}  # consumed: the next forward pass fills them again
            missing = [i for i in range(self.count) if i not in slots]
            if missing:
                raise RuntimeError(f"multi-depth features: stages {missing} did not run in this forward pass")
            parts = [_normalise(slots[i]) for i in range(self.count)]
            if self.last:
                parts.append(_normalise(x.flatten(1)))
            return torch.cat(parts, 1).to(x.dtype)

        def extra_repr(self) -> str:
            return f"stages={self.count}, last={self.last}"

    return StagePool


def depth_of(cfg: BackboneCfg) -> dict | None:
    """The multi-depth settings a cfg carries (`with_depth`), None for the last layer's features alone."""
    return cfg.extra.get("depth")


def input_side(median_side: float, cfg: BackboneCfg) -> float:
    """The side the input size follows (data/sizes.choose_image_size): the data's own for the last layer, x
    STAGES_UPSCALE for multi-depth features (api.py applies it to `linear` runs: the only ones measured)."""
    return median_side * (STAGES_UPSCALE if depth_of(cfg) else 1)


def standardises(features: str) -> bool:
    """Whether a head on `features` standardises each feature first (mean 0, std 1 on its training rows): features
    from every depth do, their stages' blocks being of very different scales (with `linear`: digits +0.7, EuroSAT
    +0.3-0.9, BENCHMARKS.md "Features from every depth"); the last layer's head is fitted as before. One rule for
    `train`'s head, `auto`'s probe, `suggest` and `label`."""
    return features != "last"


def frozen_input_size(median_side: float, cfg: BackboneCfg) -> int:
    """The input size of a head on frozen features when --image-size is not given: what `input_side` gives, as
    data/sizes.choose_image_size rounds and bounds it (`linear` runs, compare's linear rows, auto's stages variant,
    suggest and label all read their features at this size)."""
    from ..data.sizes import choose_image_size

    return choose_image_size(input_side(median_side, cfg), cfg.input_size, cfg.min_input)


def with_depth(net: nn.Module, cfg: BackboneCfg, features: str) -> BackboneCfg:
    """`cfg` for `features` (FEATURES): the stages kept and the width of what the net will return. 'last': `cfg`.
    `net` is the backbone as built (its classifier still on); one forward pass of a random image measures each
    stage's stride and width."""
    import torch

    check_features(features)
    if features == "last":
        return cfg
    seen: dict[str, tuple] = {}

    def note(name, module, inputs, out) -> None:  # None: a hook that returns something replaces the output
        seen.setdefault(name, _shape(out))

    handles = [net.get_submodule(name).register_forward_hook(partial(note, name)) for name in cfg.stages]
    was_training = net.training
    net.eval()
    try:
        param = next(net.parameters(), None)
        with torch.no_grad():
            # zeros, not random: shapes are all it needs, and the caller's seeded RNG stays where it was
            side = cfg.input_size  # the weights' own size: fixed-size nets (ViTs) take no other
            net(torch.zeros(1, 3, side, side, device=param.device if param is not None else "cpu"))
    finally:
        net.train(was_training)
        for h in handles:
            h.remove()
    kept = [
        (name, shape[1] if len(shape) == 4 else shape[-1])
        for name, shape in ((n, seen[n]) for n in cfg.stages if n in seen)
        if len(shape) == 3 or (len(shape) == 4 and side / max(1, shape[-1]) >= MIN_STRIDE)
    ]
    if not kept:  # a net whose stages all stay shallow (or none ran): the deepest one that ran
        name = next(n for n in reversed(cfg.stages) if n in seen)
        kept = [(name, seen[name][1])]
    last = features == "stages+last"
    width = sum(w for _, w in kept) + (cfg.num_features if last else 0)
    depth = {"features": features, "stages": [n for n, _ in kept], "widths": [w for _, w in kept], "last": last}
    return replace(cfg, num_features=width, extra={**cfg.extra, "depth": depth, "last_features": cfg.num_features})


def _shape(out) -> tuple:
    if isinstance(out, (tuple, list)):
        out = out[0]
    return tuple(out.shape)


def attach(net: nn.Module, cfg: BackboneCfg) -> nn.Module:
    """Hooks on the kept stages and a StagePool where the classifier was (removed already): `net(x)` then returns
    the multi-depth features. Called by `remove_classifier` for a cfg that carries them."""
    from .modules import set_submodule

    depth = depth_of(cfg)
    detach(net)  # never twice: a net that had them (a bundle's body) gets this cfg's alone
    for i, name in enumerate(depth["stages"]):
        net.get_submodule(name).register_forward_hook(partial(_capture, i))
    set_submodule(net, cfg.classifier, _stage_pool_class()(len(depth["stages"]), depth["last"]))
    return net


def detach(net: nn.Module) -> None:
    """Remove `attach`'s hooks (the StagePool is replaced by whoever sets the classifier next)."""
    for m in net.modules():
        for key, hook in list(m._forward_hooks.items()):
            if isinstance(hook, partial) and hook.func is _capture:
                del m._forward_hooks[key]


def without_depth(cfg: BackboneCfg) -> BackboneCfg:
    """The last-layer cfg of a multi-depth one (a bundle's body used as a new backbone)."""
    if not depth_of(cfg):
        return cfg
    extra = {k: v for k, v in cfg.extra.items() if k not in ("depth", "last_features")}
    return replace(cfg, num_features=cfg.extra["last_features"], extra=extra)


def with_last(net: nn.Module, cfg: BackboneCfg) -> nn.Module:
    """A multi-depth net (`attach`ed) that returns (the last layer's pooled features, its own) from its one forward
    pass: the StagePool's input is what the same backbone with `--features last` returns. `auto` measures a
    backbone's last layer and its stages at the same input size (photos at the backbone's own size, the digits) from
    one pass instead of two (engine/features.cached_features stores the second set under its own key)."""
    return _with_last_class()(net, cfg.classifier).train(net.training)  # in the mode of `net` (eval), which whoever
    # sets the wrapper's mode back sets on `net` too


@cache
def _with_last_class():
    from torch import nn

    class WithLast(nn.Module):
        def __init__(self, net: nn.Module, pool: str):
            super().__init__()
            self.net, self.pool = net, pool

        def forward(self, x):
            seen = []
            hook = self.net.get_submodule(self.pool).register_forward_pre_hook(
                lambda _m, inputs: seen.append(inputs[0].flatten(1))
            )
            try:
                out = self.net(x)
            finally:
                hook.remove()
            return seen[0], out

    return WithLast
