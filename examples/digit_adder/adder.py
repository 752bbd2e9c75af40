"""The digit adder: a network that reads two handwritten digits and outputs their sum (0-18), built on the body of a
digit recogniser that transferkit trained, against the same network trained from scratch.

    .venv/bin/python examples/digit_adder/adder.py            # the README's table and plot (results.json, adder.png)
    .venv/bin/python examples/digit_adder/adder.py --quick    # one seed, 100 pairs: what tests/test_digit_adder.py runs

Per seed:
1. scikit-learn's 1,797 digit scans (8x8) are split, by class, into training images (75%) and test images (25%).
2. transferkit trains a digit recogniser on the training images alone (`transferkit.fit`, its own val split inside).
3. Pairs of training images train the adder; its test pairs are made of test images only, so neither the recogniser
   nor the adder has seen a digit it is tested on.
4. The adder: one body, shared by the two digits (`transferkit.feature_extractor("bundle:...")`), then an MLP on the
   two feature vectors, with 19 outputs (the sum as a class) or one (the sum as a number). Three ways to get it:
     frozen      the recogniser's body, frozen: only the MLP trains (on features computed once)
     fine-tuned  the frozen adder, then everything trains as many steps again (the body at lr x 0.1)
     scratch     the same architecture from random weights; everything trains for those steps
   Fine-tuned and scratch train the body for the same number of steps: the same compute.
Uses transferkit's public API (fit, from_arrays, feature_extractor) and plain PyTorch.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import transferkit

HERE = Path(__file__).resolve().parent
BACKBONE = "timm:test_resnet"  # timm's 0.37M-parameter ResNet: no download, ~1 ms per 32 px image to train on a CPU
IMAGE_SIZE = 32  # the 8x8 scans upscaled; the recogniser's preprocessing, which the adder inherits from its bundle
RECOGNISER_EPOCHS = 10  # from random weights: ~98% accuracy on the held-out test digits
BATCH = 32  # pairs per step: 64 digit images through the body
MIN_STEPS, MAX_STEPS = 200, 400  # per trained body: 400 steps x 64 images x ~0.7 ms (1 CPU thread) = 18 s
LR, BODY_LR_MULT = 3e-3, 0.1
HIDDEN = 256  # the adder's MLP: [features(a), features(b)] -> 256 -> 19 or 1
TEST_PAIRS = 2000  # drawn from the test images alone
SUM_MEAN, SUM_STD = 9.0, 4.1  # the sum of two uniform digits: mean 9, std sqrt(2 * 8.25) = 4.06; regression targets


def steps_for(pairs: int, low: int = MIN_STEPS, cap: int = MAX_STEPS) -> int:
    """Optimizer steps for a training set: 10 epochs, at least `low` and at most `cap` (100 pairs: 200 steps = 64
    epochs; 1,000 pairs: 312 steps; 10,000 pairs: 400 steps = 1.3 epochs, where compute, not data, is short)."""
    return int(min(cap, max(low, 10 * pairs // BATCH)))


# ---- data -------------------------------------------------------------------------------------------------------


def load_digits_uint8() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images * (255.0 / 16.0)).round().astype(np.uint8), d.target.astype(np.int64)  # 0..16 ink -> 0..255


def split_images(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and test images: the images are split first, the pairs are made afterwards."""
    from sklearn.model_selection import train_test_split

    return train_test_split(np.arange(len(labels)), test_size=0.25, stratify=labels, random_state=seed)


def make_pairs(images: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2) indices of random pairs of the given images (with replacement: a digit may pair with itself)."""
    return rng.choice(images, size=(n, 2))


# ---- the recogniser, by transferkit -----------------------------------------------------------------------------


def train_recogniser(x, y, train_idx, seed: int, out: Path, epochs: int, backbone: str, threads: int):
    src = transferkit.from_arrays(x[train_idx], y[train_idx], name="digits")
    return transferkit.fit(
        src,
        backbone=backbone,
        strategy="scratch" if backbone.startswith("timm:") else "finetune",  # timm names have no offline weights
        image_size=IMAGE_SIZE,
        epochs=epochs,
        lr=LR,
        flip=False,  # a mirrored 2 is not a 2
        crop_scale=(0.7, 1.0),
        split=(0.85, 0.15, 0.0),  # its own val split for early stopping; the held-out test images are its test
        seed=seed,
        out=str(out),
        name=f"recogniser-{seed}",
        threads=threads,
        quiet=True,
    )


# ---- the adder, in plain PyTorch --------------------------------------------------------------------------------


class Adder(nn.Module):
    """Two digits -> their sum: one body reads both (the same weights), an MLP reads the two feature vectors."""

    def __init__(self, body: nn.Module, width: int, outputs: int):
        super().__init__()
        self.body = body
        self.head = nn.Sequential(nn.Linear(2 * width, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, outputs))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        f = self.body(torch.cat([a, b]))  # both digits in one batch: (2B, F)
        return self.head(torch.cat(f.chunk(2), 1))  # (B, 2F) -> (B, outputs)


class Task:
    """The sum as one of 19 classes (cross-entropy) or as one number (MSE on the standardised sum)."""

    def __init__(self, name: str):
        self.name, self.outputs = name, 19 if name == "classification" else 1

    def loss(self, out: torch.Tensor, sums: torch.Tensor) -> torch.Tensor:
        if self.outputs == 19:
            return nn.functional.cross_entropy(out, sums)
        return nn.functional.mse_loss(out[:, 0], (sums.float() - SUM_MEAN) / SUM_STD)

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        """The predicted sum as a number (for the regression: unrounded)."""
        return out.argmax(1).float() if self.outputs == 19 else out[:, 0] * SUM_STD + SUM_MEAN

    def scores(self, out: torch.Tensor, sums: torch.Tensor) -> dict[str, float]:
        pred = self.predict(out)
        exact = pred.round().clamp(0, 18) == sums
        return {"accuracy": exact.float().mean().item(), "mae": (pred - sums).abs().mean().item()}


def train(model: Adder, params, x: torch.Tensor, y: torch.Tensor, pairs: np.ndarray, task: Task, steps: int, seed: int):
    """`steps` AdamW steps on batches of pairs; x: the preprocessed images (or their features), y: the digits."""
    opt = torch.optim.AdamW(params, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=steps)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        batch = torch.from_numpy(pairs[rng.integers(0, len(pairs), BATCH)])
        a, b = batch[:, 0], batch[:, 1]
        loss = task.loss(model(x[a], x[b]), y[a] + y[b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()


@torch.no_grad()
def evaluate(model: Adder, x: torch.Tensor, y: torch.Tensor, pairs: np.ndarray, task: Task) -> dict[str, float]:
    model.eval()
    p = torch.from_numpy(pairs)
    outs = [model(x[c[:, 0]], x[c[:, 1]]) for c in p.split(500)]
    return task.scores(torch.cat(outs), y[p[:, 0]] + y[p[:, 1]])


def frozen_features(body: nn.Module, images: torch.Tensor) -> torch.Tensor:
    body.eval()
    with torch.no_grad():
        return torch.cat([body(c) for c in images.split(500)])


def run_seed(seed: int, sizes: list[int], steps: tuple[int, int], epochs: int, backbone: str, threads: int, work: Path):
    x, y = load_digits_uint8()
    train_idx, test_idx = split_images(y, seed)
    t0 = time.process_time()
    recogniser = train_recogniser(x, y, train_idx, seed, work, epochs, backbone, threads)
    bundle = f"bundle:{recogniser.best}"
    answers = transferkit.load(recogniser.best).predict([x[i] for i in test_idx])
    torch.set_num_threads(threads)  # `load` gives torch every core
    accuracy = float(np.mean([int(r["label"]) == y[i] for r, i in zip(answers, test_idx)]))
    rows = [{"seed": seed, "what": "recogniser", "accuracy": accuracy}]
    print(
        f"seed {seed}: recogniser {accuracy:.3f} on the test digits ({time.process_time() - t0:.0f} s CPU)", flush=True
    )

    _, cfg, prep = transferkit.feature_extractor(bundle)
    grey = torch.from_numpy(x)[:, None].expand(-1, 3, -1, -1)  # (N, 3, 8, 8) uint8, as transferkit reads greyscale
    images = prep(grey)  # (N, 3, 32, 32): the recogniser's own eval preprocessing, from its bundle
    labels = torch.from_numpy(y)
    rng = np.random.default_rng(seed)
    test_pairs = make_pairs(test_idx, TEST_PAIRS, rng)
    for n in sizes:
        pairs = make_pairs(train_idx, n, rng)
        n_steps = steps_for(n, *steps)
        for task in (Task("classification"), Task("regression")):
            t0 = time.process_time()
            torch.manual_seed(seed)
            body = transferkit.feature_extractor(bundle).net
            feats = frozen_features(body, images)
            head_only = Adder(nn.Identity(), cfg.num_features, task.outputs)  # the MLP on features computed once
            train(head_only, [{"params": head_only.parameters(), "lr": LR}], feats, labels, pairs, task, n_steps, seed)
            scores = {"frozen": evaluate(head_only, feats, labels, test_pairs, task)}

            tuned = Adder(body.train(), cfg.num_features, task.outputs)
            tuned.head.load_state_dict(head_only.head.state_dict())  # frozen, then fine-tuned
            groups = [
                {"params": tuned.body.parameters(), "lr": LR * BODY_LR_MULT},
                {"params": tuned.head.parameters(), "lr": LR},
            ]
            train(tuned.train(), groups, images, labels, pairs, task, n_steps, seed)
            scores["fine-tuned"] = evaluate(tuned, images, labels, test_pairs, task)

            torch.manual_seed(seed)
            scratch_body = transferkit.feature_extractor(bundle, pretrained=False).net  # same network, random weights
            scratch = Adder(scratch_body, cfg.num_features, task.outputs)
            train(
                scratch.train(),
                [{"params": scratch.parameters(), "lr": LR}],
                images,
                labels,
                pairs,
                task,
                n_steps,
                seed,
            )
            scores["scratch"] = evaluate(scratch, images, labels, test_pairs, task)
            for what, s in scores.items():
                rows.append({"seed": seed, "task": task.name, "pairs": n, "steps": n_steps, "what": what, **s})
            shown = ", ".join(f"{w} {s['accuracy']:.3f}" for w, s in scores.items())
            print(f"  {n:>6} pairs, {task.name:<14} {shown} ({time.process_time() - t0:.0f} s CPU)", flush=True)
    return rows


# ---- the table and the plot -------------------------------------------------------------------------------------


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval over seeds (0 for one seed)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()), 0.0
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


WAYS = ("frozen", "fine-tuned", "scratch")


def table(rows: list[dict]) -> str:
    """Markdown: per task and number of pairs, the test accuracy of the exact sum (and the regression's MAE)."""
    seeds = sorted({r["seed"] for r in rows})
    rec = mean_ci([r["accuracy"] for r in rows if r["what"] == "recogniser"])
    lines = [
        f"Recogniser test accuracy (held-out digits): {100 * rec[0]:.1f}% ± {100 * rec[1]:.1f}; "
        f"{len(seeds)} seed(s), mean ± 95% t-interval.",
        "",
        "| sum as | training pairs | steps | " + " | ".join(WAYS) + " |",
        "|---|---:|---:|" + "---:|" * len(WAYS),
    ]
    for task in ("classification", "regression"):
        for n in sorted({r["pairs"] for r in rows if r.get("task") == task}):
            cells = []
            for way in WAYS:
                got = [r for r in rows if r.get("task") == task and r["pairs"] == n and r["what"] == way]
                acc, ci = mean_ci([r["accuracy"] for r in got])
                cell = f"{100 * acc:.1f}% ± {100 * ci:.1f}"
                if task == "regression":
                    mae, mci = mean_ci([r["mae"] for r in got])
                    cell += f" (MAE {mae:.2f} ± {mci:.2f})"
                cells.append(cell)
            steps = next(r["steps"] for r in rows if r.get("task") == task and r["pairs"] == n)
            name = "19 classes" if task == "classification" else "a number"
            lines.append(f"| {name} | {n:,} | {steps} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, task in zip(axes, ("classification", "regression")):
        sizes = sorted({r["pairs"] for r in rows if r.get("task") == task})
        for way, style in zip(WAYS, ("o-", "s-", "^--")):
            stats = [
                mean_ci([r["accuracy"] for r in rows if r.get("task") == task and r["pairs"] == n and r["what"] == way])
                for n in sizes
            ]
            m, ci = np.array(stats).T * 100
            ax.errorbar(sizes, m, yerr=ci, fmt=style, capsize=3, label=way)
        ax.set_xscale("log")
        ax.set_xlabel("training pairs")
        ax.set_title("sum as 19 classes" if task == "classification" else "sum as a number (rounded)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy of the sum (%)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--sizes", default="100,1000,10000", help="numbers of training pairs, comma-separated")
    p.add_argument("--recogniser-epochs", type=int, default=RECOGNISER_EPOCHS)
    p.add_argument("--backbone", default=BACKBONE, help="the recogniser's backbone, e.g. efficientnet_lite0 (slower)")
    # One thread: batches of 64 images of 32 px are too small to split across cores, and on a busy machine torch's
    # extra threads spin waiting for each other (here: 0.7 ms of CPU per image on one thread, 13 ms on two).
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--out",
        type=Path,
        help=f"where results.json and adder.png go (default: {HERE}; with --quick a temporary folder)",
    )
    p.add_argument("--quick", action="store_true", help="one seed, 100 pairs, 100 steps, 5 recogniser epochs")
    a = p.parse_args(argv)
    # --quick's one-seed numbers never replace the published results.json and plot beside this script
    a.out = a.out or (Path(tempfile.mkdtemp(prefix="transferkit-quick-")) if a.quick else HERE)
    steps = (MIN_STEPS, MAX_STEPS)
    if a.quick:
        a.seeds, a.sizes, a.recogniser_epochs, steps = 1, "100", 5, (100, 100)
    sizes = [int(s) for s in a.sizes.split(",")]
    torch.set_num_threads(a.threads)
    started = time.process_time()
    rows = []
    with tempfile.TemporaryDirectory() as work:  # the recognisers' runs: not kept
        for seed in range(a.seeds):
            rows += run_seed(seed, sizes, steps, a.recogniser_epochs, a.backbone, a.threads, Path(work))
    a.out.mkdir(parents=True, exist_ok=True)
    result = {"rows": rows, "table": table(rows), "cpu_seconds": round(time.process_time() - started)}
    (a.out / "results.json").write_text(json.dumps(result, indent=1))
    plot(rows, a.out / "adder.png")
    print(result["table"])
    print(f"{result['cpu_seconds']} s of CPU time; wrote {a.out / 'results.json'} and {a.out / 'adder.png'}")
    return result


if __name__ == "__main__":
    main()
