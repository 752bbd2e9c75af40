# Set-up and checks. `make demo` and `make test` work on a fresh clone: they create .venv themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

.PHONY: demo test test-fast lint format bench bench-accuracy bench-precision bench-scaling bench-gpu clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Reinstall when the dependencies change.
$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/transferkit demo

# The linter and the formatter check first (seconds), then every test.
test: lint
	$(PY) -m pytest -q

test-fast: lint
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks examples
	$(VENV)/bin/ruff check --fix src tests benchmarks examples

bench: $(STAMP)
	$(PY) -m pip install -q -e ".[dev,bench]"
	$(PY) benchmarks/run.py
	$(PY) benchmarks/advisor.py

# Accuracy with 95% intervals over repeated splits against each fixed strategy, backbone and peers (fastai, a
# scikit-learn probe, the tutorial loop), then the fine-tuning recipe's ingredients on the same splits: about 75 + 20
# minutes on 2 cores; `python benchmarks/accuracy.py --quick` for development.
bench-accuracy: $(STAMP)
	$(PY) -m pip install -q -e ".[dev,bench]"
	$(PY) benchmarks/accuracy.py --repeats 3 --json runs/accuracy.json
	$(PY) benchmarks/accuracy.py --recipe --repeats 3 --merge runs/accuracy.json

bench-precision: $(STAMP)
	$(PY) benchmarks/precision.py

# Wall time and peak RSS of `linear` and one fine-tune epoch on 1k-50k generated images (about 2 hours on 2 cores);
# `python benchmarks/scaling.py --sizes 500,2000` for development.
bench-scaling: $(STAMP)
	$(PY) benchmarks/scaling.py

# On one CUDA GPU: fits, features, predict and ONNX export on ants/bees at bf16, beside the CPU on a subset; its table
# goes into BENCHMARKS.md ("GPU check"; not without a GPU). Sized for under 8 minutes on an H100. No GPU, in
# seconds: `python benchmarks/gpu_check.py --tiny`.
bench-gpu: $(STAMP)
	$(PY) benchmarks/gpu_check.py --also-cpu --out runs/gpu-check.json --benchmarks BENCHMARKS.md

clean:
	rm -rf $(VENV) runs .pytest_cache
