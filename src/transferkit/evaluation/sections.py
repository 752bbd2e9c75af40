"""Each task's parts of report.html: its headline (opens the page), its results in detail and its mistakes, and
the plots it redraws from the run's files. A task names its parts with `Task.report_sections()` (tasks/); a task
without parts of its own gets GENERIC: its numbers as report.json has them.
"""

from __future__ import annotations

from pathlib import Path

from . import multilabel, regression
from .html import esc, figure, flatten, kv_table, num, read_csv, tagged, thumbnail

MAX_MISCLASSIFIED = 100  # rows in the table; predictions.csv has them all


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


def section_classification(run_dir: Path, report: dict, classes: list[str]) -> str:
    """The confusion matrix (figure and numbers), the metrics table and the per-class figure and numbers."""
    return figure(run_dir, "confusion_matrix.png") + section_metrics(report, classes) + figure(run_dir, "per_class.png")


def section_mistakes(run_dir: Path, report: dict) -> str:
    return figure(run_dir, "top_losses.png") + section_misclassified(run_dir) + figure(run_dir, "gallery.png")


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


def generic_headline(report: dict) -> str:
    """A task without a headline of its own: its numbers, as report.json has them."""
    m = report["metrics"]
    shown = [(k, v) for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return (
        f'<p class="headline">{esc(report.get("split", "?"))}: '
        + ", ".join(f"{esc(k)} {tagged(v, f'metrics.{k}', tag='span')}" for k, v in shown)
        + "</p>"
    )


def generic_results(run_dir: Path, report: dict, classes: list[str]) -> str:
    m = report.get("metrics", {})
    return kv_table(flatten({k: v for k, v in m.items() if k != "interval"}))


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


CLASSIFICATION = {"headline": classification_headline, "results": section_classification, "mistakes": section_mistakes}
REGRESSION = {
    "headline": regression_headline,
    "results": regression_results,
    "mistakes": regression_mistakes,
    "redraw": regression.redraw,
}
MULTILABEL = {
    "headline": multilabel_headline,
    "results": multilabel_results,
    "mistakes": multilabel_mistakes,
    "redraw": multilabel.redraw,
}
GENERIC = {"headline": generic_headline, "results": generic_results, "mistakes": section_mistakes}
