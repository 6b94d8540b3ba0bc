# roadvision: every target creates or reuses .venv and installs what it needs.
#   make demo   the main job end to end on an embedded default data set
#   make test   the test suite (what CI runs)
#   make bench  the benchmarks (print figures; see benchmarks/RESULTS.md)
#   make lint   ruff
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.roadvision-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false

.PHONY: demo test bench lint system-deps venv clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -c constraints.txt -e ".[train,pipeline,serve,dev]"
	touch $@

venv: $(STAMP)

system-deps:
	bash scripts/system-deps.sh

demo: $(STAMP) system-deps
	$(PY) -m roadvision.demo

test: $(STAMP) system-deps
	ROADVISION_QUIET=1 $(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP) system-deps
	$(PY) -m benchmarks $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/yamllint -s manifests helm/roadvision/values.yaml

clean:
	rm -rf .roadvision .pytest_cache build *.egg-info
