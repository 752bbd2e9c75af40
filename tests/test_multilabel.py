"""Multi-label: 'a|b' and 0/1-column lists, thresholds tuned on val and stored in the bundle, mAP against sklearn,
train -> evaluate -> predict -> report through the API and the CLI, bad separators refused; metrics.csv names mAP, and
--tta averages the views' sigmoids."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import transferkit
from transferkit.data.sources import from_arrays, open_source
from transferkit.errors import TransferkitError

from .conftest import FAST
from .test_cli import cli

NAMES = ("red", "green", "blue")


def striped_images(n: int, seed: int = 0, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Dark images with a bright stripe in each label's colour channel (and place) the image has."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, (n, 3))
    x = rng.integers(0, 40, (n, size, size, 3)).astype(np.uint8)
    w = size // 3
    for i, j in zip(*np.nonzero(y)):
        x[i, :, j * w : (j + 1) * w, j] = 220
    return x, y


def write_csv(root, n: int = 45, hot: bool = False, lines_override: dict | None = None):
    root.mkdir(parents=True, exist_ok=True)
    x, y = striped_images(n)
    lines = ["path," + (",".join(NAMES) if hot else "labels")]
    for i, (img, row) in enumerate(zip(x, y)):
        Image.fromarray(img).save(root / f"img{i:02d}.png")
        cells = ",".join(map(str, row)) if hot else "|".join(c for c, v in zip(NAMES, row) if v)
        lines.append(f"img{i:02d}.png,{cells}")
    for i, text in (lines_override or {}).items():
        lines[i] = text
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root / "labels.csv", y


@pytest.mark.parametrize("hot", [False, True], ids=["a|b", "0/1 columns"])
def test_lists_with_several_labels_per_image(tmp_path, hot):
    path, y = write_csv(tmp_path / "d", hot=hot)
    src = open_source(path, task="multilabel")
    assert src.task == "multilabel" and sorted(src.classes) == sorted(NAMES)
    index = {c: i for i, c in enumerate(src.classes)}
    for s, row in zip(src.splits["all"], y):
        assert set(s.label) == {index[c] for c, v in zip(NAMES, row) if v}


def test_an_unknown_separator_names_the_line(tmp_path):
    path, _ = write_csv(tmp_path / "a", lines_override={3: "img02.png,red;blue"})
    with pytest.raises(TransferkitError, match=r"line 4: the labels 'red;blue' are separated by ';'.*red\|blue"):
        open_source(path, task="multilabel")
    path, _ = write_csv(tmp_path / "b", lines_override={3: "img02.png,red,blue"})
    with pytest.raises(TransferkitError, match=r"line 4 has 3 fields but the header has 2"):
        open_source(path, task="multilabel")
    path, _ = write_csv(tmp_path / "c", hot=True, lines_override={2: "img01.png,1,yes,0"})
    with pytest.raises(TransferkitError, match=r"line 3: column 'green' holds 'yes'"):
        open_source(path, task="multilabel")


def test_average_precision_is_scikit_learns_and_thresholds_maximise_f1():
    from sklearn.metrics import average_precision_score

    from transferkit.evaluation.multilabel import average_precision, multilabel_metrics, tune_thresholds

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (50, 4))
    p = np.clip(y * 0.4 + rng.uniform(0, 0.6, (50, 4)), 0, 1).round(2)  # ties included
    for j in range(4):
        assert average_precision(p[:, j], y[:, j]) == pytest.approx(average_precision_score(y[:, j], p[:, j]))
    t = tune_thresholds(p, y)
    m = multilabel_metrics(p, y, t, list("abcd"))
    for j, c in enumerate("abcd"):  # no threshold on the grid of scores does better on these images
        best = max(
            multilabel_metrics(p, y, [s if k == j else t[k] for k in range(4)], list("abcd"))["per_label"][c]["f1"]
            for s in np.unique(p[:, j])
        )
        assert m["per_label"][c]["f1"] == pytest.approx(best)
    assert tune_thresholds(np.full((5, 1), 0.3), np.zeros((5, 1))) == [0.5]  # no positive: the default


def test_train_evaluate_predict_report_through_the_api(tmp_path):
    x, y = striped_images(60)
    src = from_arrays(x, y, list(NAMES), task="multilabel")
    run = transferkit.fit(src, task="multilabel", strategy="linear", out=tmp_path / "runs", **FAST)
    m = run.test_metrics
    assert {"map", "micro_f1", "macro_f1", "per_label"} <= set(m) and m["map"] > 0.8
    assert set(m["per_label"]["red"]) >= {"precision", "recall", "threshold", "ap"}
    meta = json.loads((run.best / "transferkit.json").read_text())
    assert meta["task"] == "multilabel" and len(meta["thresholds"]) == 3
    answer = run.load().predict(x[0])
    said = {a["label"] for a in answer["labels"]}
    assert all(a["probability"] >= meta["thresholds"][NAMES.index(a["label"])] for a in answer["labels"])
    assert len(answer["top_k"]) == 3 and said <= set(NAMES)
    ev = transferkit.evaluate(run.best, src)
    assert ev["map"] == pytest.approx(m["map"]) and ev["split"] == "test"
    # Data that names 2 of the model's 3 labels is scored on those 2: green's answers are not false alarms there
    x2, y2 = striped_images(30, seed=1)
    full = transferkit.evaluate(run.best, from_arrays(x2, y2, list(NAMES), task="multilabel"))
    part = transferkit.evaluate(run.best, from_arrays(x2, y2[:, [0, 2]], ["red", "blue"], task="multilabel"))
    assert set(part["per_label"]) == {"red", "blue"} and part["per_label"]["blue"] == full["per_label"]["blue"]
    assert part["map"] == pytest.approx((full["per_label"]["red"]["ap"] + full["per_label"]["blue"]["ap"]) / 2)
    assert any("no labels green of the model's" in w for w in part["warnings"]) and not full["warnings"]
    # The stored thresholds are the ones predict uses: above every probability, nothing is said.
    meta["thresholds"] = [1.5, 1.5, 1.5]
    (run.best / "transferkit.json").write_text(json.dumps(meta))
    assert transferkit.load(run.best).predict(x[0])["labels"] == []
    html = (run.path / "report.html").read_text()
    assert 'data-key="metrics.map"' in html and "Per label" in html
    assert (run.path / "plots" / "per_label.png").is_file()


def test_cli_train_evaluate_predict(tmp_path):
    path, _ = write_csv(tmp_path / "d", n=45)
    runs = tmp_path / "runs"
    r = cli(
        "train",
        path,
        "--task",
        "multilabel",
        "--strategy",
        "linear",
        "--image-size",
        "32",
        "--out",
        runs,
        "--name",
        "m",
    )
    assert "mAP" in r.stderr
    shown = cli("evaluate", runs / "m" / "best", path).stdout
    assert "mAP" in shown and "threshold" in shown
    out = json.loads(cli("predict", runs / "m" / "best", tmp_path / "d" / "img00.png", "--json").stdout)
    assert "labels" in out[0] and "top_k" in out[0]
    table = cli("predict", runs / "m" / "best", tmp_path / "d" / "img00.png").stdout
    assert "labels" in table and all(a["label"] in table for a in out[0]["labels"])


# ---- every task everywhere: the tiny multi-label bundle of tests/deploy_models.py -------------------------------
def test_metrics_csv_names_map_and_tta_averages_the_views_sigmoids():
    from .deploy_models import run_cli, tiny_bundle, tiny_data, tiny_images

    bundle, images = tiny_bundle("multilabel"), tiny_images("multilabel", 3)
    header = (bundle.parent / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train_map", "val_map"} <= set(header) and "val_acc" not in header
    p = transferkit.load(bundle, precision="fp32")
    got = p.predict(images, tta=True)
    views = p._forward([p.pre.load(path)[0] for path in images], tta=True).numpy()  # (N, V, 3) logits
    mean = (1 / (1 + np.exp(-views))).mean(1)  # the mean of the views' sigmoids
    cut = p.task.cut(3)
    for g, row in zip(got, mean):
        assert {a["label"] for a in g["labels"]} == {p.classes[j] for j in np.flatnonzero(row >= cut)}
        assert max(a["probability"] for a in g["top_k"]) == pytest.approx(row.max(), rel=1e-5)
    plain = p.predict(images)
    for g, a in zip(got, plain):  # the plain answer: the label set of the centre crop alone
        assert list(g["without_tta"]) == ["labels"]
        assert [x["label"] for x in g["without_tta"]["labels"]] == [x["label"] for x in a["labels"]]
    m = transferkit.evaluate(bundle, tiny_data("multilabel"), tta=True, precision="fp32")
    t = m["tta"]
    assert t["score"] == "map" and t["views"] == 10 and m["map"] == pytest.approx(t["map_with"], abs=1e-6)
    assert 0 <= t["changed"] <= m["n"]  # images whose label set TTA changed
    code, stdout, _ = run_cli("evaluate", bundle, tiny_data("multilabel"), "--tta")
    assert code == 0 and "TTA (10 views): map " in stdout and "answer(s) changed" in stdout
    code, stdout, _ = run_cli("predict", bundle, *images, "--tta")
    assert code == 0 and "without TTA" in stdout and "TTA changed the answer of" in stdout


def test_doctor_counts_labels_not_label_sets(tmp_path):
    """doctor (and train's check before it) count a multi-label image under each of its labels: 'blue' only ever
    beside another label was "missing" from every split, and imbalance was measured over label sets."""
    from transferkit.data.doctor import doctor
    from transferkit.data.split import make_splits, parse_split

    path, y = write_csv(tmp_path / "d", n=45)
    src = open_source(path, task="multilabel")
    splits = make_splits(src, parse_split("0.6,0.2,0.2"), 0)
    report = doctor(src, splits=splits)
    index = {c: i for i, c in enumerate(src.classes)}
    for split, samples in splits.items():
        assert report.images[split] == len(samples)
        for name in NAMES:
            assert report.counts[split][name] == sum(index[name] in s.label for s in samples)
    assert set(report.classes) == set(NAMES)  # the labels, not sets such as 'green|red'
    missing = [p.message for p in report.problems if p.code == "class-missing-from-split"]
    assert not missing, missing


def test_a_multilabel_list_read_as_classes_says_so(tmp_path):
    """'red|blue' cells without --task multilabel train a class per combination: a warning names them and says
    which task reads them as labels; the same list as multi-label, or a list of single names, says nothing."""
    from transferkit.data.doctor import doctor

    path, _ = write_csv(tmp_path / "d", n=45)
    found = [p for p in doctor(path).problems if p.code == "labels-look-multilabel"]
    assert len(found) == 1 and "joined by '|'" in found[0].message and "--task multilabel" in found[0].action
    assert not [p for p in doctor(path, task="multilabel").problems if p.code == "labels-look-multilabel"]
    single = tmp_path / "s.csv"
    single.write_text("path,label\n" + "".join(f"d/img{i:02d}.png,{NAMES[i % 3]}\n" for i in range(45)))
    assert not [p for p in doctor(single).problems if p.code == "labels-look-multilabel"]
