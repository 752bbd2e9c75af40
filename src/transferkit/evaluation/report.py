"""report.html: one self-contained page per run (plots embedded as base64 PNG, no scripts, no network).

    build_report("runs/hymenoptera-linear")      # redraws the plots made from the run's files, writes report.html
    transferkit report runs/hymenoptera-linear   # the same from the shell

Everything comes from files the run left: config.json, report.json, metrics.csv, split.csv, predictions.csv,
skipped.csv, doctor.json (when the data was checked) and plots/*.png. Every number in the page carries a
`data-key` attribute naming its place in report.json ("metrics.accuracy"), so tests and tools can check it.

The page opens with what a person looks for first: the headline metric with its 95% interval (and whether the split
can tell two strategies apart), what was decided and why; then the task's own results (for classification the
confusion matrix and per-class figures), the mistakes, what was measured to choose (the advisor's numbers, the head
solvers, the training curves when there was more than one epoch), calibration, the data, and the configuration
folded at the end. Each task's parts come from TASK_SECTIONS (task name -> its headline, results and mistakes).
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
from . import multilabel, regression

PLOTS_DIR = "plots"
# (file in plots/, title, how to read it): every plot a run may have; each section embeds its own.
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
PLOTS += regression.PLOTS + multilabel.PLOTS  # the tasks' own plots (their modules draw and describe them)
# The page's order: the result first, the configuration last (folded).
SECTIONS = ("result", "metrics", "mistakes", "choice", "calibration", "data", "config")
TITLES = {
    "result": "Result",
    "metrics": "Results in detail",
    "mistakes": "Mistakes",
    "choice": "How it was chosen",
    "calibration": "Calibration",
    "data": "Data",
    "config": "Configuration",
}
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
p.headline{font-size:1.35em;margin:.4em 0} details>summary{cursor:pointer;color:#0969da}
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
    if len(rows) > 1:
        made.append(plot_training_curves(rows, plots / "curves.png", best_epoch=report.get("best_epoch")))
    else:  # one epoch (a head on cached features) is one point: no curve; the page shows what was measured instead
        (plots / "curves.png").unlink(missing_ok=True)
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
    made += task_parts(report).get("redraw", lambda _: [])(run_dir)  # the task's plots from predictions.csv
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
    """Every option as it was set, folded: what a person reads last (the versions help a bug report)."""
    options = flatten(config.get("config", {}))
    versions = [(f"version of {k}", v) for k, v in config.get("versions", {}).items()]
    extra = [("platform", config.get("platform", ""))] + versions
    return (
        f"<details><summary>All {len(options)} options of this run, and the environment</summary>"
        f"{kv_table(options)}<h3>Environment</h3>{kv_table(extra)}</details>"
    )


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


def classification_headline(report: dict) -> str:
    """'test accuracy 0.9133 (95% interval 0.8583-0.9489) on 150 images', and what the split can resolve."""
    m = report["metrics"]
    split = esc(report.get("split", "?"))
    out = f'<p class="headline">{split} accuracy {tagged(m.get("accuracy"), "metrics.accuracy")}'
    iv = m.get("interval")
    if iv:
        out += (
            f' <span class="muted">(95% interval {tagged(iv["low"], "metrics.interval.low", tag="span")}'
            f"&ndash;{tagged(iv['high'], 'metrics.interval.high', tag='span')}, Wilson)</span>"
        )
    out += (
        f" on {tagged(m.get('n'), 'metrics.n', tag='span')} images; macro F1 "
        f"{tagged(m.get('macro_f1'), 'metrics.macro_f1', tag='span')}</p>"
    )
    if iv:
        css = "good" if iv["separates"] else "bad"
        out += f'<p class="{css}">{esc(iv["note"])}.</p>'
    if report.get("split") == "val":
        out += (
            '<p class="bad">The data has no test split: this is measured on val, which also picked the best '
            "epoch and the head, so it is optimistic. Give --split with a test share (or use --cv) for an honest "
            "figure.</p>"
        )
    return out


def cv_summary(report: dict) -> str:
    """The --cv estimate: mean and 95% interval over the folds, each fold's figure folded below."""
    cv = report.get("cv")
    if not cv:
        return ""
    metrics = cv.get("metrics", {})
    key = "accuracy" if "accuracy" in metrics else next(iter(metrics), None)
    if key is None:
        return ""
    m = metrics[key]
    untouched = "; the test split untouched" if cv.get("folded") == "train+val" else ""
    pooled = cv.get("pooled")
    pooled_text = (
        f"; pooled over every held-out image {tagged(pooled['accuracy'], 'cv.pooled.accuracy', tag='span')} "
        f"(95% interval {tagged(pooled['low'], 'cv.pooled.low', tag='span')}&ndash;"
        f"{tagged(pooled['high'], 'cv.pooled.high', tag='span')}, Wilson)"
        if pooled
        else ""
    )
    line = (
        f"<p><b>{cv['k']}-fold cross-validation</b> on {esc(cv['folded'])} ({cv['n']} held-out images, each scored "
        f"once{untouched}): {esc(key)} {tagged(m['mean'], f'cv.metrics.{key}.mean')}"
        f" (95% interval over folds {tagged(m['low'], f'cv.metrics.{key}.low', tag='span')}&ndash;"
        f"{tagged(m['high'], f'cv.metrics.{key}.high', tag='span')}){pooled_text}.</p>"
    )
    rows = "".join(
        f"<tr><td>{f['fold']}</td><td>{esc(f.get('strategy', ''))}</td>"
        + num(f.get("n"), f"cv.folds.{i}.n")
        + num(f.get(key), f"cv.folds.{i}.{key}")
        + f"<td>{esc(f.get('path', ''))}</td></tr>"
        for i, f in enumerate(cv.get("folds", []))
    )
    return line + (
        f"<details><summary>Each fold</summary><table><tr><th>fold</th><th>strategy</th><th>images</th>"
        f"<th>{esc(key)}</th><th>run</th></tr>{rows}</table></details>"
    )


def generic_headline(report: dict) -> str:
    """A task without a headline of its own: its numbers, as report.json has them."""
    m = report["metrics"]
    shown = [(k, v) for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return (
        f'<p class="headline">{esc(report.get("split", "?"))}: '
        + ", ".join(f"{esc(k)} {tagged(v, f'metrics.{k}', tag='span')}" for k, v in shown)
        + "</p>"
    )


def section_result(run_dir: Path, config: dict, report: dict) -> str:
    """What a person looks for first: the headline metric with its interval, then what was decided and why."""
    if not report.get("metrics"):
        return '<p class="muted">No metrics: the run did not finish (no report.json).</p>'
    resolved = config.get("resolved", {})
    parts = task_parts(report)
    decided = kv_table(
        [
            ("strategy", report.get("strategy", resolved.get("strategy", ""))),
            ("why", report.get("strategy_reason", resolved.get("strategy_reason", ""))),
            ("backbone", report.get("backbone", resolved.get("backbone_cfg", {}).get("name", ""))),
            ("input size", f"{report.get('image_size', resolved.get('image_size', '?'))} px"),
            ("best epoch", report.get("best_epoch")),
            ("run time (decoding, training, evaluation)", f"{report.get('seconds', 0):.1f} s"),
        ]
    )
    return parts["headline"](report) + cv_summary(report) + "<h3>What was decided</h3>" + decided


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


# What `auto` measured, as labels people read (the rest of the advice is shown under its own name).
ADVICE_LABELS = {
    "n_train": "training images",
    "n_classes": "classes",
    "per_class": "training images per class (decides the size band)",
    "smallest_class": "images in the rarest class",
    "median_side": "median short side of the images (px)",
    "image_size": "input size chosen (px)",
    "shift": "domain shift from ImageNet (BatchNorm statistics; decides similar or different)",
    "probe_acc": "frozen-feature probe of the chosen candidate (5-fold over train+val up to 2,000 images, else val)",
    "chance_acc": "val accuracy of always answering the commonest class",
    "size": "size band",
    "similar": "similar to ImageNet",
    "strategy": "strategy chosen",
    "backbone_lr_mult": "backbone LR / head LR",
    "backbone": "backbone chosen",
    "seconds": "measuring took (s)",
    "budget_minutes": "--budget (minutes)",
    "train_estimate_seconds": "estimated training time at the choice, every epoch (s)",
}


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


def advice_html(advice: dict) -> str:
    """The advisor's measurements: scalars in one table, any list of candidates it measured in a table each."""
    pairs, lists = [], []
    for key, value in advice.items():
        if key == "reason":
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lists.append(f"<h4>{esc(key.replace('_', ' '))}</h4>" + rows_table(value))
        elif not isinstance(value, (dict, list)):
            shown = f"{value:.4g}" if isinstance(value, float) else value
            pairs.append((ADVICE_LABELS.get(key, key.replace("_", " ")), "n/a" if value is None else shown))
    return kv_table(pairs) + "".join(lists)


def solver_how(v: dict) -> str:
    return f"L2 {v['l2']:.0e} picked on val" if "l2" in v else f"{v.get('passes', '?')} passes, early stopping on val"


def head_solvers_html(solvers: dict) -> str:
    rows = "".join(
        f"<tr><td>{esc(name)}</td>"
        + num(v.get("val_acc"), f"head_solvers.{name}.val_acc")
        + num(v.get("val_loss"), f"head_solvers.{name}.val_loss")
        + f"<td>{esc(solver_how(v))}</td>"
        + num(v.get("seconds"), f"head_solvers.{name}.seconds", 2)
        + f'<td class="{"good" if v.get("kept") else ""}">{"kept" if v.get("kept") else ""}</td></tr>'
        for name, v in solvers.items()
    )
    return (
        "<h3>Head solvers</h3><p>Both fitted on the same cached features; the more accurate on val is kept (ties: "
        "the lower val loss).</p><table><tr><th>solver</th><th>val accuracy</th><th>val loss</th><th>how</th>"
        f"<th>seconds</th><th></th></tr>{rows}</table>"
    )


def section_choice(run_dir: Path, config: dict, report: dict) -> str:
    """What was measured to choose: the advisor's numbers (auto), the head solvers (cached phases), candidates any
    chooser saved under report.json's "selection", and the training curves when there was more than one epoch."""
    out = []
    advice = config.get("advice")
    if advice:
        out.append(
            f"<h3>What <code>auto</code> measured</h3><p>{esc(advice.get('reason', ''))}.</p>" + advice_html(advice)
        )
    else:
        strategy = report.get("strategy", config.get("resolved", {}).get("strategy", ""))
        out.append(
            f"<p>The strategy was given (<code>--strategy {esc(strategy)}</code>): nothing was measured to choose it.</p>"
        )
    selection = report.get("selection")
    if isinstance(selection, list) and selection and all(isinstance(r, dict) for r in selection):
        out.append("<h3>Candidates measured</h3>" + rows_table(selection))
    if report.get("head_solvers"):
        out.append(head_solvers_html(report["head_solvers"]))
    epochs = len(read_csv(run_dir / "metrics.csv"))
    curves = figure(run_dir, "curves.png")
    if curves and epochs > 1:
        out.append(curves)
    else:
        out.append(
            f'<p class="muted">{epochs} epoch{"" if epochs == 1 else "s"} recorded: no training curve to draw '
            "(a head fitted on cached features is one step; what was measured to fit it is above).</p>"
        )
    return "".join(out)


def section_mistakes(run_dir: Path, report: dict) -> str:
    return figure(run_dir, "top_losses.png") + section_misclassified(run_dir) + figure(run_dir, "gallery.png")


def section_classification(run_dir: Path, report: dict, classes: list[str]) -> str:
    """The confusion matrix (figure and numbers), the metrics table and the per-class figure and numbers."""
    return figure(run_dir, "confusion_matrix.png") + section_metrics(report, classes) + figure(run_dir, "per_class.png")


def generic_results(run_dir: Path, report: dict, classes: list[str]) -> str:
    m = report.get("metrics", {})
    return kv_table(flatten({k: v for k, v in m.items() if k != "interval"}))


# ---- regression (numbers in evaluation/regression.py) ------------------------------------------------------
REGRESSION_COLUMNS = (
    ("n", "images"),
    ("r2", "R²"),
    ("rmse", "RMSE"),
    ("mae", "MAE"),
    ("pearson", "Pearson r"),
    ("spearman", "Spearman ρ"),
    ("rmse_of_mean", "RMSE of the mean"),
    ("loss", "loss (standardised)"),
)


def regression_metrics_table(report: dict, classes: list[str]) -> str:
    """The report's Metrics section for a regression run: the numbers, and the largest errors."""

    m = report.get("metrics") or {}
    target = classes[0] if classes else "target"
    return (
        f"<p>Predicting <b>{esc(target)}</b> on the <b>{esc(report.get('split', '?'))}</b> split, best model (best/). "
        "R² 0 is what always answering the training mean scores; RMSE of the mean is that baseline's error.</p>"
        "<table><tr>"
        + "".join(f"<th>{title}</th>" for _, title in REGRESSION_COLUMNS)
        + "</tr><tr>"
        + "".join(num(m.get(key), f"metrics.{key}") for key, _ in REGRESSION_COLUMNS)
        + "</tr></table>"
    )


def regression_errors(run_dir: Path, limit: int = 20) -> str:
    """The images with the largest absolute errors (predictions.csv holds them all)."""

    found = regression.read_predictions(run_dir)
    if found is None:
        return '<p class="muted">No predictions.csv in this run.</p>'
    keys, y, p = found
    order = sorted(range(len(keys)), key=lambda i: -abs(p[i] - y[i]))[:limit]  # the largest errors first
    body = []
    for i in order:
        thumb = thumbnail(keys[i])
        img = f'<img class="thumb" alt="{esc(Path(keys[i]).name)}" src="{thumb}">' if thumb else ""
        body.append(
            f'<tr><td>{img}</td><td>{esc(keys[i])}</td><td class="n">{y[i]:.4g}</td><td class="n">{p[i]:.4g}</td>'
            f'<td class="n">{p[i] - y[i]:+.4g}</td></tr>'
        )
    return (
        f"<p>The {len(order)} largest errors of {len(keys)} evaluated images (all in predictions.csv).</p>"
        "<table><tr><th></th><th>file</th><th>true</th><th>predicted</th><th>error</th></tr>"
        + "".join(body)
        + "</table>"
    )


def regression_headline(report: dict) -> str:
    """The page's first line: 'test R² 0.5120 on 81 images; RMSE 0.61 against 0.87 for the training mean'."""

    m = report["metrics"]
    out = (
        f'<p class="headline">{esc(report.get("split", "?"))} R² {tagged(m.get("r2"), "metrics.r2")} on '
        f"{tagged(m.get('n'), 'metrics.n', tag='span')} images; RMSE {tagged(m.get('rmse'), 'metrics.rmse', tag='span')}"
        f" against {tagged(m.get('rmse_of_mean'), 'metrics.rmse_of_mean', tag='span')} for always answering the "
        f"training mean; MAE {tagged(m.get('mae'), 'metrics.mae', tag='span')}</p>"
    )
    if report.get("split") == "val":
        out += (
            '<p class="bad">The data has no test split: this is measured on val, which also picked the best epoch '
            "and the ridge penalty, so it is optimistic.</p>"
        )
    return out


def regression_results(run_dir: Path, report: dict, classes: list[str]) -> str:

    return (
        regression_metrics_table(report, classes)
        + figure(run_dir, "predicted_vs_true.png")
        + figure(run_dir, "residuals.png")
    )


def regression_mistakes(run_dir: Path, report: dict) -> str:
    return regression_errors(Path(run_dir))


# ---- multi-label (numbers in evaluation/multilabel.py) -----------------------------------------------------
MULTILABEL_COLUMNS = (
    ("n", "images"),
    ("map", "mAP"),
    ("micro_f1", "micro F1"),
    ("macro_f1", "macro F1"),
    ("micro_precision", "micro precision"),
    ("micro_recall", "micro recall"),
    ("exact_match", "exact set"),
    ("loss", "loss"),
)


def multilabel_headline(report: dict) -> str:

    m = report["metrics"]
    return (
        f'<p class="headline">{esc(report.get("split", "?"))} mAP {tagged(m.get("map"), "metrics.map")} on '
        f"{tagged(m.get('n'), 'metrics.n', tag='span')} images; micro F1 "
        f"{tagged(m.get('micro_f1'), 'metrics.micro_f1', tag='span')}, macro F1 "
        f"{tagged(m.get('macro_f1'), 'metrics.macro_f1', tag='span')} at each label's threshold (tuned on val)</p>"
    )


def multilabel_results(run_dir: Path, report: dict, classes: list[str]) -> str:

    m = report.get("metrics") or {}
    table = (
        "<table><tr>"
        + "".join(f"<th>{t}</th>" for _, t in MULTILABEL_COLUMNS)
        + "</tr><tr>"
        + "".join(num(m.get(k), f"metrics.{k}") for k, _ in MULTILABEL_COLUMNS)
        + "</tr></table>"
    )
    keys = ("threshold", "precision", "recall", "f1", "ap", "support")
    rows = "".join(
        f"<tr><td>{esc(c)}</td>" + "".join(num(v[k], f"metrics.per_label.{c}.{k}", 3) for k in keys) + "</tr>"
        for c, v in (m.get("per_label") or {}).items()
    )
    per_label = (
        "<h3>Per label</h3><table><tr><th>label</th><th>threshold</th><th>precision</th><th>recall</th><th>F1</th>"
        f"<th>AP</th><th>support</th></tr>{rows}</table>"
    )
    return table + per_label + figure(run_dir, "per_label.png")


def multilabel_mistakes(run_dir: Path, report: dict, limit: int = 30) -> str:

    rows = [r for r in read_csv(Path(run_dir) / multilabel.PREDICTIONS) if "wrong_labels" in r]
    if not rows:
        return '<p class="muted">No predictions.csv in this run.</p>'
    wrong = sorted((r for r in rows if r["wrong_labels"] != "0"), key=lambda r: -int(r["wrong_labels"]))
    if not wrong:
        return f'<p class="good">None: every label of all {len(rows)} evaluated images is right.</p>'
    body = []
    for r in wrong[:limit]:
        thumb = thumbnail(r["key"])
        img = f'<img class="thumb" alt="{esc(Path(r["key"]).name)}" src="{thumb}">' if thumb else ""
        body.append(
            f'<tr><td>{img}</td><td>{esc(r["key"])}</td><td>{esc(r["true"])}</td><td class="bad">'
            f'{esc(r["predicted"])}</td><td class="n">{esc(r["wrong_labels"])}</td></tr>'
        )
    return (
        f"<p>{len(wrong)} of {len(rows)} evaluated images have a wrong label set, the most wrong labels first.</p>"
        "<table><tr><th></th><th>file</th><th>true</th><th>predicted</th><th>wrong labels</th></tr>"
        + "".join(body)
        + "</table>"
    )


# Each task's parts of the page: its headline (opens the page), its results in detail and its mistakes. A task
# missing here gets its numbers as report.json has them.
TASK_SECTIONS = {
    "classification": {
        "headline": classification_headline,
        "results": section_classification,
        "mistakes": section_mistakes,
    },
    "regression": {
        "headline": regression_headline,
        "results": regression_results,
        "mistakes": regression_mistakes,
        "redraw": regression.redraw,
    },
    "multilabel": {
        "headline": multilabel_headline,
        "results": multilabel_results,
        "mistakes": multilabel_mistakes,
        "redraw": multilabel.redraw,
    },
}
GENERIC_SECTIONS = {"headline": generic_headline, "results": generic_results, "mistakes": section_mistakes}


def task_parts(report: dict) -> dict:
    return TASK_SECTIONS.get(report.get("task", "classification"), GENERIC_SECTIONS)


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
    parts = task_parts(report)
    finished = bool(report.get("metrics"))
    unfinished = '<p class="muted">No metrics: the run did not finish (no report.json).</p>'
    bodies = {
        "result": section_result(run_dir, config, report),
        "metrics": parts["results"](run_dir, report, classes) if finished else unfinished,
        "mistakes": parts["mistakes"](run_dir, report) if finished else unfinished,
        "choice": section_choice(run_dir, config, report),
        "calibration": section_calibration(report) + figure(run_dir, "reliability.png"),
        "data": section_data(run_dir, config, report),
        "config": section_config(config),
    }
    nav = "".join(f'<a href="#{s}">{TITLES[s]}</a>' for s in SECTIONS)
    sections = "".join(f'<section id="{s}"><h2>{TITLES[s]}</h2>{bodies[s]}</section>' for s in SECTIONS)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>transferkit report: {esc(run_dir.name)}</title><style>{CSS}</style></head>"
        f"<body><h1>{esc(run_dir.name)}</h1>"
        f'<p class="muted">transferkit run in {esc(run_dir.resolve())}, report written '
        f"{datetime.now():%Y-%m-%d %H:%M}.</p><nav>{nav}</nav>{sections}</body></html>\n"
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
