"""Fine-tuning recipe options on tiny generated images: --select, warm-up and patience, --layer-decay, --augment, --ema."""

from __future__ import annotations

import csv
import json

import pytest
import torch

import transferkit
from transferkit.engine import loop
from transferkit.progress import QuietReporter

from .conftest import FAST, store_rows

FINETUNE = dict(strategy="finetune", **FAST)


@pytest.fixture(autouse=True)
def _no_report_html(monkeypatch):
    """report.html's plots are 2 of a tiny run's 4 seconds, and none of these options draws differently."""
    monkeypatch.setattr("transferkit.evaluation.finish.build_report", lambda run_dir: run_dir / "report.html")


def rows(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


class Messages(QuietReporter):
    def __init__(self):
        super().__init__()
        self.said: list[str] = []

    def message(self, text: str) -> None:
        self.said.append(text)


def crafted_val(monkeypatch, epochs: list[tuple[int, float]]) -> None:
    """The trainer's val predictions, one (correct, margin) per epoch: the first `correct` of the 5 val images get
    their class at logit `margin`, the others a wrong class at it. Later calls (the test split) are the model's.

    Cross-entropy of 3 classes: log(1 + 2 e^-m) when right, log(e^m + 2) when wrong; (2, 1.0) -> mean 1.151."""
    specs = iter(epochs)

    def predict(model, loader, *args):
        logits, labels = loop.predict(model, loader, *args)
        spec = next(specs, None)
        if spec is None:
            return logits, labels
        correct, margin = spec
        i = torch.arange(len(labels))
        out = torch.zeros_like(logits)
        out[i, torch.where(i < correct, labels, (labels + 1) % out.shape[1])] = margin
        return out, labels

    monkeypatch.setattr("transferkit.engine.trainer.predict", predict)


def test_select_score_keeps_the_most_accurate_epoch_not_the_lowest_loss(tiny_folder, tmp_path, monkeypatch):
    # accuracy 0.4, 0.6, 0.4 at val loss 1.151, 1.295, 1.094: loss would keep epochs 1 and 3, score keeps 1 and 2
    crafted_val(monkeypatch, [(2, 1.0), (3, 3.0), (2, 0.5)])
    said = Messages()
    kw = dict(epochs=3, patience=1, warmup_epochs=0, select="score", out=str(tmp_path))
    run = transferkit.fit(tiny_folder, reporter=said, **FINETUNE, **kw)
    got = rows(run.path)
    losses, accs = [float(r["val_loss"]) for r in got], [float(r["val_acc"]) for r in got]
    assert accs == pytest.approx([0.4, 0.6, 0.4]) and losses[2] < losses[0] < losses[1]
    assert [r["best"] for r in got] == ["True", "True", "False"]
    meta = json.loads((run.path / "best" / "transferkit.json").read_text())
    assert meta["epoch"] == 2 and meta["val_metrics"]["accuracy"] == pytest.approx(0.6)
    # patience 1 counts epoch 3, the lowest loss, as bad, and the message says by which metric
    assert [m for m in said.said if m.startswith("Early stopping")] == [
        "Early stopping: val accuracy has not improved for 1 epochs."
    ]


def test_select_orders_by_the_tasks_score_with_loss_as_tie_break():
    from transferkit.tasks import TASKS

    for task in TASKS.values():
        assert task.sort_key(0.5, 0.9, by="score") < task.sort_key(0.4, 0.8, by="score")  # higher score wins
        assert task.sort_key(0.4, 0.8, by="score") < task.sort_key(0.5, 0.8, by="score")  # equal: lower loss
        assert task.sort_key(0.4, 0.8) < task.sort_key(0.5, 0.9)  # the default: lower loss wins


@pytest.mark.parametrize(("warmup", "trained"), [(2.0, 3), (0.5, 2)])
def test_epochs_inside_the_warm_up_are_not_bad_epochs(tiny_folder, tmp_path, monkeypatch, warmup, trained):
    """Val loss rises every epoch, patience 1: warm-up 2 spares epoch 2 and stops after 3; warm-up 0.5 ends inside
    epoch 1, so epoch 2 is bad and ends the run."""
    crafted_val(monkeypatch, [(0, 1.0), (0, 2.0), (0, 3.0), (0, 4.0)])
    said = Messages()
    run = transferkit.fit(
        tiny_folder,
        epochs=4,
        patience=1,
        warmup_epochs=warmup,
        select="loss",
        out=str(tmp_path),
        reporter=said,
        **FINETUNE,
    )
    assert [r["best"] for r in rows(run.path)] == ["True"] + ["False"] * (trained - 1)
    assert "Early stopping: val loss has not improved for 1 epochs." in said.said


def test_layer_decay_slows_the_stem_most_and_onecycle_follows(tiny_folder, tmp_path):
    from transferkit.backbones import create_backbone
    from transferkit.backbones.model import TransferModel
    from transferkit.engine.optim import SCHEDULES
    from transferkit.strategies import param_groups

    net, cfg = create_backbone("efficientnet_lite0")
    model = TransferModel(net, cfg, num_outputs=3)
    n = len(cfg.stages)  # 7
    assert {g["name"] for g in param_groups(model, 1e-3, 0.1, 0.01)} == {
        "backbone",
        "backbone_no_decay",
        "head",
        "head_no_decay",
    }  # off by default: the groups of before
    groups = param_groups(model, 1e-3, 0.1, 0.01, layer_decay=0.8)
    lr = {g["name"]: g["lr"] for g in groups}
    assert lr["head"] == pytest.approx(1e-3) and lr["backbone.s6"] == pytest.approx(1e-4) == lr["backbone.top"]
    assert lr["backbone.s3"] == pytest.approx(1e-4 * 0.8**3) and lr["backbone.s3_no_decay"] == lr["backbone.s3"]
    assert lr["backbone.stem"] == pytest.approx(1e-4 * 0.8**n) and lr["backbone.stem"] < lr["backbone.s0"]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    opt = torch.optim.AdamW(groups)
    sched = SCHEDULES["onecycle"](opt, groups, total_steps=10, warmup_steps=2)
    for _ in range(3):  # at the peak each group is at its own LR, in the same ratios
        opt.step()
        sched.step()
    now = {g["name"]: g["lr"] for g in opt.param_groups}
    assert now["backbone.stem"] / now["backbone.s6"] == pytest.approx(0.8**n)

    # the trainer passes it: the checkpoint's optimizer has the split groups, metrics.csv the last stage's LR
    run = transferkit.fit(tiny_folder, epochs=1, layer_decay=0.5, schedule="constant", out=str(tmp_path), **FINETUNE)
    saved = torch.load(run.path / "last.ckpt", weights_only=True)["optimizer"]["param_groups"]
    initial = {g["name"]: g["initial_lr"] for g in saved}
    assert initial["backbone.stem"] == pytest.approx(1e-4 * 0.5**n) and initial["head"] == pytest.approx(1e-3)
    assert float(rows(run.path)[0]["lr"]) == pytest.approx(1e-4)


def test_augment_changes_training_images_and_their_cache_key_only(tiny_folder, tmp_path):
    from torchvision.transforms import v2 as T

    from transferkit.data.transforms import train_transform

    img = torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8)
    mean, std = (0.5,) * 3, (0.25,) * 3

    def views(augment: str) -> list[torch.Tensor]:
        torch.manual_seed(0)
        tf = train_transform(32, mean, std, augment=augment)
        return [tf(img) for _ in range(8)]

    trivial = train_transform(32, mean, std, augment="trivial").transforms
    assert [type(s) for s in trivial[:4]] == [
        T.RandomResizedCrop,
        T.RandomHorizontalFlip,
        T.TrivialAugmentWide,
        T.ToDtype,
    ]
    assert any(type(s) is T.RandAugment for s in train_transform(32, mean, std, augment="randaugment").transforms)
    assert any(not torch.equal(a, b) for a, b in zip(views("standard"), views("trivial"), strict=True))

    # one augmented view of the training images: a new augmentation is new features; the plain ones are reused
    cache = tmp_path / "feature-cache"  # conftest's TRANSFERKIT_CACHE
    kw = dict(strategy="linear", aug_views=1, head_solver="lbfgs", out=str(tmp_path), **FAST)
    transferkit.fit(tiny_folder, augment="standard", **kw)
    before = store_rows(cache)
    assert len(before) == 2  # the plain images and their one augmented view
    transferkit.fit(tiny_folder, augment="trivial", **kw)
    after = store_rows(cache)
    assert len(set(after) - set(before)) == 1 and all(after[k] == n for k, n in before.items())


EMA = dict(ema=0.999, batch_size=8, **FINETUNE)  # 26 training images: 3 optimizer steps per epoch


def test_ema_is_what_best_holds_and_what_val_measures(tiny_folder, tmp_path):
    run = transferkit.fit(tiny_folder, epochs=1, out=str(tmp_path), name="ema", **EMA)
    plain = transferkit.fit(tiny_folder, epochs=1, out=str(tmp_path), name="plain", **{**EMA, "ema": 0.0})
    state = torch.load(run.path / "last.ckpt", weights_only=True)
    assert int(state["ema"]["n_averaged"]) == 3  # one update per optimizer step
    assert "ema" not in torch.load(plain.path / "last.ckpt", weights_only=True)
    best = transferkit.load(run.best).model.state_dict()
    key = "net.conv_stem.weight"
    assert torch.equal(best[key], state["ema"]["module." + key])  # best/ is the average...
    assert not torch.equal(best[key], state["model"][key])  # ...not the weights that trained
    assert torch.equal(state["model"][key], transferkit.load(plain.best).model.state_dict()[key])  # same training
    assert rows(run.path)[0]["val_loss"] != rows(plain.path)[0]["val_loss"]  # val measured the average


def test_ema_resumes_where_it_stopped(tiny_folder, tmp_path):
    kw = dict(epochs=3, patience=0, out=str(tmp_path), **EMA)
    full = transferkit.fit(tiny_folder, name="full", **kw)

    class Interrupt(QuietReporter):
        def end_epoch(self, row):
            if row["epoch"] == 2:
                raise KeyboardInterrupt  # after epoch 2 was recorded, before its checkpoint

    with pytest.raises(KeyboardInterrupt):
        transferkit.fit(tiny_folder, name="cut", reporter=Interrupt(), **kw)
    cut = tmp_path / "cut"
    assert int(torch.load(cut / "last.ckpt", weights_only=True)["ema"]["n_averaged"]) == 3
    transferkit.fit(resume=cut, quiet=True)
    # epochs 2-3 evaluated the average continued from epoch 1's, exactly as the uninterrupted run did
    assert [float(r["val_loss"]) for r in rows(cut)] == pytest.approx(
        [float(r["val_loss"]) for r in rows(full.path)], rel=1e-5
    )


def test_fine_tuning_after_the_head_stops_when_it_stops_rising_not_when_it_trails_the_head(
    tiny_folder, tmp_path, monkeypatch
):
    """two-phase: the head (cached, its val from the head solver) is the run's best; the fine-tune epochs' crafted
    val accuracy rises 0.2, 0.4, 0.6, then falls: they trail the head yet keep improving on their own, so patience 1
    stops at the first fall (epoch 5), not after the first fine-tune epoch."""
    crafted_val(monkeypatch, [(1, 1.0), (2, 1.0), (3, 1.0), (1, 1.0), (1, 1.0)])
    run = transferkit.fit(
        tiny_folder,
        strategy="two-phase",
        epochs=7,
        head_epochs=1,
        patience=1,
        warmup_epochs=0,
        select="score",
        out=str(tmp_path),
        **FAST,
    )
    got = rows(run.path)
    assert [r["phase"] for r in got] == ["head"] + ["finetune"] * 4
    assert [float(r["val_acc"]) for r in got[1:]] == pytest.approx([0.2, 0.4, 0.6, 0.2])


def test_bn_stats_keeps_the_pretrained_statistics_while_the_weights_train(tiny_folder, tmp_path):
    from transferkit.backbones import create_backbone

    before = {k: v for k, v in create_backbone("efficientnet_lite0")[0].state_dict().items() if "running_mean" in k}
    cases = [("frozen", "finetune", False), ("train", "finetune", True), ("auto", "finetune", True)]
    cases += [("auto", "two-phase", False)]  # two-phase keeps the statistics its head was fitted on
    for bn, strategy, moved in cases:
        run = transferkit.fit(
            tiny_folder,
            epochs=2,
            head_epochs=1,
            bn_stats=bn,
            out=str(tmp_path / f"{bn}-{strategy}"),
            **{**FINETUNE, "strategy": strategy},
        )
        # the weights after the last epoch (best/ may be two-phase's head epoch, before any fine-tuning)
        model = torch.load(run.path / "last.ckpt", weights_only=True)["model"]
        after = {k[len("net.") :]: v for k, v in model.items() if k.startswith("net.")}
        same = all(torch.equal(after[k], v) for k, v in before.items() if k in after)
        assert same is not moved and len([k for k in before if k in after]) > 10
        weights = [k for k in after if k.endswith("conv_stem.weight")]
        assert weights and not torch.equal(
            after[weights[0]], create_backbone("efficientnet_lite0")[0].state_dict()[weights[0]]
        )
