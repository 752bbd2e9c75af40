"""report.html, calibration in the bundle, and TTA, on one tiny real run (3 colours x 40 images, 32 px, linear)."""

from __future__ import annotations

import base64
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit.evaluation.report import PLOTS, SECTIONS, build_report

COLOURS = {"red": (200, 40, 40), "green": (40, 170, 60), "blue": (40, 60, 200)}
# The plots a classification run draws (PLOTS also lists the other tasks' own).
CLASSIFICATION_PLOTS = [
    p
    for p in PLOTS
    if p[0]
    in ("curves.png", "confusion_matrix.png", "per_class.png", "gallery.png", "top_losses.png", "reliability.png")
]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Colour patches with a bright corner spot, so crops and mirrors (TTA) see slightly different images."""
    root = tmp_path_factory.mktemp("colours")
    rng = np.random.default_rng(0)
    for name, rgb in COLOURS.items():
        (root / name).mkdir()
        for i in range(40):
            a = np.clip(np.array(rgb) + rng.normal(0, 50, (40, 48, 3)), 0, 255).astype(np.uint8)
            a[:8, :8] = 255
            Image.fromarray(a).save(root / name / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    import transferkit

    tmp = tmp_path_factory.mktemp("runs")
    # 0.6/0.2/0.2 of 120 images: 24 for val, enough to fit a temperature (calibration.MIN_FIT_IMAGES = 20).
    return transferkit.fit(
        data,
        strategy="linear",
        image_size=32,
        epochs=1,
        split="0.6,0.2,0.2",
        out=str(tmp),
        cache_dir=str(tmp / "c"),
        quiet=True,
    )


class Page(HTMLParser):
    """Section ids, images (src, alt) and every tagged number (data-key -> text) of report.html."""

    def __init__(self):
        super().__init__()
        self.sections, self.images, self.numbers, self.links = [], [], {}, []
        self._key = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a.get("id"))
        if tag == "img":
            self.images.append((a.get("src", ""), a.get("alt", "")))
        if tag in ("a", "link", "script") and (a.get("href") or a.get("src")):
            self.links.append(a.get("href") or a.get("src"))
        self._key = a.get("data-key")

    def handle_data(self, text):
        if self._key:
            self.numbers[self._key] = text
            self._key = None


def lookup(report: dict, key: str):
    value = report
    for part in key.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def test_run_leaves_report_plots_and_predictions(run):
    for name in ("report.html", "predictions.csv", "report.json"):
        assert (run.path / name).is_file(), name
    for name, _, _ in CLASSIFICATION_PLOTS:
        if name != "curves.png":
            assert (run.path / "plots" / name).stat().st_size > 5000, name
    assert not (run.path / "plots" / "curves.png").exists()  # `linear` is one epoch: one point is no curve
    report = json.loads((run.path / "report.json").read_text())
    cal = report["calibration"]
    assert cal["fitted_on"] == "val" and cal["fitted_n"] == 24 and cal["measured_on"] == "test"
    assert {"ece_before", "ece_after", "nll_before", "nll_after", "temperature"} <= cal.keys()
    assert cal["nll_before"] == pytest.approx(report["metrics"]["loss"], abs=1e-4)  # the same test logits


def test_report_html_sections_images_and_numbers(run):
    html = (run.path / "report.html").read_text(encoding="utf-8")
    page = Page()
    page.feed(html)
    assert page.sections == list(SECTIONS)
    # Every plot embedded as a decodable image; nothing fetched from anywhere (links are in-page anchors only).
    alts = {alt for _, alt in page.images}
    for name, title, _ in CLASSIFICATION_PLOTS:
        assert (title in alts) == (name != "curves.png"), title
    for src, alt in page.images:
        assert src.startswith("data:image/"), alt
        head = base64.b64decode(src.split(",", 1)[1])[:8]
        assert head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8"), alt
    assert all(link.startswith("#") for link in page.links), page.links
    assert "http://" not in html and "https://" not in html
    # The numbers shown are those of report.json.
    report = json.loads((run.path / "report.json").read_text())
    for key in (
        "metrics.accuracy",
        "metrics.loss",
        "metrics.macro_f1",
        "metrics.n",
        "calibration.temperature",
        "calibration.ece_before",
        "calibration.ece_after",
        "calibration.nll_before",
        "calibration.nll_after",
        "metrics.per_class.red.recall",
        "metrics.confusion_matrix.0.0",
    ):
        assert key in page.numbers, key
    for key, text in page.numbers.items():
        expected = lookup(report, key)
        digits = len(text.split(".")[1]) if "." in text else 0
        assert math.isclose(float(text), expected, abs_tol=0.6 * 10**-digits), (key, text, expected)
    # Strategy and why, the data summary, and the misclassified files (with their paths) are there too.
    assert report["strategy_reason"] in html and "linear" in html
    wrong = [
        line.split(",")[0]
        for line in (run.path / "predictions.csv").read_text().splitlines()[1:]
        if line.endswith(",0")
    ]
    rows = (run.path / "predictions.csv").read_text().splitlines()[1:]
    misclassified = html[html.index('<section id="mistakes">') :]
    for key in wrong:
        assert key in misclassified
    if wrong:
        assert f"{len(wrong)} of {len(rows)} evaluated images are wrong" in misclassified
    else:
        assert f"None: all {len(rows)} evaluated images are right." in html


def test_temperature_stored_in_bundle_and_used_by_predict(run, data):
    from transferkit.evaluation.calibration import softmax
    from transferkit.predict import Predictor

    report = json.loads((run.path / "report.json").read_text())
    meta = json.loads((run.best / "transferkit.json").read_text())
    t = meta["calibration"]["temperature"]
    assert t == pytest.approx(report["calibration"]["temperature"])
    p = Predictor(run.best)
    assert p.temperature == pytest.approx(t)
    image = data / "red" / "00.png"
    result = p.predict(image, top_k=3)
    from transferkit.data.sources import open_source

    src = open_source(data)
    logits, _, _ = p.logits_for(src, [s for s in src.splits["all"] if Path(s.key) == image])
    expected = softmax(logits.numpy(), t)[0]
    assert result["probability"] == pytest.approx(float(expected.max()), abs=1e-5)


def test_evaluate_and_predict_with_tta(run, data):
    import transferkit

    tta = transferkit.evaluate(run.best, data, tta=True)  # the run's own test split
    s = tta["tta"]
    assert s["views"] == 10  # flips were on in training: 5 crops x 2
    assert tta["n"] == run.test_metrics["n"]
    assert s["accuracy_without"] == pytest.approx(run.test_metrics["accuracy"])  # view 0 is the plain prediction
    assert s["accuracy_with"] == pytest.approx(tta["accuracy"])
    assert s["fixed"] - s["broken"] == round((s["accuracy_with"] - s["accuracy_without"]) * tta["n"])
    results = transferkit.load(run.best).predict([data / "green" / "00.png", data / "blue" / "01.png"], tta=True)
    assert len(results) == 2 and all(r["without_tta"]["label"] in COLOURS for r in results)


def test_report_command_regenerates_and_shows_doctor(run):
    from typer.testing import CliRunner

    from transferkit.cli.app import app

    (run.path / "report.html").unlink()
    (run.path / "plots" / "curves.png").write_bytes(b"stale")  # left by an older version: one epoch has none
    doctor = run.path / "doctor.json"
    saved = doctor.read_text() if doctor.exists() else None
    doctor.write_text(
        json.dumps(
            {
                "files": 120,
                "imbalance": 1.0,
                "problems": [
                    {
                        "severity": "warning",
                        "code": "near-duplicate",
                        "message": "2 images look the same",
                        "files": ["a.png", "b.png"],
                        "action": "Remove one of them.",
                    }
                ],
            }
        )
    )
    try:
        result = CliRunner().invoke(app, ["report", str(run.path)])
        assert result.exit_code == 0, result.output
        assert result.output.strip().endswith("report.html")
        html = (run.path / "report.html").read_text(encoding="utf-8")
        assert not (run.path / "plots" / "curves.png").is_file()  # one epoch: not drawn again
        assert "near-duplicate" in html and "Remove one of them." in html
        doctor.unlink()
        html = build_report(run.path, redraw=False).read_text(encoding="utf-8")
        assert "No doctor.json" in html
    finally:
        if saved is not None:
            doctor.write_text(saved)


def test_report_command_on_a_folder_that_is_not_a_run(tmp_path):
    from typer.testing import CliRunner

    from transferkit.cli.app import app

    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code != 0
    assert "not a run directory" in str(result.exception)


def test_report_opens_with_the_result_and_folds_the_configuration(run):
    html = (run.path / "report.html").read_text(encoding="utf-8")
    report = json.loads((run.path / "report.json").read_text())
    iv = report["metrics"]["interval"]
    assert iv["method"] == "wilson" and iv["low"] <= report["metrics"]["accuracy"] <= iv["high"]
    # The headline (accuracy with its interval and what the split can resolve) comes before everything else ...
    headline = html.index('data-key="metrics.accuracy"')
    assert headline < html.index('data-key="metrics.interval.low"') < html.index('<section id="metrics">')
    assert iv["note"] in html and "Wilson" in html
    # ... and the 45-odd options come last, folded.
    config = html.index('<section id="config">')
    assert headline < html.index('<section id="mistakes">') < config
    assert html.index("<details>", config) < html.index("<th>train.lr</th>", config)
    assert html.rindex("</details>") > html.index("<th>train.lr</th>")
    # `linear` trained one epoch: no curve; what was measured to choose the head is shown instead.
    choice = html[html.index('<section id="choice">') : html.index('<section id="calibration">')]
    assert 'alt="Training curves"' not in html and "no training curve" in choice
    assert "Head solvers" in choice and "kept" in choice
    assert "--strategy linear" in choice  # a given strategy: nothing was measured to choose it


def test_report_shows_what_auto_measured_and_curves_of_several_epochs(run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run.path, copy)
    config = json.loads((copy / "config.json").read_text())
    config["advice"] = {"strategy": "two-phase", "reason": "small data, similar -> two-phase: measured", "shift": 0.12}
    (copy / "config.json").write_text(json.dumps(config))
    rows = (copy / "metrics.csv").read_text().splitlines()
    head, first = rows[0], rows[1].split(",")
    epoch = head.split(",").index("epoch")
    second = list(first)
    second[epoch] = "2"
    (copy / "metrics.csv").write_text("\n".join([head, ",".join(first), ",".join(second)]) + "\n")
    html = build_report(copy).read_text(encoding="utf-8")
    choice = html[html.index('<section id="choice">') : html.index('<section id="calibration">')]
    assert "small data, similar -&gt; two-phase: measured" in choice and "domain shift from ImageNet" in choice
    assert 'alt="Training curves"' in choice and (copy / "plots" / "curves.png").is_file()


@pytest.mark.parametrize("content", ['{"config": 5}', "[1]", "not json"])
def test_report_of_a_damaged_config_json_says_so(tmp_path, content):
    """{"config": 5} was an AttributeError traceback; [1] and text were drawn as a report without the config."""
    from transferkit.errors import TransferkitError
    from transferkit.evaluation.report import build_report

    (tmp_path / "config.json").write_text(content)
    with pytest.raises(TransferkitError, match="config.json' is damaged"):
        build_report(tmp_path, redraw=False)
    assert not (tmp_path / "report.html").exists()


def test_the_data_sections_split_table_counts_each_kind_of_label():
    """split.csv's JSON labels: a class index, a label set (each label counted, the total in images), a value (no
    classes). The table read the `class` text against the class names: a regression run showed 0 images everywhere
    and a multi-label one counted only the images with exactly one label."""
    import re

    from transferkit.evaluation.report import split_table

    def cells(html):
        return [[c for c in re.findall(r"<t[dh][^>]*>([^<]*)</t[dh]>", row)] for row in html.split("<tr>")[1:]]

    rows = [{"split": "train", "label": "0"}, {"split": "train", "label": "1"}, {"split": "val", "label": "1"}]
    assert cells(split_table(rows, ["ants", "bees"], "classification"))[1:] == [
        ["ants", "1", "0"], ["bees", "1", "1"], ["total images", "2", "1"]
    ]  # fmt: skip
    sets = [{"split": "train", "label": "[0, 1]"}, {"split": "train", "label": "[]"}, {"split": "test", "label": "[1]"}]
    table = split_table(sets, ["green", "water"], "multilabel")
    assert "Images per label and split" in table
    assert cells(table)[1:] == [["green", "1", "0"], ["water", "1", "1"], ["total images", "2", "1"]]
    values = [{"split": "train", "label": "12.5"}, {"split": "train", "label": "3"}, {"split": "val", "label": "1.0"}]
    assert cells(split_table(values, ["log_price"], "regression")) == [
        ["images", "train", "val"], ["total images", "2", "1"]
    ]  # fmt: skip


def test_an_unfinished_runs_report_says_why_how_far_and_how_to_continue(tmp_path):
    """Ctrl-C at epoch 2 of 6: the report said only "the run did not finish", with failed.json, metrics.csv and
    last.ckpt beside it."""
    from transferkit.evaluation.report import render_html

    run = tmp_path / "cut"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"config": {"train": {"epochs": 6}}, "resolved": {}, "advice": {}}))
    (run / "failed.json").write_text(json.dumps({"error": "KeyboardInterrupt", "message": ""}))
    (run / "metrics.csv").write_text("epoch,phase,val_loss,val_acc\n1,finetune,0.8,0.7273\n2,finetune,0.6,0.9091\n")
    (run / "last.ckpt").write_bytes(b"x")
    text = " ".join(re.sub(r"<[^>]+>", " ", render_html(run)).split())
    assert "stopped KeyboardInterrupt" in text and "epochs recorded 2 of 6" in text
    assert "best val_acc so far 0.9091 (epoch 2)" in text
    assert f"transferkit train --resume {run}" in text
