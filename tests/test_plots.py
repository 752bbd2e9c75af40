"""Plots: each writes a real PNG of a sensible size, and class names never overlap in a 10-class confusion matrix."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from transferkit.evaluation import plots
from transferkit.evaluation.calibration import reliability_bins, softmax

CLASSES10 = [
    "golden_retriever",
    "tabby_cat",
    "goldfish",
    "great_white_shark",
    "tree_frog",
    "loggerhead_turtle",
    "african_elephant",
    "red_fox",
    "monarch_butterfly",
    "the_longest_class_name_in_this_set",
]


def check_png(path, min_kb=5, max_kb=3000, min_side=300):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert min_kb * 1024 < len(data) < max_kb * 1024, f"{path.name}: {len(data)} bytes"
    with Image.open(path) as img:
        assert min(img.size) >= min_side, img.size


@pytest.fixture
def drawn(monkeypatch):
    """Keeps every figure a plot function saves, so tests can measure its text."""
    figures = []
    save = plots._save

    def keep(fig, path, **kw):
        figures.append(fig)
        return save(fig, path, **kw)

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def overlapping(texts) -> list[tuple[str, str]]:
    """Pairs of horizontal labels whose boxes overlap."""
    boxes = [(t.get_text(), t.get_window_extent()) for t in texts if t.get_text() and t.get_visible()]
    return [(a, b) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1 :] if ba.overlaps(bb)]


def slanted_labels_clear(ax, renderer) -> bool:
    """Slanted x labels are parallel strips one tick apart: they clear each other when the gap across the strips,
    tick distance x sin(angle), is at least the text height (their boxes overlap anyway, so boxes cannot tell)."""
    labels = [t for t in ax.get_xticklabels() if t.get_text()]
    angle = np.radians(labels[0].get_rotation())
    xs = ax.transData.transform([(x, 0) for x in ax.get_xticks()])[:, 0]
    step = np.abs(np.diff(xs)).min()
    sizes = [renderer.get_text_width_height_descent(t.get_text(), t.get_fontproperties(), ismath=False) for t in labels]
    if angle == 0:
        return all(step >= (a[0] + b[0]) / 2 for a, b in zip(sizes, sizes[1:]))
    return step * np.sin(angle) >= max(h for _, h, _ in sizes)


def test_confusion_matrix_10_classes_readable(tmp_path, drawn):
    rng = np.random.default_rng(0)
    cm = np.diag(rng.integers(20, 40, 10)) + (rng.random((10, 10)) < 0.2) * rng.integers(1, 5, (10, 10))
    path = plots.plot_confusion_matrix(cm, CLASSES10, tmp_path / "cm.png")
    check_png(path)
    fig = drawn[-1]
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # lays the figure out as saved (constrained layout), so text positions are final
    renderer = canvas.get_renderer()
    figure_box = fig.bbox
    for ax in fig.axes:
        assert slanted_labels_clear(ax, renderer)
        assert not overlapping(ax.get_yticklabels()), overlapping(ax.get_yticklabels())
        for axis_labels in (ax.get_xticklabels(), ax.get_yticklabels()):
            for t in axis_labels:  # nothing clipped: every class name inside the image
                box = t.get_window_extent(renderer)
                assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= figure_box.x1 + 1 and box.y1 <= figure_box.y1 + 1
    names = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "golden_retriever" in names and any(n.endswith("…") for n in names)  # long names cut, not overflowing


def test_curves_per_class_and_reliability(tmp_path):
    rows = [
        {
            "epoch": e,
            "phase": "head" if e <= 2 else "finetune",
            "train_loss": 1 / e,
            "train_acc": 0.5 + e / 20,
            "val_loss": 1.2 / e,
            "val_acc": 0.5 + e / 25,
            "best": e == 4,
        }
        for e in range(1, 7)
    ]
    check_png(plots.plot_training_curves(rows, tmp_path / "curves.png", best_epoch=4))
    check_png(plots.plot_training_curves(rows[:1], tmp_path / "one.png", best_epoch=1))  # a linear probe: one row
    per_class = {c: {"precision": 0.9, "recall": 0.8, "f1": 0.85, "support": 12} for c in CLASSES10}
    check_png(plots.plot_per_class(per_class, CLASSES10, tmp_path / "per_class.png"))
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(0, 3, (300, 4)), rng.integers(0, 4, 300)
    before, after = reliability_bins(softmax(logits), labels), reliability_bins(softmax(logits, 3.0), labels)
    check_png(plots.plot_reliability(vars(before), vars(after), (0.3, 0.1), 3.0, tmp_path / "rel.png"))


def test_gallery_and_top_losses(tmp_path, drawn):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (73, 90, 3), dtype=np.uint8) for _ in range(30)]
    labels = rng.integers(0, 3, 30)
    probs = softmax(rng.normal(0, 2, (30, 3)))
    classes = ["ants", "bees", "a_class_with_a_very_long_name"]
    check_png(plots.plot_gallery(images, labels, probs, classes, tmp_path / "gallery.png", n=12))
    captions = drawn[-1].axes[0].texts
    assert len(captions) == 12
    assert {t.get_color() for t in captions} <= {plots.RIGHT, plots.WRONG}
    wrong = sum(probs[i].argmax() != labels[i] for i in np.sort(np.random.default_rng(0).choice(30, 12, replace=False)))
    assert sum("true:" in t.get_text() for t in captions) == wrong  # only the mistakes name the true class
    losses = -np.log(probs[np.arange(30), labels])
    check_png(plots.plot_top_losses(images, labels, probs, losses, classes, tmp_path / "top.png", n=8))
    first = drawn[-1].axes[0].texts[0].get_text()
    assert f"loss {losses.max():.2f}" in first  # the worst image comes first
    # No images at all still gives a picture that says so, not a crash.
    check_png(
        plots.plot_gallery([], np.zeros(0, int), np.zeros((0, 3)), classes, tmp_path / "empty.png"),
        min_kb=1,
        min_side=50,
    )
