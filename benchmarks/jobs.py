"""The measured jobs of `benchmarks/run.py`, each run in its own process (`python benchmarks/jobs.py NAME ARGS...`) so
that wall time includes start-up and peak memory is the job's own. Each prints one JSON line last.

Jobs: floor, raw_train, raw_forward, predict, seed_baseline, fastai.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

T0 = time.perf_counter()  # wall time from interpreter start-up, imports included


def _lite0():
    from transferkit.backbones import create_backbone
    from transferkit.backbones.model import TransferModel

    net, cfg = create_backbone("efficientnet_lite0")
    return net, cfg, TransferModel


def _settings():
    from transferkit.engine.runtime import set_threads, tune_malloc

    tune_malloc()
    set_threads()


def floor(data: str) -> dict:
    """Decoding plus one forward pass over train+val, at the settings `linear` uses (its feature precision,
    channels_last, batch 32)."""
    import torch

    from transferkit.data.dataset import DecodedImages
    from transferkit.data.decode import decode_samples
    from transferkit.data.sources import open_source
    from transferkit.data.transforms import eval_transform, resize_size
    from transferkit.engine.runtime import autocast_for, best_precision

    _settings()
    net, cfg, TransferModel = _lite0()
    model = TransferModel(net, cfg, 2).eval().to(memory_format=torch.channels_last)
    src = open_source(data)
    samples = [s for v in src.splits.values() for s in v]
    images, labels, _ = decode_samples(src, samples, resize_size(cfg.input_size, cfg.crop_pct), cfg.interpolation)
    ds = DecodedImages(
        images, labels, eval_transform(cfg.input_size, cfg.crop_pct, cfg.mean, cfg.std, cfg.interpolation)
    )
    precision = best_precision("cpu")  # the precision `linear` extracts at here: bf16 on AVX512-BF16 CPUs, else fp32
    with torch.no_grad(), autocast_for(precision, "cpu"):
        for x, _ in torch.utils.data.DataLoader(ds, batch_size=32):
            model.net(x.contiguous(memory_format=torch.channels_last))
    return {"images": len(images), "precision": precision}


def raw_train(steps: str = "6") -> dict:
    """Train-step throughput on tensors already in memory: the ceiling for fine-tuning (batch 32, 224 px)."""
    import torch

    _settings()
    net, cfg, TransferModel = _lite0()
    model = TransferModel(net, cfg, 2).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    x = torch.randn(32, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (32,))
    for i in range(2 + int(steps)):
        if i == 2:
            start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {"images_per_s": 32 * int(steps) / (time.perf_counter() - start)}


def raw_forward(batches: str = "8") -> dict:
    """Batched forward throughput on tensors in memory, as `predict` would run it (fp32, channels_last, batch 32)."""
    import torch

    _settings()
    net, cfg, TransferModel = _lite0()
    model = TransferModel(net, cfg, 2).eval().to(memory_format=torch.channels_last)
    x = torch.randn(32, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        model(x)
        start = time.perf_counter()
        for _ in range(int(batches)):
            model(x)
    return {"images_per_s": 32 * int(batches) / (time.perf_counter() - start)}


def predict(bundle: str, folder: str) -> dict:
    """`Predictor.predict` on every image of a folder: decoding, preprocessing and forward."""
    import transferkit
    from transferkit.data.images import image_files

    p = transferkit.load(bundle)  # tunes the allocator and threads, as `transferkit predict` does
    files = [str(f) for f in image_files(Path(folder))]
    start = time.perf_counter()
    out = p.predict(files)
    return {"images": len(out), "images_per_s": len(out) / (time.perf_counter() - start)}


def seed_baseline(data: str, epochs: str = "5") -> dict:
    """The seeds' loop, faithfully: ImageFolder, batch 4, frozen backbone re-run on every image every epoch,
    SGD lr 1e-3 momentum 0.9 (StepLR 7/0.1), RandomResizedCrop+flip, same backbone and weights as transferkit."""
    import torch
    from torch import nn
    from torchvision import datasets, transforms

    torch.manual_seed(0)
    net, cfg, _ = _lite0()
    for p in net.parameters():
        p.requires_grad = False
    net.classifier = nn.Linear(net.classifier.in_features, 2)  # new layers require grad by default
    norm = transforms.Normalize(cfg.mean, cfg.std)
    tf = {
        "train": transforms.Compose(
            [transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(), transforms.ToTensor(), norm]
        ),
        "val": transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), norm]),
    }
    sets = {k: datasets.ImageFolder(f"{data}/{k}", tf[k]) for k in ("train", "val")}
    loaders = {
        k: torch.utils.data.DataLoader(v, batch_size=4, shuffle=k == "train", num_workers=2) for k, v in sets.items()
    }
    opt = torch.optim.SGD(net.classifier.parameters(), lr=1e-3, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.1)
    crit = nn.CrossEntropyLoss()
    best = 0.0
    for _ in range(int(epochs)):
        for phase in ("train", "val"):
            net.train(phase == "train")
            correct = 0
            for x, y in loaders[phase]:
                with torch.set_grad_enabled(phase == "train"):
                    out = net(x)
                    if phase == "train":
                        opt.zero_grad()
                        crit(out, y).backward()
                        opt.step()
                correct += (out.argmax(1) == y).sum().item()
            if phase == "train":
                sched.step()
            else:
                best = max(best, correct / len(sets["val"]))
    return {"accuracy": best}


def fastai_learner(dls, net, cfg):
    """fastai's recipe on transferkit's backbone and weights: the body cut where vision_learner cuts (feature maps)
    plus fastai's head (create_head doubles the width for its concat pooling), body and head as two param groups."""
    from fastai.vision.all import CrossEntropyLossFlat, Learner, accuracy, create_head, params
    from torch import nn

    body = nn.Sequential(net.conv_stem, net.bn1, net.blocks, net.conv_head, net.bn2)
    model = nn.Sequential(body, create_head(cfg.num_features, len(dls.vocab)))
    return Learner(
        dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy, splitter=lambda m: [params(m[0]), params(m[1])]
    )


def fastai(data: str, epochs: str = "2") -> dict:
    """fastai's recipe on the same backbone and weights: vision_learner-style body + fastai head, fine_tune."""
    import torch
    from fastai.vision.all import ImageDataLoaders, Normalize, Resize, aug_transforms

    torch.manual_seed(0)
    _settings()
    net, cfg, _ = _lite0()
    dls = ImageDataLoaders.from_folder(
        data,
        train="train",
        valid="val",
        item_tfms=Resize(256),
        bs=32,
        num_workers=0,
        batch_tfms=[*aug_transforms(size=224), Normalize.from_stats(list(cfg.mean), list(cfg.std))],
    )
    learn = fastai_learner(dls, net, cfg)
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(int(epochs), base_lr=2e-3)
    return {"accuracy": float(learn.validate()[1])}


if __name__ == "__main__":
    name, *args = sys.argv[1:]
    result = globals()[name](*args)
    result["wall_s"] = time.perf_counter() - T0
    print(json.dumps(result))
