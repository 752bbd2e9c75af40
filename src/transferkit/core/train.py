"""`train`: a model trained on images by a strategy's phases (fine-tuning, freezing, two-phase), over the
accelerator: the core function under `fit` for the strategies that need pixels.

    from transferkit.core.train import train
    net, bcfg = create_backbone("efficientnet_lite0")
    model = TransferModel(net, bcfg, num_outputs=2)
    done = train(model, "photos/", labels, {"train": tr, "val": va}, strategy="finetune", epochs=3, image_size=64)
    done.history[-1]["val_acc"], done.model                   # the best epoch's weights are in done.model

images: a path, DataSource or ImageSet; labels[i] is the label of images' key i (the task's: a class index, a value,
a tuple of label indices); split: index arrays into those keys. No run of `fit` is made: no doctor, no report;
checkpoints go to `out` (a temporary folder by default, removed after).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Trained:
    model: Any  # the TransferModel, with the best epoch's weights
    history: list[dict]  # one row per epoch (metrics.csv's rows)
    trainer: Any  # the Trainer (its task, head solvers, split logits)


def prepare(decoded: dict, keys: dict, ids: dict, classes: list[str], task, cfg, bcfg, size: int, side=None):
    """PreparedData from decoded splits ({split: (images, labels)}): the train transform (augmentation) and the
    eval transform from the backbone's preprocessing, labels as the task's loss takes them."""
    from ..data.dataset import DecodedImages
    from ..data.transforms import eval_transform, train_transform
    from ..engine.features import store_config
    from ..engine.trainer import PreparedData

    d = cfg.data
    ev = eval_transform(size, bcfg.crop_pct, bcfg.mean, bcfg.std, bcfg.interpolation)
    tr = train_transform(
        size,
        bcfg.mean,
        bcfg.std,
        bcfg.interpolation,
        crop_scale=d.crop_scale,
        flip=d.flip,
        rotate=d.rotate,
        color_jitter=d.color_jitter,
        augment=d.augment,
    )

    def images(split: str, transform):
        imgs, labels = decoded[split]
        return DecodedImages(imgs, task.targets(labels, classes), transform)

    return PreparedData(
        classes=classes,
        train=images("train", tr),
        train_plain=images("train", ev),
        val=images("val", ev),
        test=images("test", ev) if len(decoded.get("test", ([], []))[0]) else None,
        image_size=size,
        keys=keys,
        ids=ids,
        store_config=store_config(cfg, bcfg, size),
        data_side=side,
    )


def train_prepared(model, strategy, cfg, prepared, run_dir: Path, reporter, resume: bool = False):
    """(history, trainer): the strategy's phases over `prepared`, checkpoints and best/ in run_dir."""
    from ..engine.runtime import make_accelerator
    from ..engine.trainer import Trainer

    accelerator = make_accelerator(cfg.runtime, cfg.train.grad_accum, cfg.train.seed)
    trainer = Trainer(model, strategy, cfg, prepared, run_dir, reporter, accelerator=accelerator)
    return trainer.fit(resume=resume), trainer


def train(
    model,
    images,
    labels,
    split: dict,
    settings=None,
    *,
    classes: list[str] | None = None,
    out: str | None = None,
    reporter=None,
    **options,
) -> Trained:
    """Train `model` (a TransferModel) on `images` with `labels` over `split` ({"train": rows, "val": rows,
    optionally "test": rows}). settings: a RunConfig; keyword options set its fields by name (strategy, epochs,
    lr, image_size, task, ...), as `fit`'s do."""
    import numpy as np

    from ..config import RunConfig
    from ..data.decode import decode_samples
    from ..data.sources import Sample
    from ..data.transforms import resize_size
    from ..options import apply_overrides, validate
    from ..progress import QuietReporter
    from ..strategies import parse_strategy
    from ..tasks import get_task
    from .embed import as_image_set

    cfg = apply_overrides(settings or RunConfig(), options)
    validate(cfg)
    strategy = parse_strategy(cfg.train.strategy)
    if strategy.name == "auto":
        from ..errors import ConfigError

        raise ConfigError("train() runs one strategy: give strategy='linear', 'finetune', ... ('auto' is fit's).")
    reporter = reporter or QuietReporter()
    imgs = as_image_set(images)
    task = get_task(cfg.train.task)
    bcfg, size = model.cfg, cfg.data.image_size or model.cfg.input_size
    classes = classes or [str(c) for c in range(model.num_outputs)]
    decoded, keys, ids = {}, {}, {}
    for name, rows in split.items():
        samples = [Sample(imgs.keys[i], labels[i]) for i in np.asarray(rows, dtype=np.int64)]
        arrays, got, bad = decode_samples(imgs, samples, resize_size(size, bcfg.crop_pct), bcfg.interpolation)
        unread = {k for k, _ in bad}
        decoded[name] = (arrays, got)
        keys[name] = [x.key for x in samples if x.key not in unread]
        ids[name] = imgs.identities(keys[name])
    prepared = prepare(decoded, keys, ids, classes, task, cfg, bcfg, size)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(out) if out else Path(tmp)
        run_dir.mkdir(parents=True, exist_ok=True)
        history, trainer = train_prepared(model, strategy, cfg, prepared, run_dir, reporter)
        from ..bundle import load_bundle

        best = run_dir / "best"
        if best.is_dir():  # the best epoch's weights, as fit keeps them
            trainer.load_weights(load_bundle(best)[0].state_dict())
    return Trained(trainer.plain_model(), history, trainer)
