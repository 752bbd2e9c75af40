"""examples/transfer_chain/chain.py --quick: a log(area) proxy fine-tuned by transferkit on the houses' photos, its
bundle the backbone of a few-label log(price) model, beside direct transfer from ImageNet on the same split.

About 85 s on 2 busy CPU cores: houses 1-200, one split, one proxy epoch at 64 px. It checks the chain's plumbing
(the proxy never sees a test photo, duplicates stay together, the chain's backbone is the proxy's bundle) and that
both arms give a finite, better-than-nothing score; whether the chain helps is the full run's question (README).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from pathlib import Path

from .conftest import shared

CHAIN = Path(__file__).resolve().parents[1] / "examples" / "transfer_chain" / "chain.py"


def load_example():
    spec = importlib.util.spec_from_file_location("transfer_chain", CHAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def images(run_dir: str, part: str | None = None) -> set[str]:
    with open(Path(run_dir) / "split.csv", newline="") as f:
        return {Path(r["key"]).name for r in csv.DictReader(f) if part in (None, r["split"])}


def test_splits_keep_duplicates_together_and_price_errors_out_of_the_target():
    chain = load_example()
    ids = list(range(1, 536))
    for seed in range(3):
        parts = chain.make_split(ids, seed)
        side = {h: p for p, hs in parts.items() for h in hs}
        assert sorted(side) == ids and len(parts["test"]) == 133 and len(parts["val"]) == 50
        assert all(side[a] == side[b] for a, b in chain.SAME)
        assert chain.PRICE_ERRORS.isdisjoint(parts["train"][:100] + parts["val"] + parts["test"])


def test_quick_chain_runs_both_arms_on_unseen_test_photos(tmp_path):
    data = shared("houses")
    result = load_example().main(["--quick", "--data", str(data), "--out", str(tmp_path), "--work", str(tmp_path)])
    rows = result["rows"]
    (proxy,) = [r for r in rows if r["what"] == "proxy"]
    arms = {r["what"]: r for r in rows if r.get("n") == 50}
    assert set(arms) == {"direct", "chain"}
    for r in arms.values():
        assert math.isfinite(r["r2"]) and r["test"] == 50 and r["rmse"] < 1.5 * r["rmse_of_mean"], r

    test = images(arms["direct"]["run"], "test")
    assert len(test) == 50 and test == images(arms["chain"]["run"], "test")  # the same split for both arms
    assert not test & images(proxy["run"])  # no test photo in the proxy's train or val
    assert len(images(arms["direct"]["run"], "train")) == 50

    meta = json.loads((Path(arms["chain"]["run"]) / "best" / "transferkit.json").read_text())
    assert meta["backbone"] == f"bundle:{Path(proxy['run']) / 'best'}" and meta["arch"] == "efficientnet_lite0"
    assert json.loads((Path(arms["direct"]["run"]) / "best" / "transferkit.json").read_text())["backbone"] == (
        "efficientnet_lite0"
    )
    assert (tmp_path / "chain.png").stat().st_size > 5_000 and "| 50 |" in result["table"]
