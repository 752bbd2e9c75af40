"""report.html: one self-contained page per run (plots embedded as base64 PNG, no scripts, no network).

    build_report("runs/hymenoptera-linear")      # redraws the plots made from the run's files, writes report.html
    transferkit report runs/hymenoptera-linear   # the same from the shell

Everything comes from files the run left: config.json, report.json, metrics.csv, split.csv, predictions.csv,
skipped.csv, doctor.json (when the data was checked) and plots/*.png. Every number in the page carries a
`data-key` attribute naming its place in report.json ("metrics.accuracy"), so tests and tools can check it.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import TransferkitError
from ..faults import write_atomic

PLOTS_DIR = "plots"
# (file in plots/, title, how to read it): the order of the "Plots" section.
PLOTS = (
    (
        "curves.png",
        "Training curves",
        "Loss and accuracy per epoch on train and val; the star marks the epoch kept as best/.",
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
SECTIONS = ("config", "data", "strategy", "metrics", "calibration", "plots", "misclassified")
MAX_MISCLASSIFIED = 100  # rows in the table; predictions.csv has them all
EMBED_AS_PNG_BELOW = 400_000  # bytes: plots are 20-100 kB; only photo grids are larger

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1100px;
  padding:1em 2em;color:#1f2328}
h1{margin-bottom:.1em} h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #d0d7de;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f6f8fa} td.n{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#656d76} .bad{color:#cf222e} .good{color:#1a7f37} figure{margin:1em 0} figcaption{color:#656d76}
img.plot{max-width:100%;border:1px solid #d0d7de} img.thumb{width:72px;height:72px;object-fit:cover}
nav a{margin-right:1em} pre{background:#f6f8fa;padding:.6em;overflow:auto;max-height:30em}
"""


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def num(value: Any, key: str, digits: int = 4) -> str:
    """A number cell tagged with its report.json key."""
    text = "n/a" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))
    return f'<td class="n" data-key="{esc(key)}">{esc(text)}</td>'


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


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


# ---- plots drawn from the run's files (the image plots need the decoded images; `finish_run` draws those) -------
def redraw_plots(run_dir: Path) -> list[Path]:
    from .plots import plot_confusion_matrix, plot_per_class, plot_reliability, plot_training_curves

    report = read_json(run_dir / "report.json") or {}
    config = read_json(run_dir / "config.json") or {}
    plots = run_dir / PLOTS_DIR
    made = []
    rows = read_csv(run_dir / "metrics.csv")
    if rows:
        made.append(plot_training_curves(rows, plots / "curves.png", best_epoch=report.get("best_epoch")))
    metrics, classes = report.get("metrics"), config.get("classes")
    if metrics and classes and metrics.get("confusion_matrix"):
        made.append(plot_confusion_matrix(metrics["confusion_matrix"], classes, plots / "confusion_matrix.png"))
        made.append(plot_per_class(metrics["per_class"], classes, plots / "per_class.png"))
    cal = report.get("calibration")
    if cal:
        made.append(
            plot_reliability(
                cal["bins_before"],
                cal["bins_after"],
                (cal["ece_before"], cal["ece_after"]),
                cal["temperature"],
                plots / "reliability.png",
            )
        )
    return made


# ---- sections --------------------------------------------------------------------------------------------------
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


def section_config(config: dict) -> str:
    body = kv_table(flatten(config.get("config", {})))
    versions = [(f"version of {k}", v) for k, v in config.get("versions", {}).items()]
    extra = [("platform", config.get("platform", ""))] + versions
    return body + "<h3>Environment</h3>" + kv_table(extra)


def section_data(run_dir: Path, config: dict, report: dict) -> str:
    resolved = config.get("resolved", {})
    classes = config.get("classes", [])
    parts = [
        kv_table(
            [
                ("data", config.get("config", {}).get("data", {}).get("path", "")),
                ("layout", resolved.get("layout", "")),
                ("classes", len(classes)),
                ("median short side of the images", f"{resolved.get('median_short_side', 0):.0f} px"),
                ("input size", f"{resolved.get('image_size', '?')} px"),
                ("unreadable files skipped", report.get("skipped", 0)),
            ]
        )
    ]
    split_rows = read_csv(run_dir / "split.csv")
    if split_rows:
        splits = list(dict.fromkeys(r["split"] for r in split_rows))
        counts = {(r["split"], r["class"]): 0 for r in split_rows}
        for r in split_rows:
            counts[(r["split"], r["class"])] += 1
        head = "".join(f"<th>{esc(s)}</th>" for s in splits)
        rows = "".join(
            f"<tr><td>{esc(c)}</td>" + "".join(f'<td class="n">{counts.get((s, c), 0)}</td>' for s in splits) + "</tr>"
            for c in classes
        )
        totals = "".join(f'<td class="n">{sum(counts.get((s, c), 0) for c in classes)}</td>' for s in splits)
        parts.append(
            f"<h3>Images per class and split</h3><table><tr><th>class</th>{head}</tr>{rows}"
            f"<tr><th>total</th>{totals}</tr></table>"
        )
    skipped = read_csv(run_dir / "skipped.csv")
    if skipped:
        rows = "".join(
            f"<tr><td>{esc(r['split'])}</td><td>{esc(r['key'])}</td><td>{esc(r['reason'])}</td></tr>"
            for r in skipped[:50]
        )
        parts.append(f"<h3>Skipped files</h3><table><tr><th>split</th><th>file</th><th>reason</th></tr>{rows}</table>")
    parts.append("<h3>Data check (doctor)</h3>" + doctor_summary(read_json(run_dir / "doctor.json")))
    return "".join(parts)


def doctor_summary(doctor: dict | None) -> str:
    """doctor.json as far as it can be read: its facts (sizes, modes, imbalance, ...), its problems, the rest folded."""
    if doctor is None:
        return (
            '<p class="muted">No doctor.json in this run: the data was not checked '
            "(run <code>transferkit doctor DATA</code>).</p>"
        )
    out = []
    if isinstance(doctor.get("summary"), str):
        out.append(f"<p>{esc(doctor['summary'])}</p>")
    # Per-class counts are in the table above; the problems get their own table below.
    facts = flatten({k: v for k, v in doctor.items() if k not in ("summary", "problems", "classes", "counts", "root")})
    if facts:
        out.append(kv_table(facts[:40]))
    problems = doctor.get("problems") if isinstance(doctor.get("problems"), list) else []
    if problems:
        rows = []
        for p in problems[:100]:
            p = p if isinstance(p, dict) else {"message": p}
            files = p.get("files") or []
            files = [files] if isinstance(files, str) else list(files)
            shown = "<br>".join(esc(f) for f in files[:5]) + (
                f"<br>... {len(files) - 5} more" if len(files) > 5 else ""
            )
            level = p.get("severity", "")
            css = "bad" if level == "error" else ""
            rows.append(
                f'<tr><td class="{css}">{esc(level)}</td><td>{esc(p.get("code", ""))}</td>'
                f"<td>{esc(p.get('message', ''))}</td><td>{shown}</td><td>{esc(p.get('action', ''))}</td></tr>"
            )
        out.append(
            "<table><tr><th>level</th><th>kind</th><th>problem</th><th>files</th><th>what to do</th></tr>"
            + "".join(rows)
            + "</table>"
        )
    else:
        out.append('<p class="good">No problems found.</p>')
    out.append(
        f"<details><summary>doctor.json</summary><pre>{esc(json.dumps(doctor, indent=2)[:20000])}</pre></details>"
    )
    return "".join(out)


def section_strategy(config: dict, report: dict) -> str:
    resolved = config.get("resolved", {})
    return kv_table(
        [
            ("strategy", report.get("strategy", resolved.get("strategy", ""))),
            ("why", report.get("strategy_reason", resolved.get("strategy_reason", ""))),
            ("backbone", report.get("backbone", resolved.get("backbone_cfg", {}).get("name", ""))),
            ("input size", f"{report.get('image_size', resolved.get('image_size', '?'))} px"),
            ("best epoch", report.get("best_epoch")),
            ("run time (decoding, training, evaluation)", f"{report.get('seconds', 0):.1f} s"),
        ]
    )


def section_metrics(report: dict, classes: list[str]) -> str:
    m = report.get("metrics")
    if not m:
        return '<p class="muted">No metrics: the run did not finish (no report.json).</p>'
    columns = (
        ("n", "images"),
        ("accuracy", "accuracy"),
        ("loss", "loss"),
        ("macro_precision", "macro precision"),
        ("macro_recall", "macro recall"),
        ("macro_f1", "macro F1"),
    )
    head = (
        f"<p>On the <b>{esc(report.get('split', '?'))}</b> split, best model (best/).</p><table><tr>"
        + "".join(f"<th>{title}</th>" for _, title in columns)
        + "</tr><tr>"
        + "".join(num(m.get(key), f"metrics.{key}") for key, _ in columns)
        + "</tr></table>"
    )
    rows = "".join(
        f"<tr><td>{esc(c)}</td>"
        + "".join(
            num(m["per_class"][c][k], f"metrics.per_class.{c}.{k}", 3) for k in ("precision", "recall", "f1", "support")
        )
        + "</tr>"
        for c in classes
        if c in m.get("per_class", {})
    )
    table = f"<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>{rows}</table>"
    cm = m.get("confusion_matrix") or []
    cm_html = ""
    if cm and len(classes) <= 30:
        cm_html = (
            "<h3>Confusion matrix (rows true, columns predicted)</h3><table><tr><th></th>"
            + "".join(f"<th>{esc(c)}</th>" for c in classes)
            + "</tr>"
            + "".join(
                f"<tr><th>{esc(c)}</th>"
                + "".join(num(v, f"metrics.confusion_matrix.{i}.{j}") for j, v in enumerate(row))
                + "</tr>"
                for i, (c, row) in enumerate(zip(classes, cm))
            )
            + "</table>"
        )
    return head + "<h3>Per class</h3>" + table + cm_html


def section_calibration(report: dict) -> str:
    cal = report.get("calibration")
    if not cal:
        return '<p class="muted">No calibration in report.json.</p>'
    intro = (
        f"<p>Temperature scaling: the logits are divided by one number fitted on the {esc(cal['fitted_on'])} "
        f"split ({cal['fitted_n']} images) by minimising the negative log-likelihood. The top class (and "
        f"accuracy) does not change; the probabilities <code>predict</code> reports do. Measured on the "
        f"{esc(cal['measured_on'])} split.</p>"
    )
    if cal["measured_on"] == cal["fitted_on"]:
        intro += (
            '<p class="muted">The run has no test split, so calibration is measured on the split it was fitted '
            "on: an optimistic figure.</p>"
        )
    if cal.get("note"):
        intro += f'<p class="bad">{esc(cal["note"])}</p>'
    rows = [
        ("temperature", '<td class="n">1</td>' + num(cal["temperature"], "calibration.temperature")),
        (
            "expected calibration error",
            num(cal["ece_before"], "calibration.ece_before") + num(cal["ece_after"], "calibration.ece_after"),
        ),
        (
            "negative log-likelihood",
            num(cal["nll_before"], "calibration.nll_before") + num(cal["nll_after"], "calibration.nll_after"),
        ),
    ]
    return (
        intro
        + "<table><tr><th></th><th>before (T = 1)</th><th>after</th></tr>"
        + "".join(f"<tr><th>{name}</th>{cells}</tr>" for name, cells in rows)
        + "</table>"
    )


def section_plots(run_dir: Path) -> str:
    out = []
    for name, title, how in PLOTS:
        path = run_dir / PLOTS_DIR / name
        if path.is_file():
            out.append(
                f'<figure id="plot-{esc(path.stem)}"><h3>{esc(title)}</h3><img class="plot" alt="{esc(title)}" '
                f'src="{embed_png(path)}"><figcaption>{esc(how)}</figcaption></figure>'
            )
        else:
            out.append(f'<p class="muted">{esc(title)}: not available ({esc(name)} was not drawn).</p>')
    return "".join(out)


def section_misclassified(run_dir: Path) -> str:
    rows = read_csv(run_dir / "predictions.csv")
    if not rows:
        return '<p class="muted">No predictions.csv in this run.</p>'
    wrong = sorted((r for r in rows if r["correct"] == "0"), key=lambda r: -float(r["loss"]))
    if not wrong:
        return f'<p class="good">None: all {len(rows)} evaluated images are right.</p>'
    body = []
    for r in wrong[:MAX_MISCLASSIFIED]:
        thumb = thumbnail(r["key"])
        img = f'<img class="thumb" alt="{esc(Path(r["key"]).name)}" src="{thumb}">' if thumb else ""
        body.append(
            f'<tr><td>{img}</td><td>{esc(r["key"])}</td><td>{esc(r["true"])}</td><td class="bad">'
            f'{esc(r["predicted"])}</td><td class="n">{float(r["probability"]):.3f}</td>'
            f'<td class="n">{float(r["p_true"]):.3f}</td></tr>'
        )
    more = len(wrong) - MAX_MISCLASSIFIED
    return (
        f"<p>{len(wrong)} of {len(rows)} evaluated images are wrong, the most confident mistakes first"
        f"{f' (the first {MAX_MISCLASSIFIED} here; all in predictions.csv)' if more > 0 else ''}.</p>"
        "<table><tr><th></th><th>file</th><th>true</th><th>predicted</th><th>probability</th><th>p(true)</th></tr>"
        + "".join(body)
        + "</table>"
    )


def render_html(run_dir: Path) -> str:
    config = read_json(run_dir / "config.json") or {}
    report = read_json(run_dir / "report.json") or {}
    classes = config.get("classes", [])
    m = report.get("metrics", {})
    headline = (
        f"{esc(report.get('split', ''))} accuracy <b>{m['accuracy']:.4f}</b>, "
        f"macro F1 {m.get('macro_f1', 0):.4f} on {m.get('n', 0)} images"
        if m
        else "unfinished run"
    )
    titles = {
        "config": "Configuration",
        "data": "Data",
        "strategy": "Strategy",
        "metrics": "Metrics",
        "calibration": "Calibration",
        "plots": "Plots",
        "misclassified": "Misclassified examples",
    }
    bodies = {
        "config": section_config(config),
        "data": section_data(run_dir, config, report),
        "strategy": section_strategy(config, report),
        "metrics": section_metrics(report, classes),
        "calibration": section_calibration(report),
        "plots": section_plots(run_dir),
        "misclassified": section_misclassified(run_dir),
    }
    nav = "".join(f'<a href="#{s}">{titles[s]}</a>' for s in SECTIONS)
    sections = "".join(f'<section id="{s}"><h2>{titles[s]}</h2>{bodies[s]}</section>' for s in SECTIONS)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>transferkit report: {esc(run_dir.name)}</title><style>{CSS}</style></head>"
        f"<body><h1>{esc(run_dir.name)}</h1>"
        f'<p class="muted">transferkit run in {esc(run_dir.resolve())}, report written '
        f"{datetime.now():%Y-%m-%d %H:%M}. {headline}.</p><nav>{nav}</nav>{sections}</body></html>\n"
    )


def build_report(run_dir: str | Path, redraw: bool = True) -> Path:
    """(Re)draw the plots made from the run's files and write run_dir/report.html; returns its path."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise TransferkitError(
            f"'{run_dir}' is not a run directory (it has no config.json). Give the folder that `train` printed last."
        )
    if redraw:
        redraw_plots(run_dir)
    path = run_dir / "report.html"
    write_atomic(path, render_html(run_dir))  # a unique temp name: two `report` commands on one run never collide
    return path
