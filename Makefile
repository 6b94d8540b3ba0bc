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
# Test processes (pytest-xdist): one per core; a file's tests stay together in one process,
# in order, so module-scoped servers are started once. TEST_WORKERS=0 runs in this process.
TEST_WORKERS ?= auto

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
	ROADVISION_QUIET=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: $(STAMP) system-deps
	$(PY) -m benchmarks $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/yamllint -s manifests helm/roadvision/values.yaml

clean:
	rm -rf .pytest_cache build *.egg-info  # the registry and runs live in $$ROADVISION_HOME, not here

# -- images: podman, no Docker engine (docs/deploy.md "Building the images with podman") -----
#   make images       build the CPU serve + train images (base from debootstrap, cached)
#   make image-test   build or reuse them, then run them as a cluster would (tests/image/)
IMAGE_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/roadvision-images
BASE_IMAGE_LOCAL ?= roadvision-base:bookworm
SERVE_IMAGE ?= roadvision-serve:cpu
TRAIN_IMAGE ?= roadvision-train:cpu
# Host folder with the CPU torch 2.13.0 wheel; empty: found in pip's find-links, else the index.
TORCH_WHEELS_DIR ?=
# Extra podman build arguments, e.g. IMAGE_BUILD_ARGS=--no-cache for a cold build.
IMAGE_BUILD_ARGS ?=
IMAGE_ENV = IMAGE_CACHE="$(IMAGE_CACHE)" BASE_IMAGE_LOCAL="$(BASE_IMAGE_LOCAL)" \
	SERVE_IMAGE="$(SERVE_IMAGE)" TRAIN_IMAGE="$(TRAIN_IMAGE)" \
	TORCH_WHEELS_DIR="$(TORCH_WHEELS_DIR)" IMAGE_BUILD_ARGS="$(IMAGE_BUILD_ARGS)"

.PHONY: images image-test

images:
	bash scripts/images/deps.sh
	$(IMAGE_ENV) bash scripts/images/build.sh

image-test: $(STAMP) images
	$(IMAGE_ENV) ROADVISION_IMAGE_TEST=1 ROADVISION_QUIET=1 \
		$(PY) -m pytest -q -p no:cacheprovider tests/image $(PYTEST_ARGS)
