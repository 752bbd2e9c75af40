"""The building blocks of report.html: escaping, numbers tagged with their report.json key, embedded plots and
thumbnails, tables, and the run's files read leniently. report.py lays out the page; each task's sections
(sections.py) are made of these.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path
from typing import Any

from . import multilabel, regression

PLOTS_DIR = "plots"


# (file in plots/, title, how to read it): every plot a run may have; each section embeds its own.
PLOTS = (
    (
        "curves.png",
        "Training curves",
        "Loss and the task's score (accuracy, R², mAP) per epoch on train and val; the star marks the epoch "
        "kept as best/.",
    ),
    (
        "confusion_matrix.png",
        "Confusion matrix",
        "Rows are true classes, columns predictions; right: each row divided by its total (recall).",
    ),
    (
        "per_class.png",
        "Per-class precision, recall and F1",
        "Low recall: the class is missed; low precision: other classes are called this one.",
    ),
    (
        "gallery.png",
        "Prediction gallery",
        "A fixed random sample of evaluated images: green right, red wrong (with the true class). "
        "Probabilities are calibrated.",
    ),
    (
        "top_losses.png",
        "Top losses",
        "The images the model got most confidently wrong (or least confidently right): look here for label errors.",
    ),
    (
        "reliability.png",
        "Reliability diagram",
        "Bars on the diagonal: the probabilities can be taken at face value. Bars below it: over-confident.",
    ),
)


PLOTS += regression.PLOTS + multilabel.PLOTS  # the tasks' own plots (their modules draw and describe them)


EMBED_AS_PNG_BELOW = 400_000  # bytes: plots are 20-100 kB; only photo grids are larger


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def num(value: Any, key: str, digits: int = 4) -> str:
    """A number cell tagged with its report.json key."""
    text = "n/a" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))
    return f'<td class="n" data-key="{esc(key)}">{esc(text)}</td>'


def read_json(path: Path) -> dict | None:
    """A run's JSON file as a dict; None when it is missing, not JSON or not an object (edited or damaged): the
    page then says what it lacks rather than failing on it."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def embed_png(path: Path) -> str:
    """A data URI of a plot. Photo grids (the gallery: ~2 MB as PNG) go in as JPEG, ~5x smaller, so the page stays
    light enough to mail; line plots stay PNG, where JPEG would blur the text."""
    data = path.read_bytes()
    if len(data) <= EMBED_AS_PNG_BELOW:
        return "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    from PIL import Image

    buf = io.BytesIO()
    with Image.open(path) as img:
        img.convert("RGB").save(buf, "JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def thumbnail(key: str, size: int = 96) -> str | None:
    """A small JPEG data URI of an image file, or None when the key is not a readable file (arrays, moved files)."""
    from PIL import Image, ImageOps

    path = Path(key)
    try:
        if not path.is_file():
            return None
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
            img.thumbnail((size, size))
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=80)
    except Exception:  # noqa: BLE001 - an unreadable file just gets no thumbnail
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def kv_table(pairs) -> str:
    return "<table>" + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in pairs) + "</table>"


def flatten(d: dict, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += flatten(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v if not isinstance(v, list) else ", ".join(map(str, v))))
    return out


def figure(run_dir: Path, name: str) -> str:
    """One plot of PLOTS embedded with its title and how to read it; '' when the run has not drawn it."""
    path = run_dir / PLOTS_DIR / name
    title, how = next((t, h) for n, t, h in PLOTS if n == name)
    if not path.is_file():
        return ""
    return (
        f'<figure id="plot-{esc(path.stem)}"><h3>{esc(title)}</h3><img class="plot" alt="{esc(title)}" '
        f'src="{embed_png(path)}"><figcaption>{esc(how)}</figcaption></figure>'
    )


def tagged(value: Any, key: str, digits: int = 4, tag: str = "b") -> str:
    """A number in running text tagged with its report.json key (as `num` tags a table cell)."""
    text = "n/a" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))
    return f'<{tag} data-key="{esc(key)}">{esc(text)}</{tag}>'


def rows_table(rows: list[dict]) -> str:
    """A list of records (candidates measured, folds, ...) as one table, columns in first-seen order."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{r[c]:.4g}</td>' if isinstance(r.get(c), float) else f"<td>{esc(r.get(c, ''))}</td>"
            for c in columns
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"
