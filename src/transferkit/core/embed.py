"""`embed`: the features of any set of images, through the feature store: each image is run through the backbone
once, ever, for a given backbone, input size and precision.

    emb = embed("photos/")                                   # a folder, labelled or not; a list file; an ImageSet
    emb.features.shape, emb.keys[:2]                         # (N, 1280) float32, the images' keys in that order
    embed("photos/").computed                                # 0: the second call reads every row from the store

Only images the store lacks are decoded: a set whose features are all stored costs reading the matrix. Images that
cannot be read are left out and listed in `skipped`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..config import DEFAULT_BACKBONE


@dataclass
class Embedding:
    features: np.ndarray  # (N, F) float32, one row per readable image, in the order of `keys`
    keys: list[str]  # the images' keys (absolute paths, or array keys)
    ids: list[str]  # their identities in the store (data/imageset.py)
    backbone: str
    image_size: int
    precision: str
    computed: int = 0  # images run through the backbone by this call (the rest came from the store)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (key, why) of images that could not be read


def as_image_set(images):
    """A path, a DataSource or an ImageSet -> an ImageSet."""
    from ..data.imageset import ImageSet
    from ..data.sources import DataSource, open_images

    if isinstance(images, ImageSet):
        return images
    if isinstance(images, DataSource):
        return images.images()
    if isinstance(images, (str, os.PathLike)):
        return open_images(images)
    raise TypeError(f"embed() takes a path, a DataSource or an ImageSet, not {type(images).__name__}")


def check_options(**given) -> None:
    """Options of the Python functions (embed, similar, ...) against their declarations as `train` takes them:
    embed(image_size=5) or precision="fp8" are refused by name, as --image-size 5 is (options.check_values)."""
    from ..config import RunConfig, option_fields
    from ..options import apply_overrides, check_values

    names = set(given)
    check_values([f for f in option_fields() if f.name in names], apply_overrides(RunConfig(), given))


def embed(
    images,
    backbone: str = DEFAULT_BACKBONE,
    *,
    image_size: int | None = None,
    features: str = "last",
    precision: str = "auto",
    batch_size: int = 64,
    device: str = "auto",
    cache_dir: str | None = None,
    reporter=None,
    arch: str | None = None,
) -> Embedding:
    """Pooled backbone features of every image in `images` (a folder, a list file, a DataSource or an ImageSet).

    image_size None follows the images (their median short side, at least 64 px, at most the backbone's input; 3x
    that side for features from several depths, depth.input_side), as `train` chooses it; features: the backbone's
    pooled last layer, or `stages` / `stages+last` as `--features` pools them; precision auto is the run's feature
    precision (fp32 on CPUs). The result's rows are what `train --strategy linear` would compute for the same images
    at the same settings, and are shared with it. arch: the architecture of a `file:` backbone's weights (--arch).
    """
    import torch

    from ..backbones import check_backbone_name, create_backbone
    from ..backbones.depth import frozen_input_size
    from ..backbones.model import remove_classifier
    from ..config import RunConfig
    from ..data.dataset import DecodedImages
    from ..data.decode import decode_samples
    from ..data.sizes import survey_sides
    from ..data.sources import Sample
    from ..data.transforms import eval_transform, resize_size
    from ..engine.features import cached_features, open_store, store_config
    from ..engine.runtime import feature_precision, memory_format, resolve_device
    from ..progress import QuietReporter

    check_backbone_name(backbone)
    # device is left to resolve_device: "cuda:1" or "mps" from Python, beyond the CLI's choices
    check_options(image_size=image_size, features=features, feature_precision=precision, batch_size=batch_size)
    reporter = reporter or QuietReporter()
    imgs = as_image_set(images)
    cfg = RunConfig()
    cfg.model.backbone, cfg.model.arch = backbone, arch
    cfg.model.features = features
    cfg.runtime.cache_dir = cache_dir
    cfg.runtime.device = device
    if precision != "auto":
        cfg.runtime.feature_precision = precision
    dev = torch.device(resolve_device(device))
    prec = feature_precision(cfg.runtime, dev.type)
    net, bcfg = create_backbone(backbone, pretrained=True, arch=arch, features=features)
    samples = [Sample(k, 0) for k in imgs.keys]  # decoding takes samples; the 0 is no label, nothing reads it
    size = image_size or frozen_input_size(survey_sides(imgs, samples)[0], bcfg)
    config = store_config(cfg, bcfg, size)
    ids = imgs.identities()
    store = open_store(cache_dir, config, prec)
    rows = store.verified(ids)  # a damaged row is decoded and extracted again
    missing = np.flatnonzero(rows < 0)
    skipped: list[tuple[str, str]] = []
    computed = None
    if len(missing):
        with reporter.task("Decoding images", len(missing)) as advance:
            decoded, _, skipped = decode_samples(
                imgs,
                [samples[i] for i in missing],
                resize_size(size, bcfg.crop_pct),
                bcfg.interpolation,
                progress=advance,
            )
        bad = {k for k, _ in skipped}
        todo = [i for i in missing if imgs.keys[i] not in bad]
        if todo:
            net = remove_classifier(net, bcfg).to(dev, memory_format=memory_format(cfg.runtime))
            ev = eval_transform(size, bcfg.crop_pct, bcfg.mean, bcfg.std, bcfg.interpolation)
            feats, _ = cached_features(
                net,
                DecodedImages(decoded, [0] * len(decoded), ev),
                ids=[ids[i] for i in todo],
                config=config,
                cache_dir=cache_dir,
                batch_size=batch_size,
                device=dev,
                precision=prec,
                memory_format=memory_format(cfg.runtime),
                reporter=reporter,
                label=backbone,
            )
            computed = dict(zip(todo, feats.numpy()))
    # Rows from the store and rows just computed, in the order asked; unreadable images are left out.
    keep = (rows >= 0) | np.isin(np.arange(len(ids)), list(computed or ()))
    dim = store.dim or (next(iter(computed.values())).shape[0] if computed else 0)
    features = np.empty((len(ids), dim), dtype=np.float32)
    if (rows >= 0).any():
        features[rows >= 0] = store.read(rows[rows >= 0])
    for i, f in (computed or {}).items():
        features[i] = f
    out = features[keep]
    keep = np.flatnonzero(keep)
    return Embedding(
        out,
        [imgs.keys[i] for i in keep],
        [ids[i] for i in keep],
        backbone,
        size,
        prec,
        computed=len(computed or {}),
        skipped=list(skipped),
    )
