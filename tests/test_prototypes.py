"""The `prototypes` head (nearest class mean by cosine, fitted temperature): fitted in closed form by `fit_head`,
chosen by `auto` when it measures better, and a head like any other for predict and ONNX export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transferkit.backbones.heads import HEADS, build_head, parse_head
from transferkit.backbones.modules import Prototypes
from transferkit.core.heads import fit_head


def few(per_class, k=5, dim=64, seed=0, n_test=0):
    """Classes around k directions, offset from the origin (so raw features mislead a linear head with few rows)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    y = np.repeat(np.arange(k), per_class)
    x = (centres[y] + 2.0 * rng.normal(size=(len(y), dim)) + 3).astype(np.float32)
    yt = rng.integers(0, k, n_test)
    xt = (centres[yt] + 2.0 * rng.normal(size=(n_test, dim)) + 3).astype(np.float32)
    return x, y, xt, yt


def test_the_head_is_parsed_built_and_listed():
    assert "prototypes" in HEADS and parse_head("prototypes") == ("prototypes", None)
    assert isinstance(build_head("prototypes", 8, 3), Prototypes)


def test_fit_puts_the_normalised_class_means_times_a_temperature_in_the_weights():
    x, y, _, _ = few(4, k=3, dim=16)
    fitted = fit_head(x, y, head="prototypes", val=(x, y))
    assert fitted.solver == "prototypes" and isinstance(fitted.module, Prototypes)
    w = fitted.module[1].weight.detach().numpy()
    t = fitted.results["prototypes"]["temperature"]
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    for c in range(3):
        m = xn[y == c].mean(0)
        np.testing.assert_allclose(w[c], t * m / np.linalg.norm(m), rtol=1e-4, atol=1e-5)
    # the prediction is the nearest class mean by cosine
    cos = xn @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T
    assert (fitted.predict(x).argmax(1) == cos.argmax(1)).all()
    assert 1.0 <= t <= 100.0


def test_a_class_without_training_rows_keeps_a_zero_prototype():
    x, y, _, _ = few(3, k=3, dim=8)
    keep = y < 2
    fitted = fit_head(
        x[keep], y[keep], head="prototypes", val=(x[keep], y[keep]), module=build_head("prototypes", 8, 3)
    )
    assert torch.count_nonzero(fitted.module[1].weight[2]) == 0
    assert fitted.predict(x).shape == (len(x), 3)


def test_auto_keeps_prototypes_with_a_handful_per_class_and_reports_both():
    x, y, xt, yt = few(2, n_test=1000)
    fitted = fit_head(x, y)  # solver auto, head linear: prototypes measured beside lbfgs and adamw
    assert {"lbfgs", "adamw", "prototypes"} <= set(fitted.results)
    assert sum(r["kept"] for r in fitted.results.values()) == 1
    kept = fitted.results[fitted.solver]
    assert all((kept["val_acc"], -kept["val_loss"]) >= (r["val_acc"], -r["val_loss"]) for r in fitted.results.values())
    if fitted.solver == "prototypes":
        assert isinstance(fitted.module, Prototypes)
    # a run's own head (module=...) keeps its kind: prototypes are not tried in its place
    own = fit_head(x, y, module=build_head("linear", x.shape[1], 5))
    assert "prototypes" not in own.results


def directions(centres, y, rng):
    """Class directions with noise, each image's norm scaled at random (0.2x to 3x)."""
    scale = rng.uniform(0.2, 3.0, size=(len(y), 1))
    return (scale * (centres[y] + 0.8 * rng.normal(size=(len(y), centres.shape[1])))).astype(np.float32)


def test_prototypes_beat_a_linear_head_at_one_image_per_class_when_the_norm_varies():
    """Classes that differ by direction while each image's feature norm varies (as pooled features' do): the cosine
    head ignores the norm, a logistic head fitted on one image per class does not."""
    accs = {"prototypes": [], "linear": []}
    for seed in range(5):
        rng = np.random.default_rng(seed)
        centres = rng.normal(size=(5, 64))

        y, yt = np.arange(5), rng.integers(0, 5, 500)
        x, xt = (directions(centres, labels, rng) for labels in (y, yt))
        for head in accs:
            f = fit_head(x, y, head=head, solver="auto" if head == "prototypes" else "lbfgs", val=(x, y))
            accs[head].append((f.predict(xt).argmax(1) == yt).mean())
    assert np.mean(accs["prototypes"]) > np.mean(accs["linear"]), accs


@pytest.fixture(scope="module")
def prototypes_bundle(tmp_path_factory):
    import transferkit

    from .conftest import write_folder

    root = tmp_path_factory.mktemp("proto")
    data = write_folder(root / "colours", per_class=8)
    run = transferkit.fit(data, strategy="linear", head="prototypes", image_size=32, quiet=True, out=root / "runs")
    return run, data


def test_a_prototypes_run_predicts_and_exports_with_parity(prototypes_bundle):
    import json

    from transferkit.bundle import read_meta
    from transferkit.export import export
    from transferkit.predict import Predictor

    run, data = prototypes_bundle
    bundle = run.best if hasattr(run, "best") else run
    assert read_meta(bundle)["head"] == "prototypes"
    pred = Predictor(bundle, device="cpu", precision="fp32")
    images = sorted(data.rglob("*.png"))[:6]
    answers = pred.predict([str(p) for p in images], top_k=1)
    assert len(answers) == 6
    report = export(bundle)
    assert report["accepted"], json.dumps(report)[:500]
    assert report["fp32"]["top1_agreement"] == 1.0 and report["fp32"]["max_abs_dp"] <= 1e-4


def test_suggest_asks_a_trained_prototypes_model_and_refuses_classes_it_does_not_know(prototypes_bundle, tmp_path):
    import csv

    from transferkit.core.suggest import suggest_images
    from transferkit.errors import DataError

    from .conftest import write_folder

    run, _ = prototypes_bundle
    pool = write_folder(tmp_path / "pool", per_class=3, seed=9)
    picks = suggest_images(pool, model=run.best, strategy="margin", n=4, image_size=32)
    assert picks.strategy == "margin" and len(picks.keys) == 4
    assert picks.classes == ["blue", "green", "red"] and all("unsure" in w for w in picks.why)
    wrong = tmp_path / "wrong.csv"
    with open(wrong, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for i, p in enumerate(sorted(pool.rglob("*.png"))[:4]):
            w.writerow([p, "purple" if i == 0 else p.parent.name])
    with pytest.raises(DataError, match="classes the model does not know: purple"):
        suggest_images(pool, wrong, model=run.best, n=2, image_size=32)
