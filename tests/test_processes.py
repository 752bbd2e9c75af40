"""The process helpers of engine/runtime.py and the options around them, on one process (no launcher): shares,
refusals, --grad-accum and --sync-bn. tests/test_distributed.py runs the real thing on 2 processes."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import pytest

import transferkit
from transferkit.engine import runtime
from transferkit.errors import ConfigError, TransferkitError

from .conftest import FAST


@pytest.mark.parametrize("n", [0, 1, 2, 5, 153, 397])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_shares_cover_every_item_once_in_order(n, world):
    shares = [
        runtime.Processes(SimpleNamespace(num_processes=world, process_index=r, is_main_process=r == 0)).shard(n)
        for r in range(world)
    ]
    items = [i for lo, hi in shares for i in range(lo, hi)]
    assert items == list(range(n))  # contiguous, in process order: the gathered rows are the dataset's order
    assert max(hi - lo for lo, hi in shares) - min(hi - lo for lo, hi in shares) <= -(-n // world)


def test_one_process_is_the_identity():
    one = runtime.OneProcess()
    assert (one.on_main(lambda: 3), one.from_main(4), one.all_true(False), one.shard(7), one.mean([1.5])) == (
        3,
        4,
        False,
        (0, 7),
        [1.5],
    )


@pytest.mark.parametrize("command", ["rank", "advise", "compare"])
def test_single_process_commands_refuse_under_a_launcher(command, monkeypatch, tiny_folder):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(TransferkitError, match=f"`transferkit {command}` runs on one process"):
        getattr(transferkit, command)(tiny_folder)


def test_sync_bn_on_cpu_processes_is_refused_before_any_work(monkeypatch, tiny_folder, tmp_path):
    two = runtime.OneProcess()
    two.num_processes = 2
    monkeypatch.setattr(runtime, "_processes", two)
    with pytest.raises(ConfigError, match="--sync-bn"):
        transferkit.fit(tiny_folder, strategy="finetune", sync_bn=True, device="cpu", out=str(tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()


def test_grad_accum_steps_every_kth_batch_and_ends_the_schedule(tiny_folder, tmp_path):
    """25 training images in batches of 4: 6 batches, 3 optimizer steps with --grad-accum 2. The cosine schedule is
    counted in those 3 steps, so it ends at 0; counted in batches it would stop at the top, after its warm-up."""
    run = transferkit.fit(
        tiny_folder, strategy="finetune", epochs=1, batch_size=4, grad_accum=2, out=str(tmp_path / "runs"), **FAST
    )
    with open(run.path / "metrics.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert int(row["train_images"]) == 24 and float(row["lr"]) < 1e-9
    assert run.config.train.grad_accum == 2
