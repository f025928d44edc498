# npuenv: the user's entry points. `make help` lists them.
# Every target is a thin call into the `npuenv` CLI (or pytest); the logic lives
# in the Python packages.

SHELL := /bin/bash
BOOTSTRAP_PYTHON ?= python3.11
VENV := .venv
NPUENV := $(VENV)/bin/npuenv
PY := $(VENV)/bin/python
# Where the CPU build of torch comes from: a local wheel directory or a package
# index URL. Never the default PyPI index, which would pull the CUDA build.
# Default: /opt/wheels when it holds a torch wheel, else PyTorch's CPU index.
TORCH_WHEEL_DIR := /opt/wheels
TORCH_SOURCE ?= $(if $(wildcard $(TORCH_WHEEL_DIR)/torch-*.whl),$(TORCH_WHEEL_DIR),https://download.pytorch.org/whl/cpu)

# Row constraints understood by every target that takes a row (any subset).
ROW ?=
TORCH ?=
CANN ?=
PYTHON ?=
ARCH ?=
CHIP ?=
OS ?=
ROW_ARGS = $(if $(ROW),--row $(ROW)) $(if $(TORCH),--torch $(TORCH)) $(if $(CANN),--cann $(CANN)) \
           $(if $(PYTHON),--python $(PYTHON)) $(if $(ARCH),--arch $(ARCH)) \
           $(if $(CHIP),--chip $(CHIP)) $(if $(OS),--os $(OS))

.DEFAULT_GOAL := help
.PHONY: help setup engine test test-unit lint resolve matrix-table bench sim-installers sim-nodes sim-clean demo

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml requirements.lock
	$(BOOTSTRAP_PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	@# requirements.lock pins torch to its +cpu build, which only TORCH_SOURCE has:
	@# the CUDA build on PyPI cannot satisfy the pin.
	$(VENV)/bin/pip install --quiet -c requirements.lock \
	  $(if $(wildcard $(TORCH_SOURCE)),--find-links "$(TORCH_SOURCE)",--extra-index-url "$(TORCH_SOURCE)") \
	  -e '.[dev]'
	touch $@

setup: $(VENV)/.installed engine ## create .venv (npuenv, ansible, pytest, CPU torch) and the container engine

engine: ## set up podman/buildah and the local Debian base image (root; idempotent)
	bash tests/sim/setup-engine.sh

test: setup ## run the whole test suite (unit and integration)
	$(PY) -m pytest -n 2 tests

test-unit: $(VENV)/.installed ## run the fast unit tests only
	$(PY) -m pytest -m "not integration" tests

lint: $(VENV)/.installed ## lint the matrix
	$(NPUENV) matrix lint

resolve: $(VENV)/.installed ## resolve a row: make resolve TORCH=2.4 PYTHON=3.10 ARCH=aarch64
	$(NPUENV) matrix resolve $(ROW_ARGS) --format text

matrix-table: $(VENV)/.installed ## regenerate the README's support table from the matrix
	$(NPUENV) matrix table --update README.md

bench: $(VENV)/.installed ## run the benchmarks under bench/
	$(PY) bench/run.py

OUT ?= out/installers
N ?= 3
sim-installers: $(VENV)/.installed ## simulated vendor installers: make sim-installers ROW=2.4.0.post2 [CHIP=910b ARCH=x86_64] OUT=DIR
	$(PY) -m tests.sim installers $(ROW_ARGS) --out $(OUT)

sim-nodes: setup ## start simulated Atlas nodes npu-sim-0..N-1 with podman: make sim-nodes N=3
	$(PY) -m tests.sim nodes --count $(N) $(if $(CHIP),--chip $(CHIP))

sim-clean: ## remove the simulated nodes
	$(PY) -m tests.sim clean
