"""benchmarks/gpu_check.py, the GPU check, run on the CPU on generated images so that it never rots between the
rare runs on a GPU: every step of its table, with finite numbers."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
STEPS = ("linear", "two-phase", "finetune", "features", "predict", "export")  # the rows the table must have
NO_GPU = {"CUDA_VISIBLE_DEVICES": ""}  # the CPU path, also on a machine that has a GPU


@pytest.fixture
def gpu_check(monkeypatch):
    """The script as a module (it imports benchmarks/run.py as `run`: taken out of sys.modules afterwards)."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    monkeypatch.delitem(sys.modules, "run", raising=False)
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", module)  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("run", None)


def check(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **NO_GPU, "TMPDIR": str(tmp_path)}  # its work folder lands (and is removed) in tmp_path
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )


def table_rows(stdout: str) -> dict[str, list[str]]:
    """step -> its cells, from the markdown table the script prints."""
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))] for line in stdout.splitlines()]
    return {c[0]: c[1:] for c in cells if len(c) > 3 and c[0] not in ("step", "---")}


def synthetic(device: str, seconds: float, images: int) -> dict:
    """A result as the script writes it (--out), every step at these numbers; the note holds a pipe to escape."""
    rows = [
        {"step": s, "seconds": seconds, "accuracy": 0.9, "images": images, "note": "a | b", "ok": True} for s in STEPS
    ]
    return {
        "device": device,
        "precision": "bf16",
        "machine": "m",
        "data": "d",
        "date": "today",
        "seconds": 1,
        "rows": rows,
    }


@pytest.mark.slow  # three fits, a feature pass, predict and an ONNX export: ~25 s on 2 cores
def test_tiny_check_on_the_cpu_has_every_row_with_finite_numbers(tmp_path, gpu_check):
    data = gpu_check.generate_tiny(tmp_path / "data")
    out = tmp_path / "result.json"
    p = check(tmp_path, "--tiny", "--data", str(data), "--out", str(out))
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    assert "NO GPU" in p.stderr  # --device auto on a machine without one says so, and runs
    rows = table_rows(p.stdout)
    assert list(rows) == list(STEPS), p.stdout
    for step, (seconds, accuracy, images, note) in rows.items():
        assert math.isfinite(float(seconds)) and float(seconds) >= 0, (step, seconds)
        assert math.isfinite(float(accuracy.rstrip("%"))), (step, accuracy)
        assert int(images) > 0 and "FAILED" not in note, (step, note)
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["precision"] == "fp32"
    assert all(r["ok"] and 0 <= r["accuracy"] <= 1 for r in result["rows"]), result["rows"]
    assert "accepted" in rows["export"][-1]  # the export passed its parity check
    # What --cpu-table / --also-cpu print: the same result on both sides is a 1.0x speed-up on every row.
    compared = table_rows(gpu_check.table(result, cpu=result))
    assert list(compared) == list(STEPS)
    assert all(cells[6] == "1.0x" for cells in compared.values()), compared


def test_asking_for_cuda_without_a_gpu_is_refused_with_the_way_out(tmp_path, gpu_check):
    data = gpu_check.generate_tiny(tmp_path / "data", train=1, val=1)
    p = check(tmp_path, "--tiny", "--data", str(data), "--device", "cuda")
    assert p.returncode != 0
    assert "no CUDA GPU" in p.stderr and "--device auto" in p.stderr


def test_data_in_another_layout_is_refused_before_any_work(tmp_path):
    (tmp_path / "flat" / "ants").mkdir(parents=True)
    p = check(tmp_path, "--data", str(tmp_path / "flat"))
    assert p.returncode != 0
    assert "train/<class>/" in p.stderr and "--data" in p.stderr


def test_the_comparison_is_per_image_and_lands_in_the_gpu_section(tmp_path, gpu_check):
    assert gpu_check.STEPS == STEPS
    # the GPU: 10 s for 400 images; the CPU on a subset: 20 s for 80 -> 0.25 s vs 0.025 s per image, 10x
    text = gpu_check.table(synthetic("cuda", 10.0, 400), cpu=synthetic("cpu", 20.0, 80))
    rows = table_rows(text)
    assert list(rows) == list(STEPS)
    assert all(cells[6] == "10.0x" and cells[7] == r"a \| b" for cells in rows.values()), text
    bench = tmp_path / "BENCHMARKS.md"
    other = "<!-- deploy:begin -->\n## Deploy\n<!-- deploy:end -->"
    bench.write_text(f"# Benchmarks\n\n{other}\n\n<!-- gpu:begin -->\nNo GPU figure yet\n<!-- gpu:end -->\n")
    gpu_check.record(bench, synthetic("cuda", 10.0, 400), text, "python benchmarks/gpu_check.py --also-cpu")
    after = bench.read_text()
    assert after.count("<!-- gpu:begin -->") == 1 and "No GPU figure yet" not in after
    assert text in after and other in after and gpu_check.INTRO in after
    # the repository's own BENCHMARKS.md has the section the script writes into (which `make bench` keeps)
    real = (Path(__file__).resolve().parents[1] / "BENCHMARKS.md").read_text()
    assert real.count("<!-- gpu:begin -->") == real.count("<!-- gpu:end -->") == 1
