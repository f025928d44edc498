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
.PHONY: help setup engine test test-unit lint resolve matrix-table bench sim-installers sim-nodes sim-clean demo deploy validate

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
	$(PY) -m pytest -n 2 --dist loadfile tests

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

# Mutation testing (mutmut), one module at a time: `python bench/mutate.py list` names the modules.
MODULE ?=
.PHONY: mutate mutate-report
mutate: $(VENV)/.installed ## mutation-test one module: make mutate MODULE=compat_matrix/resolver.py
	@test -n "$(MODULE)" || { echo "make mutate: set MODULE=path/to/module.py (python bench/mutate.py list names them)" >&2; exit 2; }
	$(PY) bench/mutate.py run "$(MODULE)"

mutate-report: $(VENV)/.installed ## the mutation score of every module run so far: bench/results/mutation.{md,json}
	$(PY) bench/mutate.py report

OUT ?= out/installers
N ?= 3
sim-installers: $(VENV)/.installed ## simulated vendor installers: make sim-installers ROW=2.4.0.post2 [CHIP=910b ARCH=x86_64] OUT=DIR
	$(PY) -m tests.sim installers $(ROW_ARGS) --out $(OUT)

sim-nodes: setup ## start simulated Atlas nodes npu-sim-0..N-1 with podman: make sim-nodes N=3
	$(PY) -m tests.sim nodes --count $(N) $(if $(CHIP),--chip $(CHIP))

demo: setup ## the whole pipeline on simulated Atlas nodes: wheelhouse, rollout, image, validation, a fault caught
	$(PY) -m tests.sim demo

sim-clean: ## remove the simulated nodes
	$(PY) -m tests.sim clean

INVENTORY ?= playbooks/inventory/example/hosts.yml
deploy: $(VENV)/.installed ## roll a matrix row out with Ansible: make deploy INVENTORY=hosts.yml [CHECK=1] [TAGS=driver,cann]
	$(NPUENV) deploy --inventory $(INVENTORY) $(if $(CHECK),--check) $(if $(TAGS),--tags $(TAGS))

# --- the offline wheelhouse and the air-gapped bundle (torch_npu_pkg) ---
# OUT, when given on the command line, names the target's output; otherwise these.
WHEELHOUSE ?= out/wheelhouse
BUNDLE ?= out/bundle.tar
# torch_npu sources, tried in order: dir:PATH, pypi, release (the vendor's release page), build.
SOURCES ?= pypi release
INSTALLERS ?=
WHEELHOUSE_ARGS ?=
BUNDLE_ARGS ?=
OUT_GIVEN = $(filter command line environment,$(origin OUT))
.PHONY: wheelhouse bundle
wheelhouse: $(VENV)/.installed ## offline wheelhouse: make wheelhouse ROW=2.13.0 PYTHON=3.11 ARCH=x86_64 [OUT=DIR] [SOURCES="dir:PATH pypi"]
	$(NPUENV) wheelhouse build $(ROW_ARGS) --out "$(if $(OUT_GIVEN),$(OUT),$(WHEELHOUSE))" \
	  --torch-source "$(TORCH_SOURCE)" $(foreach s,$(SOURCES),--source $(s)) $(WHEELHOUSE_ARGS)

bundle: $(VENV)/.installed ## air-gapped archive: make bundle INSTALLERS=DIR [WHEELHOUSE=out/wheelhouse] [OUT=out/bundle.tar]
	@test -n "$(INSTALLERS)" || { echo "make bundle: set INSTALLERS=DIR, the folder holding the vendor's .run packages" >&2; exit 2; }
	$(NPUENV) bundle make --wheelhouse "$(WHEELHOUSE)" --installers "$(INSTALLERS)" \
	  --out "$(if $(OUT_GIVEN),$(OUT),$(BUNDLE))" $(if $(CHIP),--chip $(CHIP)) $(if $(OS),--os $(OS)) $(BUNDLE_ARGS)

TARGET ?= local
LEVEL ?= quick
validate: $(VENV)/.installed ## validate hosts: make validate TARGET=podman://npu-sim-0|image:REF|ansible://npu_nodes?inventory=F LEVEL=quick|standard|full
	$(NPUENV) validate $(foreach t,$(TARGET),--target '$(t)') --level $(LEVEL) $(ROW_ARGS) $(if $(BACKEND),--backend $(BACKEND))

# --- container images (images/) ---
# make image ROW=2.13.0 OS=debian12 PYTHON=3.11 INSTALLERS=DIR [WHEELHOUSE=DIR] [TAG=ref] [ENGINE=podman|buildah|docker]
# CANN_ONLY=1: the CANN layers only (no wheelhouse). NPUS, IMAGE: for run-cmd and compose.
TAG ?=
ENGINE ?=
CANN_ONLY ?=
NPUS ?=
IMAGE ?=
IMAGE_ARGS ?=
.PHONY: image dockerfile run-cmd compose
image: $(VENV)/.installed ## build a row's image: make image ROW=2.13.0 OS=debian12 INSTALLERS=DIR [WHEELHOUSE=DIR] [TAG=..] [CANN_ONLY=1]
	@test -n "$(INSTALLERS)" || { echo "make image: set INSTALLERS=DIR, the folder holding the vendor's .run packages and their SHA256SUMS" >&2; exit 2; }
	$(NPUENV) image build $(ROW_ARGS) --installers "$(INSTALLERS)" $(if $(CANN_ONLY),--cann-only,--wheelhouse "$(WHEELHOUSE)") \
	  $(if $(TAG),--tag $(TAG)) $(if $(ENGINE),--engine $(ENGINE)) $(IMAGE_ARGS)

dockerfile: $(VENV)/.installed ## render a row's Dockerfile only: make dockerfile ROW=2.13.0 OS=ubuntu22.04 ARCH=aarch64 [OUT=DIR: whole build context]
	$(NPUENV) image render $(ROW_ARGS) $(if $(CANN_ONLY),--cann-only) $(if $(OUT_GIVEN),--output "$(OUT)")

run-cmd: $(VENV)/.installed ## print the docker/podman run line for this host: make run-cmd ROW=2.13.0 OS=debian12 [NPUS=0,1] [IMAGE=ref]
	$(NPUENV) image run-cmd $(ROW_ARGS) $(if $(CANN_ONLY),--cann-only) $(if $(NPUS),--npus $(NPUS)) \
	  $(if $(filter docker podman,$(ENGINE)),--engine $(ENGINE)) $(if $(IMAGE),--image $(IMAGE))

compose: $(VENV)/.installed ## print a compose file for the image: make compose ROW=2.13.0 OS=debian12 [NPUS=0-3] [IMAGE=ref] [OUT=FILE]
	$(NPUENV) image compose $(ROW_ARGS) $(if $(CANN_ONLY),--cann-only) $(if $(NPUS),--npus $(NPUS)) \
	  $(if $(IMAGE),--image $(IMAGE)) $(if $(OUT_GIVEN),--output "$(OUT)")
