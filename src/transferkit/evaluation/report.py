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
folded at the end. Each task's parts come from the task (`Task.report_sections()`: its headline, results and
mistakes, in sections.py); the blocks they are made of are in html.py.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path

from ..errors import TransferkitError
from ..faults import write_atomic
from .html import (  # noqa: F401 - PLOTS and PLOTS_DIR re-exported: the page's plots, as finish.py and tests read them
    PLOTS,
    PLOTS_DIR,
    esc,
    figure,
    flatten,
    kv_table,
    num,
    read_csv,
    read_json,
    rows_table,
    tagged,
)

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


def score_rows(rows: list[dict]) -> list[dict]:
    """metrics.csv's rows with the score's columns as train_acc / val_acc, whatever the file names them after the
    task's score (val_r2, val_map; val_acc for accuracy, and in files from before the columns were named)."""
    column = score_column(rows)
    if column == "acc":
        return rows
    return [
        {("train_acc" if k == f"train_{column}" else "val_acc" if k == f"val_{column}" else k): v for k, v in r.items()}
        for r in rows
    ]


def score_column(rows: list[dict]) -> str:
    """The score's name in metrics.csv's val_<name> column ("acc", "r2", "map"); "acc" when there is none."""
    return next((k[4:] for r in rows[:1] for k in r if k.startswith("val_") and k != "val_loss"), "acc")


# ---- plots drawn from the run's files (the image plots need the decoded images; `finish_run` draws those) -------
def redraw_plots(run_dir: Path) -> list[Path]:
    from .plots import plot_confusion_matrix, plot_per_class, plot_reliability, plot_training_curves

    report = read_json(run_dir / "report.json") or {}
    config = read_json(run_dir / "config.json") or {}
    plots = run_dir / PLOTS_DIR
    made = []
    rows = score_rows(read_csv(run_dir / "metrics.csv"))
    if len(rows) > 1:
        task = report_task(report)
        score = task.score_label if task else "score"
        made.append(plot_training_curves(rows, plots / "curves.png", best_epoch=report.get("best_epoch"), score=score))
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


def section_config(config: dict) -> str:
    """Every option as it was set, folded: what a person reads last (the versions help a bug report)."""
    options = flatten(config.get("config", {}))
    versions = [(f"version of {k}", v) for k, v in config.get("versions", {}).items()]
    extra = [("platform", config.get("platform", ""))] + versions
    return (
        f"<details><summary>All {len(options)} options of this run, and the environment</summary>"
        f"{kv_table(options)}<h3>Environment</h3>{kv_table(extra)}</details>"
    )


def split_table(split_rows: list[dict], classes: list[str], task: str) -> str:
    """Images per class and split from split.csv's `label` (JSON: a class index, a list of them, or a value), as the
    task's kind of label counts them (data/targets.py): a multi-label image once under each of its labels (the
    total is images, not labels), a regression target under none (the images per split alone)."""
    from ..data.targets import CLASSES, KINDS

    kind = KINDS.get(task, CLASSES)
    splits = list(dict.fromkeys(r["split"] for r in split_rows))
    totals, counts = Counter(r["split"] for r in split_rows), Counter()
    for r in split_rows if kind.counted else []:
        label = json.loads(r["label"])
        for i in label if isinstance(label, list) else [label]:
            counts[(r["split"], i)] += 1
    head = "".join(f"<th>{esc(s)}</th>" for s in splits)
    rows = "".join(
        f"<tr><td>{esc(c)}</td>" + "".join(f'<td class="n">{counts[(s, i)]}</td>' for s in splits) + "</tr>"
        for i, c in enumerate(classes if kind.counted else [])
    )
    total = "".join(f'<td class="n">{totals[s]}</td>' for s in splits)
    title, first = kind.split_table
    return f"<h3>{title}</h3><table><tr><th>{first}</th>{head}</tr>{rows}<tr><th>total images</th>{total}</tr></table>"


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
        parts.append(split_table(split_rows, classes, config.get("config", {}).get("train", {}).get("task", "")))
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


def unfinished_result(run_dir: Path, config: dict) -> str:
    """A run that stopped (Ctrl-C, a kill, an error): why, where it got to, and how to continue it."""
    failed = read_json(run_dir / "failed.json") or {}
    epochs = read_csv(run_dir / "metrics.csv")
    planned = config.get("config", {}).get("train", {}).get("epochs")
    why = failed.get("error") or "killed, or still running (no failed.json)"
    said = f"{why}: {failed['message']}" if failed.get("message") else why
    rows = [("stopped", said), ("epochs recorded", f"{len(epochs)}" + (f" of {planned}" if planned else ""))]
    score = f"val_{score_column(epochs)}"
    scored = [r for r in epochs if r.get(score) not in ("", None)]
    if scored:
        best = max(scored, key=lambda r: float(r[score]))
        rows.append((f"best {score} so far", f"{float(best[score]):.4f} (epoch {best.get('epoch', '?')})"))
    if (run_dir / "last.ckpt").is_file():
        rows.append(("continue it with", f"transferkit train --resume {run_dir}"))
    return '<p class="muted">The run did not finish (no report.json): no test metrics.</p>' + kv_table(rows)


def section_result(run_dir: Path, config: dict, report: dict) -> str:
    """What a person looks for first: the headline metric with its interval, then what was decided and why."""
    if not report.get("metrics"):
        return unfinished_result(run_dir, config)
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


def head_solvers_html(solvers: dict, score: str = "accuracy") -> str:
    """The head solvers fitted on cached features, with what each reached on val (`score`: the task's, for people)."""
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
        f"<h3>Head solvers</h3><p>Both fitted on the same cached features; the better on val is kept.</p>"
        f"<table><tr><th>solver</th><th>val {esc(score)}</th><th>val loss</th><th>how</th>"
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
        task = report_task(report)
        out.append(head_solvers_html(report["head_solvers"], task.score_label if task else "score"))
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


def report_task(report: dict):
    """The run's task (tasks/), or None for a task this transferkit does not know."""
    from ..errors import ConfigError
    from ..tasks import task_of

    try:
        return task_of(report)
    except ConfigError:
        return None


def task_parts(report: dict) -> dict:
    """The run's task's parts of the page (its headline, results, mistakes and plots); a task this transferkit does
    not know gets its numbers as report.json has them."""
    from .sections import GENERIC

    task = report_task(report)
    return task.report_sections() if task else GENERIC


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
    saved = read_json(run_dir / "config.json")
    if saved is None or not all(isinstance(saved.get(k) or {}, dict) for k in ("config", "resolved", "advice")):
        raise TransferkitError(
            f"'{run_dir / 'config.json'}' is damaged (not the JSON object `train` writes, or one of its sections is "
            "not an object): put back the run's own copy (it is rewritten only by `train --resume`)."
        )
    if redraw:
        redraw_plots(run_dir)
    path = run_dir / "report.html"
    write_atomic(path, render_html(run_dir))  # a unique temp name: two `report` commands on one run never collide
    return path
