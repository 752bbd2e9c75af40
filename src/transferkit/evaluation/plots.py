"""The pictures of a run, as PNG files: training curves, confusion matrix, per-class bars, prediction gallery,
top losses and the reliability diagram.

    plot_training_curves(rows, "runs/x/plots/curves.png", best_epoch=3)
    plot_confusion_matrix(metrics["confusion_matrix"], classes, "runs/x/plots/confusion_matrix.png")

matplotlib's object API (`Figure` + the Agg canvas) draws without a display and without pyplot's global state, so
plotting never opens a window, never needs $DISPLAY, and never changes the backend of a notebook that calls `fit`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

RIGHT, WRONG = "#1a7f37", "#cf222e"  # green / red, dark enough to read as text on white
TRAIN_C, VAL_C = "#0969da", "#bc4c00"  # blue / orange: tell apart for the colour-blind too
DPI = 110


def _figure(width: float, height: float, layout: str | None = "constrained"):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout=layout)  # constrained: nothing clipped


def _save(fig, path: str | Path, photo: bool = False) -> Path:
    """photo=True (image grids): zlib level 1, twice as fast as the default 6 on photos, which barely compress anyway."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", facecolor="white", pil_kwargs={"compress_level": 1} if photo else None)
    return path


def short(name: str, n: int = 18) -> str:
    """Long class names cut to n characters ('golden_retriever_puppy' -> 'golden_retriever…') so labels never overlap."""
    return name if len(name) <= n else name[: n - 1] + "…"


def plot_training_curves(
    rows: Sequence[dict], path: str | Path, best_epoch: int | None = None, score: str = "accuracy"
) -> Path:
    """Train vs val loss and the task's score (rows' train_acc/val_acc: accuracy, R², mAP) per epoch; the best epoch
    marked; phase changes (two-phase) as dotted lines."""
    from matplotlib.ticker import MaxNLocator

    def col(name):
        return np.array([float(r[name]) if r.get(name) not in (None, "") else np.nan for r in rows])

    epochs = col("epoch")
    fig = _figure(10, 3.8)
    axes = fig.subplots(1, 2)
    for ax, what, label in ((axes[0], "loss", "loss"), (axes[1], "acc", score)):
        ax.plot(epochs, col(f"train_{what}"), "o-", color=TRAIN_C, label=f"train {label}", ms=4)
        ax.plot(epochs, col(f"val_{what}"), "o-", color=VAL_C, label=f"val {label}", ms=4)
        if best_epoch is not None and best_epoch in epochs:
            i = int(np.where(epochs == best_epoch)[0][0])
            ax.axvline(best_epoch, color="0.5", ls="--", lw=1)
            ax.plot(
                [best_epoch],
                [col(f"val_{what}")[i]],
                "*",
                color=VAL_C,
                ms=14,
                mec="black",
                label=f"best epoch ({best_epoch})",
            )
        phases = [r.get("phase") for r in rows]
        for i in range(1, len(rows)):
            if phases[i] != phases[i - 1]:
                x = (epochs[i - 1] + epochs[i]) / 2
                ax.axvline(x, color="0.3", ls=":", lw=1)
                ax.annotate(
                    f" {phases[i]}", (x, 1), xycoords=("data", "axes fraction"), va="top", fontsize=8, color="0.3"
                )
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(epochs) == 1:  # a single point (linear probes train in one cached pass): centre it, not at an edge
            ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    low = np.nanmin(np.r_[col("train_acc"), col("val_acc"), 1.0])
    axes[1].set_ylim(max(0.0 if low >= 0 else -1.0, low - 0.05), 1.01)  # R² below 0: down to -1, not beyond
    fig.suptitle("Training curves")
    return _save(fig, path)


def plot_confusion_matrix(cm, classes: Sequence[str], path: str | Path) -> Path:
    """Counts and row-normalised (recall per true class) side by side; rows are true classes, columns predicted."""
    cm = np.asarray(cm, dtype=float)
    n = len(classes)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    names = [short(c) for c in classes]
    annotate = n <= 25  # beyond ~25 classes the numbers no longer fit in a cell: a colour bar tells instead
    fontsize = 9 if n <= 12 else (7 if n <= 25 else 6)
    # inches: the matrix (0.45 per class, at least 2.6) plus room for the longest tick label on two sides
    label = max(len(s) for s in names) * fontsize / 72 * 0.6 + 0.6
    side = max(2.6, 0.45 * n if n <= 30 else 0.2 * n)
    fig = _figure(2 * (side + label) + (0 if annotate else 1.2) + 0.3, side + label + 0.6)
    axes = fig.subplots(1, 2)
    for ax, data, title, vmax in (
        (axes[0], cm, "counts", max(1.0, cm.max())),
        (axes[1], norm, "row-normalised (recall per class)", 1.0),
    ):
        im = ax.imshow(data, cmap="Blues", vmin=0, vmax=vmax)
        ax.set_title(title, fontsize=10)
        rotate = max(len(s) for s in names) > (4 if n > 3 else 10)  # wider than a 0.45 in cell at 9 pt: slant it
        ax.set_xticks(
            range(n),
            names,
            rotation=45 if rotate else 0,
            ha="right" if rotate else "center",
            rotation_mode="anchor",
            fontsize=fontsize,
        )
        ax.set_yticks(range(n), names, fontsize=fontsize)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if annotate:
            for i in range(n):
                for j in range(n):
                    v = data[i, j]
                    if v == 0 and i != j:
                        continue  # empty off-diagonal cells stay blank: the mistakes stand out
                    text = f"{int(v)}" if data is cm else f"{v:.2f}"
                    ax.text(
                        j,
                        i,
                        text,
                        ha="center",
                        va="center",
                        fontsize=fontsize,
                        color="white" if v > 0.55 * vmax else "black",
                    )
        else:
            fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(f"Confusion matrix ({int(cm.sum())} images)")
    return _save(fig, path)


def plot_per_class(per_class: dict[str, dict], classes: Sequence[str], path: str | Path) -> Path:
    """Precision, recall and F1 per class as horizontal bars: class names stay horizontal and readable."""
    n = len(classes)
    names = [f"{short(c)} (n={per_class[c]['support']})" for c in classes]
    fig = _figure(8, max(2.5, 0.45 * n + 1.2))
    ax = fig.subplots()
    y = np.arange(n)
    h = 0.26
    for k, (metric, colour) in enumerate((("precision", "#0969da"), ("recall", "#bc4c00"), ("f1", "#1a7f37"))):
        values = [per_class[c][metric] for c in classes]
        bars = ax.barh(y + (k - 1) * h, values, height=h, color=colour, label=metric)
    ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)  # F1 as a number: 0.93 and 0.97 look alike as bars
    ax.set_yticks(y, names, fontsize=9)
    ax.invert_yaxis()  # first class on top, as in the tables
    ax.set_xlim(0, 1.08)
    ax.set_xlabel("score")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
    ax.set_title("Precision, recall and F1 per class")
    return _save(fig, path)


def square_thumb(img: np.ndarray, size: int = 128) -> np.ndarray:
    """The centre square of an HWC uint8 image (what the eval crop sees), at most `size` pixels a side."""
    from PIL import Image

    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = Image.fromarray(np.ascontiguousarray(img[top : top + s, left : left + s]))
    return np.asarray(crop.resize((size, size), Image.Resampling.BICUBIC) if s > size else crop)


def _rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.uint8)


def plot_image_grid(
    images: Sequence[np.ndarray],
    titles: Sequence[str],
    colours: Sequence[str],
    path: str | Path,
    title: str,
    cols: int = 6,
) -> Path:
    """Thumbnails in a grid, each in a coloured frame under a coloured caption; used by the gallery and top losses.

    The thumbnails are pasted into one mosaic array shown by a single axes, with the captions as text on it: one
    artist per image instead of one axes per image, which took ~1 s for 24 images (a tenth of a `linear` run).
    """
    from PIL import Image

    n = max(1, len(images))
    cols = min(cols, n)
    rows = (n + cols - 1) // cols
    side, frame, gap, caption = 128, 3, 10, 34  # mosaic pixels: thumbnail, coloured frame, margin, two caption lines
    cell_w, cell_h = side + 2 * (frame + gap), side + 2 * frame + gap + caption
    mosaic = np.full((rows * cell_h, cols * cell_w, 3), 255, dtype=np.uint8)
    texts = []
    for k, (img, text, colour) in enumerate(zip(images, titles, colours)):
        thumb = square_thumb(img, side)
        if thumb.shape[0] != side:  # tiny images: enlarge without blurring their pixels
            thumb = np.asarray(Image.fromarray(thumb).resize((side, side), Image.Resampling.NEAREST))
        if thumb.ndim == 2:
            thumb = np.repeat(thumb[:, :, None], 3, axis=2)
        r, c = divmod(k, cols)
        y, x = r * cell_h + caption + frame, c * cell_w + gap + frame
        mosaic[y - frame : y + side + frame, x - frame : x + side + frame] = _rgb(colour)  # right/wrong at a glance
        mosaic[y : y + side, x : x + side] = thumb[:, :, :3]
        texts.append((x + side / 2, y - frame - 2, text, colour))
    scale = 1.5 / DPI  # inches per mosaic pixel: 128-px thumbnails drawn about 2 in wide, captions readable
    width, height = mosaic.shape[1] * scale, mosaic.shape[0] * scale + 0.45  # + the title
    fig = _figure(width, height, layout=None)
    ax = fig.add_axes((0, 0, 1, 1 - 0.45 / height))
    ax.imshow(mosaic, interpolation="antialiased")
    ax.axis("off")
    for x, y, text, colour in texts:
        ax.text(x, y, text, color=colour, fontsize=8.5, ha="center", va="bottom")
    if not len(images):
        ax.text(mosaic.shape[1] / 2, mosaic.shape[0] / 2, "nothing to show", ha="center", va="center")
    fig.suptitle(title)
    return _save(fig, path, photo=True)


def plot_gallery(
    images, labels, probs: np.ndarray, classes: Sequence[str], path: str | Path, n: int = 24, seed: int = 0
) -> Path:
    """A fixed random sample of evaluated images: predicted class and its probability, green if right, red if wrong."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(images), size=min(n, len(images)), replace=False)) if len(images) else []
    pred = probs.argmax(1)
    titles, colours = [], []
    for i in idx:
        ok = pred[i] == labels[i]
        text = f"{short(classes[pred[i]], 16)} ({probs[i, pred[i]]:.2f})"
        titles.append(text if ok else f"{text}\ntrue: {short(classes[labels[i]], 16)}")
        colours.append(RIGHT if ok else WRONG)
    right = int((pred[idx] == np.asarray(labels)[idx]).sum()) if len(idx) else 0
    return plot_image_grid(
        [images[i] for i in idx],
        titles,
        colours,
        path,
        f"Predictions: {right} of {len(idx)} right (green), wrong in red with the true class",
    )


def plot_top_losses(
    images, labels, probs: np.ndarray, losses: np.ndarray, classes: Sequence[str], path: str | Path, n: int = 12
) -> Path:
    """The n images with the highest loss: the most confidently wrong first (fastai's plot_top_losses)."""
    order = np.argsort(-np.asarray(losses))[:n]
    pred = probs.argmax(1)
    titles, colours = [], []
    for i in order:
        titles.append(
            f"{short(classes[pred[i]], 16)} ({probs[i, pred[i]]:.2f})\ntrue: {short(classes[labels[i]], 16)}"
            f" · loss {losses[i]:.2f}"
        )
        colours.append(RIGHT if pred[i] == labels[i] else WRONG)
    return plot_image_grid(
        [images[i] for i in order],
        titles,
        colours,
        path,
        "Top losses: predicted (probability), true class and loss",
        cols=4,
    )


def plot_reliability(
    bins_before: dict, bins_after: dict, ece: tuple[float, float], temperature: float, path: str | Path
) -> Path:
    """Accuracy against confidence per bin, before and after temperature scaling; the diagonal is perfect.

    Blue bars: accuracy in the bin. Red boxes: the gap to the bin's mean confidence, above the bar when the model is
    over-confident, inside it when under-confident. Below: how many images fall in each bin.
    """
    fig = _figure(10, 5.4)
    grid = fig.add_gridspec(2, 2, height_ratios=[3, 1])
    for k, (bins, title) in enumerate(
        (
            (bins_before, f"before (T = 1): ECE {ece[0]:.3f}"),
            (bins_after, f"after (T = {temperature:.2f}): ECE {ece[1]:.3f}"),
        )
    ):
        edges = np.asarray(bins["edges"])
        centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
        acc = np.array([np.nan if a is None else a for a in bins["accuracy"]])
        conf = np.array([np.nan if c is None else c for c in bins["confidence"]])
        full = ~np.isnan(acc)
        ax = fig.add_subplot(grid[0, k])
        ax.bar(centres[full], acc[full], width=width[full], color="#0969da", edgecolor="white", label="accuracy")
        ax.bar(
            centres[full],
            (conf - acc)[full],
            bottom=acc[full],
            width=width[full],
            facecolor=(0.81, 0.13, 0.18, 0.25),
            edgecolor=WRONG,
            linewidth=1.2,
            label="gap to mean confidence",
        )
        ax.plot([0, 1], [0, 1], "--", color="0.3", label="perfectly calibrated")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("accuracy")
        ax.set_title(title, fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
        hist = fig.add_subplot(grid[1, k], sharex=ax)
        counts = hist.bar(centres, bins["count"], width=width, color="0.55", edgecolor="white")
        hist.bar_label(counts, labels=[str(c) if c else "" for c in bins["count"]], fontsize=7, padding=1)
        hist.set_ylim(0, max(1, max(bins["count"])) * 1.3)  # room for the numbers over the tallest bar
        hist.set_xlabel("confidence (top probability)")
        hist.set_ylabel("images")
    fig.suptitle("Reliability diagram")
    return _save(fig, path)


def plot_comparison(
    rows, split: str, n_seeds: int, path: str | Path, score: str = "accuracy", percent: bool = True
) -> Path:
    """`compare`'s chart: the mean score per row (strategy @ backbone) with its 95% interval as error bars; the score
    and seconds per run on top. `rows` have label, mean, half (the interval's half-width) and seconds. percent: the
    score is a share (accuracy), drawn in %; else as it is (R², mAP)."""
    import math

    scale = 100 if percent else 1
    fig = _figure(max(5.0, 1.3 * len(rows) + 2), 4)
    ax = fig.add_subplot()
    xs = list(range(len(rows)))
    ax.bar(
        xs,
        [r.mean * scale for r in rows],
        yerr=[r.half * scale for r in rows],
        capsize=4,
        color=[RIGHT if i == 0 else TRAIN_C for i in xs],
    )
    for x, r in zip(xs, rows):
        ax.annotate(
            f"{r.mean:.1%}\n{r.seconds:.0f} s" if percent else f"{r.mean:.3f}\n{r.seconds:.0f} s",
            (x, (r.mean + r.half) * scale),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    low = min((r.mean - r.half) * scale for r in rows)
    if percent:
        ax.set_ylim(max(0.0, math.floor(low / 5) * 5 - 5), 115)  # zoomed in, so that a point's difference shows
        ax.set_yticks([t for t in ax.get_yticks() if t <= 100])  # the room above 100 is for the labels
    else:  # R² may be negative: from below the lowest interval to room above 1 for the labels
        ax.set_ylim(min(0.0, math.floor(low * 20) / 20 - 0.05), 1.15)
        ax.set_yticks([t for t in ax.get_yticks() if t <= 1])
    ax.set_xticks(xs, [r.label.replace(" @ ", "\n") for r in rows], fontsize=8)
    ax.set_ylabel(f"{split} {score}" + (" (%)" if percent else ""))
    ax.set_title(f"mean ± 95% interval over {n_seeds} repeat(s), wall time per run", fontsize=9)
    return _save(fig, path)


def plot_predicted_vs_true(true, predicted, target: str, path: str | Path) -> Path:
    """Regression: one dot per image, the diagonal where predictions are exact, R² and RMSE in the title."""
    y, p = np.asarray(true, float), np.asarray(predicted, float)
    total = float(((y - y.mean()) ** 2).sum()) if len(y) else 0.0
    r2 = 1 - float(((p - y) ** 2).sum()) / total if total > 0 else float("nan")
    fig = _figure(5.2, 5)
    ax = fig.subplots()
    ax.scatter(y, p, s=14, alpha=0.6, color=TRAIN_C, edgecolors="none")
    if len(y):
        lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
        pad = 0.03 * (hi - lo or 1.0)  # the extreme dots stay whole inside the axes
        lo, hi = lo - pad, hi + pad
        ax.plot([lo, hi], [lo, hi], color="0.4", ls="--", lw=1, label="exact")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.legend(loc="upper left", fontsize=9)
    rmse = float(np.sqrt(((p - y) ** 2).mean())) if len(y) else float("nan")
    ax.set_title(f"{short(target, 30)}: R² {r2:.3f}, RMSE {rmse:.3g} (n={len(y)})")
    ax.set_xlabel(f"true {short(target, 30)}")
    ax.set_ylabel("predicted")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_residuals(true, predicted, target: str, path: str | Path) -> Path:
    """Regression: residual (predicted - true) against the prediction, and the residuals' histogram."""
    y, p = np.asarray(true, float), np.asarray(predicted, float)
    res = p - y
    fig = _figure(10, 3.8)
    left, right = fig.subplots(1, 2)
    left.scatter(p, res, s=14, alpha=0.6, color=VAL_C, edgecolors="none")
    left.axhline(0, color="0.4", ls="--", lw=1)
    left.set_xlabel(f"predicted {short(target, 30)}")
    left.set_ylabel("predicted - true")
    left.grid(alpha=0.3)
    right.hist(res, bins=max(5, min(40, len(res) // 4 or 1)), color=VAL_C, alpha=0.8)
    right.axvline(0, color="0.4", ls="--", lw=1)
    right.set_xlabel("predicted - true")
    right.set_ylabel("images")
    mean = float(res.mean()) if len(res) else float("nan")
    right.set_title(f"mean {mean:+.3g}, std {float(res.std()) if len(res) else float('nan'):.3g}")
    return _save(fig, path)
