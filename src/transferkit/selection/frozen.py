"""Frozen features of one backbone on one dataset: what `rank` and `advise` measure from, one forward pass each.

    data = open_data("data/hymenoptera", cfg)
    ff = frozen_features(data, cfg.model.backbone, cfg)
    ff.train.shape, ff.imagenet_train.shape, ff.seconds_per_image

The split, decoding, preprocessing and cache key are the ones `fit` uses, so the features land in the same on-disk
cache as `linear`'s and `two-phase`'s: measuring first and then training a frozen strategy extracts them once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..backbones.cfg import BackboneCfg
from ..config import RunConfig
from ..data.sources import DataSource, Sample


@dataclass
class Data:
    """A dataset opened and split as `fit` would, with its decoded images kept per decode size."""

    src: DataSource
    splits: dict[str, list[Sample]]  # train / val [/ test]: the same split `fit` makes with the same seed
    median_side: float  # median short side of the training images, in pixels (decides the input size)
    fingerprint: str  # the source's fingerprint, part of the feature cache key
    # (short side, interpolation) -> split -> (images, labels): decoded once per size, shared by candidates
    decoded: dict[tuple[int, str], dict] = field(default_factory=dict)
    skipped: dict[tuple[int, str], dict] = field(default_factory=dict)  # same keys -> split -> [(key, reason)]
    # (backbone, arch, features) -> frozen_backbone's tuple: each network built once while this data is measured
    # (auto: the candidates, the stages variant, the winner's full extraction and the shift check share them)
    nets: dict[tuple, tuple] = field(default_factory=dict, repr=False)

    @property
    def classes(self) -> list[str]:
        return self.src.classes

    def per_class(self) -> float:
        return len(self.splits["train"]) / max(1, len(self.classes))


@dataclass
class FrozenFeatures:
    backbone: str  # registry name
    cfg: BackboneCfg
    image_size: int  # input side the features were computed at: the one `linear` would use
    train: np.ndarray  # (n_train, F) pooled features
    train_labels: np.ndarray  # (n_train,): labels of the readable training images
    val: np.ndarray  # (n_val, F)
    val_labels: np.ndarray
    imagenet_train: np.ndarray | None  # (n_train, Z) softmax of the original ImageNet head; None without one
    seconds_per_image: float  # measured forward time per image at the run's batch size and feature precision (shown)
    gflops: float  # forward work per image at image_size, counted (cost.py): what decisions compare, not the seconds
    params: int  # parameters of the backbone without its ImageNet classifier
    # split -> the source identity of each row of `train` / `val` (the feature store's key): which image a row is
    ids: dict[str, list] = field(default_factory=dict)


def open_data(data, cfg: RunConfig) -> Data:
    """`data`: a path or a DataSource; split with cfg.data.split and cfg.train.seed, exactly as `fit` does."""
    from ..data.sizes import survey_sides
    from ..data.sources import open_source
    from ..data.split import make_splits
    from ..errors import TransferkitError
    from ..tasks import get_task

    task = cfg.train.task
    src = (
        data
        if isinstance(data, DataSource)
        else open_source(data, cfg.data.layout, task=task, **cfg.data.source_options())
    )
    get_task(task).check_data(src)  # data of another kind (class folders for a regression, ...)
    splits = make_splits(src, cfg.data.split, cfg.train.seed)
    if not splits.get("train") or not splits.get("val"):
        raise TransferkitError(
            "The train or validation split is empty: add images, or give --split a larger val fraction."
        )
    return Data(src, splits, survey_sides(src, splits["train"])[0], src.fingerprint())


def _decoded(data: Data, short: int, interpolation: str, cfg: RunConfig) -> dict:
    """Train and val decoded once per size (candidates with the same input size share them), stored as `fit` stores
    them (`--decode-store`), since `fit` under `auto` reuses them."""
    from ..data.decode import decode_splits, store_dir

    key = (short, interpolation)
    if key not in data.decoded:
        data.decoded[key], data.skipped[key] = decode_splits(
            data.src,
            {split: data.splits[split] for split in ("train", "val")},
            short,
            interpolation,
            store=cfg.data.decode_store,
            store_dir=store_dir(cfg.runtime.cache_dir),
        )
    return data.decoded[key]


def frozen_backbone(name: str, cfg: RunConfig, kept: dict | None = None):
    """(net returning pooled features, its cfg, the ImageNet classifier it had, parameters without that classifier).
    kept: a Data's `nets`, where a network built before for the same (name, arch, features) is taken from (building
    efficientnet_lite2 and loading its weights: ~0.5 s, a sixth of what measuring it on 200 images costs)."""
    key = (name, cfg.model.arch, cfg.model.features)
    if kept is not None:
        if key not in kept:
            kept[key] = frozen_backbone(name, cfg)
        return kept[key]
    from ..backbones import create_backbone
    from ..backbones.model import remove_classifier
    from ..engine.runtime import set_threads, tune_malloc
    from ..tasks import get_task

    tune_malloc()  # 2-2.5x faster CPU forward passes (see engine/runtime.py)
    set_threads(cfg.runtime.threads)
    net, bcfg = create_backbone(name, pretrained=True, arch=cfg.model.arch, features=cfg.model.features)
    classifier = net.get_submodule(bcfg.classifier)  # kept for LEEP/NCE before it is removed
    params = sum(p.numel() for p in net.parameters()) - sum(p.numel() for p in classifier.parameters())
    source = bcfg.extra.get("bundle", {}).get("task")  # a bundle's head: class logits only if its task gives them
    if source is not None and not get_task(source).class_logits:
        from torch import nn

        classifier = nn.Identity()  # a value or per-label logits: no class probabilities for LEEP/NCE
    return remove_classifier(net, bcfg).eval(), bcfg, classifier, params


def frozen_features(
    data: Data, backbone: str, cfg: RunConfig, reporter=None, built=None, stages=None, timing: bool = True
) -> FrozenFeatures:
    """Pooled features of train and val (from the cache when `fit` or an earlier call computed them). `built`:
    `frozen_backbone(backbone, cfg)` already made (a caller measuring several input sizes loads the weights once).
    stages: `frozen_backbone` of the same backbone with features from every depth, whose features at this input
    size are then stored from the same forward pass (depth.with_last): asking for them next extracts nothing.
    timing: False, no batch is timed when every row comes from the store (seconds_per_image is then NaN)."""
    import dataclasses

    import torch

    from ..backbones.cfg import check_input_size
    from ..data.dataset import DecodedImages
    from ..data.transforms import choose_image_size, eval_transform, resize_size
    from ..engine import features as feats
    from ..engine.features import store_config
    from ..engine.runtime import feature_precision, memory_format, resolve_device
    from ..errors import TransferkitError
    from ..progress import QuietReporter
    from .cost import forward_gflops

    reporter = reporter or QuietReporter()
    cfg = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, backbone=backbone)
    )  # the key names the backbone
    net, bcfg, classifier, params = built or frozen_backbone(backbone, cfg)
    check_input_size(cfg.data.image_size, bcfg, backbone)
    size = cfg.data.image_size or choose_image_size(data.median_side, bcfg.input_size, bcfg.min_input)
    decoded = _decoded(data, resize_size(size, bcfg.crop_pct), bcfg.interpolation, cfg)
    if not decoded["train"][0] or not decoded["val"][0]:
        raise TransferkitError("No readable images in the train or val split.")
    skipped = data.skipped[(resize_size(size, bcfg.crop_pct), bcfg.interpolation)]
    ids = {  # each decoded image's identity: the feature store's key, shared with `fit` and `embed`
        split: [data.src.identity(x.key) for x in data.splits[split] if x.key not in {k for k, _ in skipped[split]}]
        for split in ("train", "val")
    }
    device = torch.device(resolve_device(cfg.runtime.device))
    precision = feature_precision(cfg.runtime, device.type)
    fmt = memory_format(cfg.runtime)
    ev = eval_transform(size, bcfg.crop_pct, bcfg.mean, bcfg.std, bcfg.interpolation)
    net.to(device, memory_format=fmt)
    bs = cfg.data.batch_size
    run, side = net, None
    if stages is not None:  # one pass, two feature sets: the last layer's here, the stages' to the store
        from ..backbones.depth import with_last

        stages[0].to(device, memory_format=fmt)
        run, side = with_last(stages[0], stages[1]), store_config(cfg, stages[1], size)

    out, timed = {}, []
    for split in ("train", "val"):
        out[split], per_image = feats.cached_features(
            run,
            DecodedImages(*decoded[split], ev),
            ids=ids[split],
            config=store_config(cfg, bcfg, size),
            cache_dir=cfg.runtime.cache_dir,
            batch_size=bs,
            device=device,
            precision=precision,
            memory_format=fmt,
            reporter=reporter,
            label=f"{backbone} at {size} px, {split}",
            side=side,
        )
        if per_image is not None:
            timed.append(per_image)
    if not timed and timing:  # both splits cached by `fit`, which records no timing: time one batch (after a warm-up)
        timed.append(_time_batch(net, DecodedImages(*decoded["val"], ev), bs, device, precision, fmt))

    return FrozenFeatures(
        backbone=backbone,
        cfg=bcfg,
        image_size=size,
        train=out["train"].numpy(),
        train_labels=_targets(data, decoded["train"][1]),
        val=out["val"].numpy(),
        val_labels=_targets(data, decoded["val"][1]),
        imagenet_train=_imagenet_probs(classifier, out["train"]),
        seconds_per_image=min(timed) if timed else float("nan"),
        gflops=forward_gflops(net, size),
        params=params,
        ids=ids,
    )


def _targets(data: Data, labels) -> np.ndarray:
    """Labels as arrays: class indices (N,), regression targets (N,) float, or multi-label 0/1 rows (N, K)."""
    from ..tasks import get_task

    return np.asarray(get_task(data.src.task).targets(labels, data.classes))


def domain_shift(data: Data, backbone: str, cfg: RunConfig, n: int = 32) -> tuple[float | None, BackboneCfg, int]:
    """(`bn_shift` of `n` training images, the backbone's cfg, the input size). Uses the decoded training images when
    `frozen_features` has made them, else decodes only those `n`. Measured at most at the backbone's own input size,
    where the chart's line was drawn (a photo's FixRes input, choose.FIXRES, would cost 1.5x as much)."""
    import torch

    from ..backbones.cfg import check_input_size
    from ..data.dataset import DecodedImages
    from ..data.decode import decode_samples
    from ..data.transforms import choose_image_size, eval_transform, resize_size
    from ..engine.runtime import memory_format, resolve_device

    net, bcfg, _, _ = frozen_backbone(backbone, cfg, data.nets)
    check_input_size(cfg.data.image_size, bcfg, backbone)
    size = cfg.data.image_size or choose_image_size(data.median_side, bcfg.input_size, bcfg.min_input)
    at = min(size, bcfg.input_size)
    short = resize_size(at, bcfg.crop_pct)
    pick = torch.Generator().manual_seed(cfg.train.seed)
    if (short, bcfg.interpolation) in data.decoded:
        images, labels = data.decoded[(short, bcfg.interpolation)]["train"]
        order = torch.randperm(len(images), generator=pick)[:n].tolist()
        images, labels = [images[i] for i in order], [labels[i] for i in order]
    else:
        order = torch.randperm(len(data.splits["train"]), generator=pick)[:n].tolist()
        images, labels, _ = decode_samples(
            data.src, [data.splits["train"][i] for i in order], short, bcfg.interpolation
        )
    device = torch.device(resolve_device(cfg.runtime.device))
    fmt = memory_format(cfg.runtime)
    net.to(device, memory_format=fmt)
    dataset = DecodedImages(images, labels, eval_transform(at, bcfg.crop_pct, bcfg.mean, bcfg.std, bcfg.interpolation))
    return bn_shift(net, dataset, cfg.data.batch_size, device, fmt), bcfg, size


def bn_shift(net, dataset, batch_size: int, device, fmt) -> float | None:
    """How far this data is from the pretraining data, as the network itself sees it: the mean over BatchNorm layers
    (and their live channels) of KL(data || ImageNet) between each channel's input statistics on `dataset` and the
    running mean/variance the layer stored during ImageNet training (the statistics AdaBN swaps, Li et al. 2016).
    0 for ImageNet itself; with efficientnet_lite0 ants/bees photos measure 0.07, 64 px cat photos 0.19,
    8 px digit scans 0.63, EuroSAT's tiles 0.25 (32, 64 and 128 images agree to 0.02 on those four sets, two seeds
    each; the chart's line is at 0.3). 32 images: about half a second at 224 px on a 2-core CPU. None: no BatchNorm
    layers."""
    import torch
    from torch import nn

    layers = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d) and m.running_var is not None]
    if not layers:
        return None
    sums = {id(m): [0.0, 0.0, 0] for m in layers}  # per layer: sum x and sum x^2 per channel, positions counted

    def hook(module, inputs, _):
        x = inputs[0].detach()
        if x.shape[-1] >= 8:  # neighbouring positions are near copies: every 4th gives the same statistics 4x faster
            x = x[:, :, ::2, ::2]
        x = x.float()
        s = sums[id(module)]
        s[0] = s[0] + x.sum((0, 2, 3)).double()
        s[1] = s[1] + (x * x).sum((0, 2, 3)).double()
        s[2] += x.numel() // x.shape[1]

    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        with torch.no_grad():
            for i in range(0, len(dataset), batch_size):  # full precision: statistics, not throughput
                x = torch.stack([dataset[j][0] for j in range(i, min(i + batch_size, len(dataset)))])
                net(x.to(device).contiguous(memory_format=fmt))
    finally:
        for h in handles:
            h.remove()
    kls = []
    for m in layers:
        s1, s2, count = sums[id(m)]
        mean = s1 / count
        var = (s2 / count - mean**2).clamp_min(0)
        ref_mean, ref_var = m.running_mean.double().to(mean.device), m.running_var.double().to(mean.device)
        live = (ref_var > 1e-4) & (var > 1e-6)  # channels dead on either side have no distribution to compare
        kl = 0.5 * (torch.log(ref_var / var) + (var + (mean - ref_mean) ** 2) / ref_var - 1)
        if live.any():
            kls.append(kl[live].mean().item())
    return float(sum(kls) / len(kls)) if kls else None


def _imagenet_probs(classifier, features) -> np.ndarray | None:
    """Softmax of the original classifier on the pooled features (its input): no second forward pass."""
    import torch

    if not any(True for _ in classifier.parameters()):
        return None  # an Identity: the weights came without a classifier
    try:
        with torch.no_grad():
            logits = classifier.float().cpu().eval()(features.float())
    except RuntimeError:  # a classifier that does not take the pooled features (exotic heads): no LEEP/NCE
        return None
    return torch.softmax(logits, 1).numpy() if logits.ndim == 2 and logits.shape[1] >= 2 else None


def _time_batch(net, dataset, batch_size: int, device, precision: str, fmt) -> float:
    import torch

    from ..engine.runtime import autocast_for

    n = min(batch_size, len(dataset))
    x = torch.stack([dataset[i][0] for i in range(n)]).to(device).contiguous(memory_format=fmt)
    with torch.no_grad(), autocast_for(precision, device.type):
        net(x[:2])  # warm-up: first-call allocations and kernel selection are not the model's speed
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        net(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return (time.perf_counter() - start) / n
