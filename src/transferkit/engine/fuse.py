"""A frozen backbone with each BatchNorm folded into the convolution before it: the same features, 1.2x faster.

    fast = folded(net, example)   # a copy; `net` itself is untouched (bn_shift hooks its BatchNorms, fit trains it)

In eval mode a BatchNorm is a fixed per-channel affine map, y = (x - mean) / sqrt(var + eps) * gamma + beta, so the
convolution that feeds it can absorb it: W' = W * gamma / sqrt(var + eps), b' = (b - mean) * gamma / sqrt(var + eps)
+ beta (torch.nn.utils.fusion.fuse_conv_bn_eval does the arithmetic). On efficientnet_lite0 at 224 px (49 pairs,
batch 32, 2 CPU cores) a forward pass takes 7.9 instead of 9.7 ms an image; the features differ by ~1e-5 of their
size (float rounding). Only frozen feature extraction uses it: a net being trained keeps its BatchNorms.

Which pairs: one forward pass of `example` with hooks notes each BatchNorm whose input is exactly a convolution's
output. A BatchNorm is folded only where what it does besides normalising is known (plain BatchNorm2d: nothing;
timm's BatchNormAct2d: its dropout and activation, which stay). A convolution whose output something else also reads
(a pre-activation residual) would be wrong once folded, so the folded copy's output on `example` must match the
original's, else the original is used as it is.
"""

from __future__ import annotations

import copy
import itertools
import weakref

import torch
from torch import nn

# net -> (its tensors' addresses and versions when folded, the folded copy or None for "the net itself"): a net
# extracted split after split (train, val, test; auto's candidates) is copied and folded once (efficientnet_lite2:
# ~0.1 s each time), and again only once its weights changed (an optimizer step bumps a tensor's version; a move to
# another device gives it another address)
_FOLDED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# Folding costs a copy and a checked forward pass (efficientnet_lite0 ~0.1 s, lite2 ~0.3 s on 2 CPU cores) and saves
# ~18% of what follows: at lite0's ~0.19 us a pixel (9.7 ms at 224 px) it pays back from ~3M pixels (lite2: ~4M).
# Passes over fewer input pixels than this (`auto`'s candidates on 200 tiles of 64 px: 0.8M) run the net as it is.
FOLD_MIN_PIXELS = 4_000_000


def folded(net: nn.Module, example: torch.Tensor, pixels: float = float("inf")) -> nn.Module:
    """An eval-mode copy of `net` with its conv -> BatchNorm pairs folded, or `net` when there are none or the copy's
    output on `example` (one or a few inputs, on the net's device) differs from the original's. The same copy for the
    same weights (`_FOLDED`). pixels: the input pixels the caller will pass through it; under FOLD_MIN_PIXELS the net
    itself, unless a copy for these weights exists already."""
    state = tuple((t.data_ptr(), t._version) for t in itertools.chain(net.parameters(), net.buffers()))
    kept = _FOLDED.get(net)
    if kept is not None and kept[0] == state:
        return kept[1] if kept[1] is not None else net
    if pixels < FOLD_MIN_PIXELS:
        return net
    fast = _fold(net, example)
    _FOLDED[net] = (state, fast if fast is not net else None)  # never the key itself: it would never be collected
    return fast


def _fold(net: nn.Module, example: torch.Tensor) -> nn.Module:
    pairs, reference = _pairs(net, example)
    if not pairs:
        return net
    try:
        fast = copy.deepcopy(net).eval()
    except (RuntimeError, TypeError):  # a module that cannot be copied (a lock, a handle): run it as it is
        return net
    for conv_name, bn_name in pairs:
        conv, bn = fast.get_submodule(conv_name), fast.get_submodule(bn_name)
        _replace(fast, conv_name, torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn))
        _replace(fast, bn_name, _after_norm(bn))
    with torch.no_grad():
        out = fast(example)
    return fast if _same(out, reference) else net


def _same(out, reference) -> bool:
    """Whether two outputs (tensors, or tuples of them) agree to float rounding."""
    if isinstance(reference, tuple):
        return isinstance(out, tuple) and len(out) == len(reference) and all(map(_same, out, reference))
    scale = float(reference.abs().max().clamp_min(1e-6))
    return out.shape == reference.shape and torch.allclose(out, reference, rtol=1e-3, atol=1e-4 * scale)


def _after_norm(bn: nn.Module) -> nn.Module | None:
    """What a BatchNorm of this kind does after normalising (its replacement once folded); None: not known."""
    if type(bn) is nn.BatchNorm2d:
        return nn.Identity()
    if type(bn).__name__ == "BatchNormAct2d" and hasattr(bn, "act"):  # timm's norm + dropout + activation
        return nn.Sequential(getattr(bn, "drop", nn.Identity()), bn.act)
    return None


def _pairs(net: nn.Module, example: torch.Tensor) -> tuple[list[tuple[str, str]], torch.Tensor]:
    """([(conv name, BatchNorm name)] foldable in eval mode, net(example)): pairs found by one forward pass."""
    made: dict[int, tuple] = {}  # id of a convolution's output -> (the convolution's name, the output, kept alive so
    # that no later tensor takes its id)
    found: list[tuple[str, str]] = []
    handles = []
    for name, m in net.named_modules():
        if isinstance(m, nn.Conv2d):  # subclasses too (timm's Conv2dSame pads, then convolves its weight)
            handles.append(
                m.register_forward_hook(lambda _m, _i, out, name=name: made.__setitem__(id(out), (name, out)))
            )
        elif isinstance(m, nn.BatchNorm2d) and m.track_running_stats and _after_norm(m) is not None:
            handles.append(
                m.register_forward_hook(
                    lambda _m, inputs, _o, name=name: found.append((made.get(id(inputs[0]), (None,))[0], name))
                )
            )
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            reference = net(example)
    finally:
        net.train(was_training)
        for h in handles:
            h.remove()
    convs = [c for c, _ in found]
    # each conv feeds one BatchNorm and each BatchNorm runs once: a module called twice in a pass is left alone
    pairs = [(c, b) for c, b in found if c is not None and convs.count(c) == 1]
    bns = [b for _, b in pairs]
    return [(c, b) for c, b in pairs if bns.count(b) == 1 and sum(1 for _, x in found if x == b) == 1], reference


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, attr, module)
