"""Regression: targets read from lists, HDF5 and arrays, bin-stratified splits, ridge in closed form, train ->
evaluate -> predict -> report through the API and the CLI, bad input refused, houses' log_price; compare ranks by R²,
metrics.csv and the epoch line name it, and --tta averages the views' values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import transferkit
from transferkit.data.sources import Sample, from_arrays, open_source
from transferkit.errors import TransferkitError

from .conftest import FAST, shared, write_folder
from .test_cli import cli


def brightness_images(n: int, seed: int = 0, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Grey squares whose brightness is the target (plus a little noise in the pixels)."""
    rng = np.random.default_rng(seed)
    y = rng.uniform(0, 10, n)
    x = (y[:, None, None, None] * 22 + rng.integers(0, 20, (n, size, size, 3))).clip(0, 255).astype(np.uint8)
    return x, y


def write_csv(root, n: int = 40, seed: int = 0, bad_row: int | None = None):
    root.mkdir(parents=True, exist_ok=True)
    x, y = brightness_images(n, seed)
    lines = ["path,price,brightness"]
    for i, (img, v) in enumerate(zip(x, y)):
        Image.fromarray(img).save(root / f"img{i:02d}.png")
        lines.append(f"img{i:02d}.png,{v * 1000:.0f},{'n/a' if i == bad_row else f'{v:.4f}'}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root / "labels.csv", y


# ---- data ----------------------------------------------------------------------------------------------------
def test_csv_targets_are_numbers_named_by_their_column(tmp_path):
    path, y = write_csv(tmp_path / "d")
    src = open_source(path, task="regression", label_column="brightness")
    assert src.task == "regression" and src.classes == ["brightness"]
    assert [s.label for s in src.splits["all"]] == pytest.approx(np.round(y, 4).tolist())


def test_a_target_that_is_not_a_number_names_its_line_and_value(tmp_path):
    path, _ = write_csv(tmp_path / "d", bad_row=7)
    with pytest.raises(TransferkitError, match=r"line 9: the target 'n/a' \(for 'img07.png'\) is not a number"):
        open_source(path, task="regression", label_column="brightness")


def test_class_folders_with_task_regression_are_refused_and_nothing_is_written(tmp_path):
    data = write_folder(tmp_path / "colours", per_class=4)
    with pytest.raises(TransferkitError, match="--task regression needs .* numbers? per image.*class folder|classes"):
        transferkit.fit(data, task="regression", out=tmp_path / "runs", **FAST)
    assert not (tmp_path / "runs").exists()
    r = cli("train", data, "--task", "regression", "--out", tmp_path / "runs", check=False)
    assert r.returncode == 2 and "--task regression needs" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()


def test_hdf5_and_array_targets(tmp_path):
    import h5py

    x, y = brightness_images(20)
    with h5py.File(tmp_path / "d.h5", "w") as h:
        h["images"], h["labels"] = x, y
    src = open_source(tmp_path / "d.h5", task="regression")
    assert src.task == "regression" and [s.label for s in src.splits["all"]] == pytest.approx(y.tolist())
    with pytest.raises(TransferkitError, match=r"y\[3\] is nan"):
        from_arrays(x, np.where(np.arange(20) == 3, np.nan, y), task="regression")
    with pytest.raises(TransferkitError, match="task='regression'"):
        from_arrays(x, y)  # numbers that are not class indices


def test_split_keeps_the_targets_quantiles_in_every_part():
    from transferkit.data.base import DataSource
    from transferkit.data.split import make_splits

    values = np.random.default_rng(1).lognormal(0, 1, 200)
    src = DataSource(None, "list", ["y"], {"all": [Sample(f"k{i}", float(v)) for i, v in enumerate(values)]})
    splits = make_splits(src, (0.6, 0.2, 0.2), seed=0)
    edges = np.quantile(values, np.linspace(0, 1, 11))
    for part in ("val", "test"):  # 40 images, 10 deciles: 4 from each (a random split misses some)
        counts = np.histogram([s.label for s in splits[part]], edges)[0]
        assert counts.min() >= 3 and counts.max() <= 5, (part, counts)


# ---- the head in closed form -----------------------------------------------------------------------------------
def test_ridge_is_scikit_learns_and_picks_its_penalty_on_val():
    from sklearn.linear_model import Ridge

    from transferkit.core.solvers import fit_ridge, ridge_path

    rng = np.random.default_rng(0)
    for n, d in ((80, 30), (40, 100)):  # more images than features and fewer
        x = torch.tensor(rng.normal(size=(n, d)))
        y = x[:, 0] * 2 - x[:, 1] + torch.tensor(rng.normal(size=n))
        for alpha, w, b in ridge_path(x, y, [0.01, 3.0, 300.0]):
            ref = Ridge(alpha=alpha).fit(x.numpy(), y.numpy())
            assert np.allclose(w.numpy(), ref.coef_, atol=1e-8) and abs(float(b) - ref.intercept_) < 1e-8
    head = torch.nn.Linear(30, 1)
    x = torch.tensor(rng.normal(size=(120, 30)), dtype=torch.float32)
    y = x[:, 0] + 0.1 * torch.tensor(rng.normal(size=120), dtype=torch.float32)
    res = fit_ridge(head, (x[:80], y[:80]), (x[80:], y[80:]))
    assert res["val_loss"] == min(r["val_loss"] for r in res["path"]) and res["val_loss"] < 0.05
    assert fit_ridge(torch.nn.Linear(30, 2), (x, y), (x, y)) is None  # one output only


# ---- end to end --------------------------------------------------------------------------------------------------
def test_train_evaluate_predict_report_through_the_api(tmp_path):
    x, y = brightness_images(80)
    src = from_arrays(x, y, ["brightness"], task="regression")
    run = transferkit.fit(src, task="regression", strategy="linear", out=tmp_path / "runs", **FAST)
    m = run.test_metrics
    assert {"mae", "rmse", "r2", "pearson", "spearman", "rmse_of_mean"} <= set(m)
    assert m["r2"] > 0.5 and m["rmse"] < 0.75 * m["rmse_of_mean"] and m["pearson"] > 0.7
    meta = json.loads((run.best / "transferkit.json").read_text())
    assert meta["task"] == "regression" and meta["target_stats"]["std"] == pytest.approx(
        np.std([y[int(s.key.split("[")[1][:-1])] for s in _split(run, "train")]), rel=1e-5
    )
    assert meta["metrics"]["r2"] == pytest.approx(m["r2"])
    p = run.load()
    answer = p.predict(x[0])
    assert answer["target"] == "brightness" and abs(answer["value"] - y[0]) < 1.5  # a value, in the target's units
    report = json.loads((run.path / "report.json").read_text())
    assert report["task"] == "regression" and "calibration" not in report
    assert {"predicted_vs_true.png", "residuals.png"} <= {f.name for f in (run.path / "plots").iterdir()}
    html = (run.path / "report.html").read_text()
    assert 'data-key="metrics.r2"' in html and "Predicted against true" in html and "Confusion" not in html
    header = (run.path / "predictions.csv").read_text().splitlines()[0]
    assert header == "key,true,predicted,residual,abs_error"


def _split(run, part):
    from transferkit.data.split import load_splits

    return load_splits(run.path / "split.csv")[part]


def test_cli_train_evaluate_predict_with_a_target_column(tmp_path):
    path, y = write_csv(tmp_path / "d", n=40)
    runs = tmp_path / "runs"
    r = cli(
        "train",
        path,
        "--task",
        "regression",
        "--target-column",
        "brightness",
        "--strategy",
        "linear",
        "--loss",
        "huber",
        "--image-size",
        "32",
        "--out",
        runs,
        "--name",
        "r",
    )
    assert "R²" in r.stderr and "ridge" in r.stderr
    shown = cli("evaluate", runs / "r" / "best", path).stdout
    assert "R²" in shown and "on 6 images" in shown  # the run's own test split
    out = json.loads(cli("predict", runs / "r" / "best", tmp_path / "d" / "img00.png", "--json").stdout)
    assert abs(out[0]["value"] - y[0]) < 2.5
    table = cli("predict", runs / "r" / "best", tmp_path / "d" / "img00.png").stdout
    assert "value" in table
    assert cli("train", path, "--loss", "huber", "--out", runs, check=False).returncode == 2  # huber needs regression


def test_finetune_and_auto_train_a_regression(tmp_path):
    x, y = brightness_images(40)
    src = from_arrays(x, y, task="regression")
    run = transferkit.fit(src, task="regression", strategy="finetune", epochs=2, out=tmp_path / "runs", **FAST)
    assert np.isfinite(run.test_metrics["r2"]) and len(run.history) == 2
    advice = transferkit.advise(src, task="regression", image_size=32, quiet=True)
    assert advice.strategy in ("linear", "two-phase", "finetune") or advice.strategy.startswith("freeze")


def test_rank_uses_logmes_regression_form(tmp_path):
    from transferkit.selection.estimators import logme_regression

    rng = np.random.default_rng(0)
    f = rng.normal(size=(200, 20))
    good = f[:, 0] * 3 + rng.normal(size=200) * 0.1
    assert logme_regression(f, good).score > logme_regression(f, rng.normal(size=200)).score
    assert np.corrcoef(logme_regression(f, good).predict(f), good)[0, 1] > 0.99
    x, y = brightness_images(40)
    rows = transferkit.rank(
        from_arrays(x, y, task="regression"), ["efficientnet_lite0"], task="regression", image_size=32, quiet=True
    )
    assert rows[0].logme is not None and rows[0].leep is None and rows[0].probe_acc > 0.5  # probe: val R²


# ---- real data ---------------------------------------------------------------------------------------------------
def test_houses_log_price_from_frozen_features(tmp_path):
    """Ridge on frozen efficientnet_lite0 features predicts log price from the frontal photo (R² 0.49 at 224 px on
    this split; at 128 px, for speed, above 0.3)."""
    labels = shared("houses") / "labels.csv"
    run = transferkit.fit(
        labels,
        task="regression",
        label_column="log_price",
        strategy="linear",
        image_size=128,
        out=tmp_path / "runs",
        quiet=True,
    )
    m = run.test_metrics
    assert m["r2"] > 0.3 and m["rmse"] < 0.8 * m["rmse_of_mean"], m


def test_compare_ranks_by_r2(tmp_path):
    from transferkit.comparison import CompareRun, summarize
    from transferkit.tasks import get_task

    csv_path, _ = write_csv(tmp_path / "data")
    result = transferkit.compare(
        str(csv_path),
        strategies="linear",
        seeds=2,
        task="regression",
        label_column="brightness",
        out=str(tmp_path / "runs"),
        **FAST,
    )
    (row,) = result.rows
    assert result.score == "r2" and result.score_label == "R²" and len(row.scores) == 2
    assert [r.score for r in result.runs] == [
        json.loads((Path(r.path) / "report.json").read_text())["metrics"]["r2"] for r in result.runs
    ]
    # one repeat of an R²: no Wilson interval (that is for a share of images) and no McNemar: noise is not measured
    runs = [CompareRun(s, s, "b", 0, r2, "test", 1.0, "", n=40) for s, r2 in (("a", 0.61), ("b", 0.52))]
    one = summarize(runs, [0], get_task("regression"))
    assert one.rows[0].high != one.rows[0].high and one.rows[1].p_vs_best is None  # nan: no interval
    assert one.verdict.startswith("a @ b wins with R² 0.610, 0.090 ahead of b @ b") and "--seeds" in one.verdict


# ---- every task everywhere: the tiny regression bundle of tests/deploy_models.py --------------------------------
def test_metrics_csv_and_the_epoch_line_name_r2(tmp_path):
    from transferkit.evaluation.report import score_rows
    from transferkit.progress import RichReporter, format_row

    from .deploy_models import tiny_bundle

    run = tiny_bundle("regression").parent
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train_r2", "val_r2"} <= set(header) and "val_acc" not in header
    rows = [{"epoch": "1", "val_r2": "0.5", "train_r2": "0.6"}]
    assert score_rows(rows)[0]["val_acc"] == "0.5" and score_rows([{"val_acc": "0.9"}]) == [{"val_acc": "0.9"}]
    row = {"epoch": 1, "phase": "head", "train_loss": 0.5, "val_loss": 0.4, "val_acc": 0.61, "seconds": 1.0}
    assert "val r2 0.6100" in format_row({**row, "score": "r2"}) and "val acc 0.6100" in format_row(row)
    assert "val r2" in RichReporter.header("r2")


def test_tta_averages_the_views_values_in_predict_and_evaluate():
    from .deploy_models import run_cli, tiny_bundle, tiny_data, tiny_images

    bundle, images = tiny_bundle("regression"), tiny_images("regression", 3)
    p = transferkit.load(bundle, precision="fp32")
    got = p.predict(images, tta=True)
    views = p._forward([p.pre.load(path)[0] for path in images], tta=True)  # (N, V, 1) logits
    assert views.shape[1] == p.pre.views.count == 10
    assert [g["value"] for g in got] == pytest.approx(p.task.values(views.numpy().mean(1)).tolist(), rel=1e-5)
    plain = p.predict(images)
    assert [g["without_tta"] for g in got] == [{"value": pytest.approx(a["value"], rel=1e-5)} for a in plain]
    m = transferkit.evaluate(bundle, tiny_data("regression"), tta=True, precision="fp32")
    t = m["tta"]
    assert t["score"] == "r2" and t["views"] == 10 and m["r2"] == pytest.approx(t["r2_with"], abs=1e-6)
    assert t["r2_without"] == pytest.approx(transferkit.evaluate(bundle, tiny_data("regression"))["r2"], abs=1e-3)
    code, stdout, _ = run_cli("evaluate", bundle, tiny_data("regression"), "--tta")
    assert code == 0 and "TTA (10 views): r2 " in stdout
    code, stdout, _ = run_cli("predict", bundle, images[0], "--tta")
    assert code == 0 and "without TTA" in stdout and "TTA changed" not in stdout  # values move; none "changes"


def test_evaluate_warns_when_the_targets_are_not_what_the_model_learned_and_asks_a_model_for_data():
    """A log_price model scored against `price` (800,000 against 13.0 +- 0.6) gets a warning, not a silent R² of
    -10; data of another kind gets a message about the model's task, not a --task that evaluate does not take."""
    import dataclasses
    from types import SimpleNamespace

    from transferkit.errors import DataError
    from transferkit.tasks import get_task

    model = dataclasses.replace(get_task("regression"), mean=13.0, std=0.6)
    assert model.target_warnings([12.4, 13.1, 15.9], "log_price", "log_price") == []  # 4.8 std out: still its own
    (warning,) = model.target_warnings([250_000.0, 410_000.0, 800_000.0], "price", "log_price")
    assert "'price' (the model learned 'log_price')" in warning and "median 4.1e+05" in warning
    assert "mean 13 +- 0.6" in warning
    assert get_task("classification").target_warnings([0, 1], "ants", "ants") == []
    folders = SimpleNamespace(task="classification", root="cf", layout="folder", classes=["ants", "bees"])
    with pytest.raises(DataError) as e:
        model.check_data(folders, model=True)
    assert str(e.value).startswith("This regression model needs") and "Give data of that kind" in str(e.value)
    assert "--task" not in str(e.value)
    with pytest.raises(DataError, match="Give --task classification"):  # train's wording stays
        model.check_data(folders)


def test_printed_metrics_name_the_column_scored_against(capsys):
    """`evaluate --target-column price` of a log_price model said 'log_price:' on its first line."""
    from transferkit.tasks import get_task

    m = {"n": 3, "r2": 0.5, "rmse": 1.0, "mae": 1.0, "split": "test"}
    for metrics, said in (({**m, "target": "price"}, "price: test R²"), (m, "log_price: test R²")):
        get_task("regression").print_metrics(metrics, ["log_price"], title="houses")
        first = capsys.readouterr().out.replace("\n", " ")
        assert f"houses: {said}" in first, first
