"""Heads on cached features: the L-BFGS logistic regression, the choice between solvers, and augmented views."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from torch import nn

import transferkit
from transferkit.core.solvers import fit_logistic
from transferkit.errors import ConfigError

from .conftest import FAST


def blobs(n, d=20, k=3, seed=0, spread=2.5):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g) * spread / d**0.5 * 3
    y = torch.arange(n) % k
    return centres[y] + torch.randn(n, d, generator=g), y


def test_lbfgs_matches_scikit_learn_at_the_same_penalty():
    from sklearn.linear_model import LogisticRegression

    x, y = blobs(150)
    xv, yv = blobs(60, seed=1)
    head = nn.Sequential(nn.Linear(20, 3))
    l2 = 0.01
    res = fit_logistic(head, (x, y), (xv, yv), l2_grid=(l2,))
    # scikit-learn minimises C * sum(loss) + 0.5 |W|^2; ours is mean(loss) + 0.5 * l2 |W|^2: C = 1 / (l2 * n).
    ref = LogisticRegression(C=1 / (l2 * len(y)), tol=1e-10, max_iter=10_000).fit(x.numpy(), y.numpy())
    w = head[0].weight.detach().numpy()
    # Softmax weights are defined up to a constant per feature: compare after centring over classes.
    np.testing.assert_allclose(w - w.mean(0), ref.coef_ - ref.coef_.mean(0), atol=2e-3)
    assert res["l2"] == l2 and len(res["path"]) == 1


def test_lbfgs_picks_the_penalty_with_the_lowest_val_loss_and_skips_mlp_heads():
    x, y = blobs(60, d=200, spread=1.0)  # few samples, many features: the weakest penalty overfits
    xv, yv = blobs(300, d=200, seed=1, spread=1.0)
    head = nn.Linear(200, 3)
    res = fit_logistic(head, (x, y), (xv, yv))
    losses = {r["l2"]: r["val_loss"] for r in res["path"]}
    # the chosen penalty is then solved to convergence from its path solution: its val loss moves by little
    assert res["l2"] == min(losses, key=losses.get) and res["val_loss"] == pytest.approx(min(losses.values()), rel=1e-2)
    assert res["l2"] != min(losses)  # the weakest penalty is not the best here, so the choice mattered
    with torch.no_grad():  # the head holds the chosen solution, not the last one on the path
        assert torch.nn.functional.cross_entropy(head(xv), yv).item() == pytest.approx(res["val_loss"], rel=1e-5)
    mlp = nn.Sequential(nn.Linear(200, 8), nn.ReLU(), nn.Linear(8, 3))
    assert fit_logistic(mlp, (x, y), (xv, yv)) is None


def read_rows(run):
    with open(run.path / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_auto_keeps_the_more_accurate_solver_and_reports_both(tiny_folder, tmp_path):
    run = transferkit.fit(tiny_folder, strategy="linear", out=str(tmp_path), **FAST)
    solvers = json.loads((run.path / "report.json").read_text())["head_solvers"]
    assert set(solvers) == {"lbfgs", "adamw"}
    kept = [k for k, v in solvers.items() if v["kept"]]
    assert len(kept) == 1
    best = max(solvers, key=lambda k: (solvers[k]["val_acc"], -solvers[k]["val_loss"]))
    assert kept == [best] and read_rows(run)[0]["solver"] == best
    assert float(read_rows(run)[0]["val_loss"]) == pytest.approx(solvers[best]["val_loss"], rel=1e-4)
    one = transferkit.fit(tiny_folder, strategy="linear", head_solver="lbfgs", out=str(tmp_path), **FAST)
    assert set(json.loads((one.path / "report.json").read_text())["head_solvers"]) == {"lbfgs"}
    with pytest.raises(ConfigError, match="--head linear"):
        transferkit.fit(tiny_folder, strategy="linear", head="mlp:16", head_solver="lbfgs", out=str(tmp_path), **FAST)
    with pytest.raises(ConfigError, match="--aug-views"):
        transferkit.fit(tiny_folder, strategy="linear", aug_views=-1, out=str(tmp_path), **FAST)


# "auto" is fp32 on CPUs (engine/runtime.best_precision); bf16 runs the same path on cached bf16 features, also on
# CPUs where it is emulated (slow, but these images are 32 px).
@pytest.mark.parametrize("precision", ["auto", "bf16"])
def test_aug_views_are_seeded_cached_and_reused(tiny_folder, tmp_path, monkeypatch, precision):
    from transferkit.engine import features as feats
    from transferkit.engine import trainer as trainer_mod

    seen, extracted = [], []
    original, extract = trainer_mod.Trainer._train_features, feats.extract

    def spy(self):
        x, y = original(self)
        seen.append((x.clone(), y.clone(), len(self.data.train_plain)))
        return x, y

    def counting(*a, **kw):
        extracted.append(1)
        return extract(*a, **kw)

    monkeypatch.setattr(trainer_mod.Trainer, "_train_features", spy)
    monkeypatch.setattr(feats, "extract", counting)

    def fit(**kw):
        extracted.clear()
        transferkit.fit(tiny_folder, strategy="linear", out=str(tmp_path), feature_precision=precision, **FAST, **kw)
        return seen[-1], len(extracted)

    (x, y, n), calls = fit(aug_views=2)
    assert calls == 5  # train, 2 views of train, val, test
    assert x.shape[0] == 3 * n and torch.equal(y, y[:n].repeat(3))
    views = x.view(3, n, -1)
    assert not torch.allclose(views[0], views[1]) and not torch.allclose(views[1], views[2])  # really augmented
    (x2, _, _), calls = fit(aug_views=2)
    assert calls == 0 and torch.equal(x2, x)  # a second run reuses every view from the cache
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "other-cache"))
    (x3, _, _), calls = fit(aug_views=2)
    assert calls == 5 and torch.allclose(x3, x, atol=1e-5)  # recomputed from scratch: the same pixels, seeded
    (x4, _, _), calls = fit(aug_views=3)
    assert calls == 1 and torch.equal(x4[: 3 * n], x)  # one more view costs one more pass; the others are reused
